"""Test-only entry point: the recognizer node with a gate in front of a model swap's load.

While the file named by ``REPFLOW_TEST_LOAD_GATE`` exists, ``ModelLoader._build`` (the background part of a swap:
build, self-test, warm-up) waits, polling every 5 ms. A test closes the gate to keep a swap "loading" for exactly as
long as it needs (to show that intake and the old model keep running meanwhile), whatever the machine's speed. The
node is the real one, started through its real ``main``.
"""

from __future__ import annotations

import os
import time


def install_gate(gate_path: str) -> None:
    from repflow_ros import model_swap

    original = model_swap.ModelLoader._build

    def gated_load(*args, **kwargs):
        while os.path.exists(gate_path):
            time.sleep(0.005)
        return original(*args, **kwargs)

    model_swap.ModelLoader._build = staticmethod(gated_load)


if __name__ == "__main__":
    install_gate(os.environ["REPFLOW_TEST_LOAD_GATE"])
    from repflow_ros import recognizer_node

    recognizer_node.main()
