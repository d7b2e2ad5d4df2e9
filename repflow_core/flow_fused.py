"""Compatibility alias of :mod:`repflow_core.kernels` (the fused flow kernels moved there).

Kept so that code written against the old single module keeps working; new code imports
``repflow_core.kernels``. ``python -m repflow_core.flow_fused build`` still builds the native kernel.
"""

from __future__ import annotations

import sys

from .kernels import *  # noqa: F401,F403  (re-export the public API)
from .kernels import CPU_NATIVE, REGISTRY, available_impls, make_fused, native_library, pack_parameters, select  # noqa: F401
from .kernels.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
