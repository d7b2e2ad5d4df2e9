"""Shared test set-up.

Each pytest process gets its own ROS_DOMAIN_ID and DDS discovery limited to this host, so parallel or
leftover processes never cross-talk. Torch uses one thread per process so tests stay fast and predictable
on a 2-core machine.
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Domain IDs 1..100 are safe for Fast DDS port arithmetic; spread by PID so concurrent runs differ.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import torch  # noqa: E402

torch.set_num_threads(1)
