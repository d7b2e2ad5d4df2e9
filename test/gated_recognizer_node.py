"""Test-only entry point: the recognizer node with a gate in front of inference.

While the file named by ``REPFLOW_TEST_PREDICT_GATE`` exists, ``Recognizer.predict`` waits (polling every 5 ms)
before running the model. A test closes the gate to make the node "busy" for exactly as long as it needs, whatever
the machine's load, instead of hoping that a burst of frames outruns a fast model. Nothing here ships: the node is
the real one, started through its real ``main``.

    python -m gated_recognizer_node --ros-args ...      (with test/ on PYTHONPATH, as NodeProcess sets it)
"""

from __future__ import annotations

import os
import time


def install_gate(gate_path: str) -> None:
    from repflow_core import recognizer

    original = recognizer.Recognizer.predict

    def gated_predict(self, frames):
        while os.path.exists(gate_path):
            time.sleep(0.005)
        return original(self, frames)

    recognizer.Recognizer.predict = gated_predict


if __name__ == "__main__":
    install_gate(os.environ["REPFLOW_TEST_PREDICT_GATE"])
    from repflow_ros import recognizer_node

    recognizer_node.main()
