"""The process runner of the nodes: ``executor.spin()`` returns once the context is shut down, even when the wake-up
that should come with the shutdown is lost.

rclpy's signal thread triggers the executors' guard conditions *before* it shuts the contexts down; a spinning thread
that runs in between re-waits with nothing left to wake it (a node that ignored SIGTERM in CI). The test makes that
lost wake-up deterministic: it shuts the rcl context down the way the signal thread does (the C-level shutdown, with
none of the Python-side callbacks that would wake the executor) while an executor spins with nothing to do.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402

from repflow_ros.node_runner import ShutdownWaker  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _spin_in_thread(executor) -> threading.Event:
    returned = threading.Event()

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        finally:
            returned.set()

    threading.Thread(target=spin, daemon=True).start()
    return returned


def _shutdown_like_the_signal_thread(context) -> None:
    """``rcl_shutdown`` on the context and nothing else, as rclpy's ``shutdown_contexts()`` does."""
    context._Context__context.shutdown()  # noqa: SLF001 -- the handle the signal thread shuts down
    assert not context.ok()


def test_spin_returns_after_a_shutdown_that_brings_no_wake_up():
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node("shutdown_waker_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        with ShutdownWaker(executor, context, poll_s=0.05):
            returned = _spin_in_thread(executor)
            assert not returned.wait(0.3), "the executor should be idle, waiting for work"
            _shutdown_like_the_signal_thread(context)
            assert returned.wait(20.0), "spin() did not return after the context was shut down"
    finally:
        executor.shutdown(timeout_sec=0.1)
        node.destroy_node()
        context.try_shutdown()


PROBE = r'''
import os, signal, sys
from rclpy.lifecycle import LifecycleNode
from repflow_ros.node_runner import run_lifecycle_node

class Probe(LifecycleNode):
    """Spins; its first timer tick signals its own process and, while the context is still valid, fails inside a
    callback the way a KeyboardInterrupt caught by pybind11 does."""
    autostart = False

    def __init__(self):
        super().__init__("runner_probe")
        # Without rclpy's handler the context stays valid after the signal: the moment before rclpy's signal thread
        # shuts it down, held for as long as the test needs (the runner's own handler, installed first, remains).
        from rclpy.signals import uninstall_signal_handlers
        uninstall_signal_handlers()
        self.timer = self.create_timer(0.05, self.tick)

    def tick(self):
        self.timer.cancel()
        try:
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
            for _ in range(1000):  # bytecodes: Python runs the noted signal's handler here
                pass
        except KeyboardInterrupt:  # SIGINT's, caught as pybind11 would catch it
            pass
        print(f"context ok when failing: {self.context.ok()}", flush=True)
        raise RuntimeError("Unable to convert call argument '0' to Python object")

    def close(self):
        pass

sys.exit(run_lifecycle_node(Probe, sys.argv[:1], "runner_probe", lambda: "probe"))
'''


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_error_raised_by_a_signal_before_the_shutdown_is_a_clean_exit(tmp_path, sig):
    """After SIGINT / SIGTERM, an exception out of spin() is the shutdown asked for (status 0, no traceback),
    even while rclpy has not shut the context down yet."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = subprocess.run([sys.executable, str(probe), sig], capture_output=True, text=True, timeout=120,
                            cwd=str(REPO_ROOT), env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert "context ok when failing: True" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_an_error_without_a_signal_is_still_a_failure(tmp_path):
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.replace("os.kill(os.getpid(), getattr(signal, sys.argv[1]))", "pass"))
    result = subprocess.run([sys.executable, str(probe), "SIGTERM"], capture_output=True, text=True, timeout=120,
                            cwd=str(REPO_ROOT), env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2 and "Unable to convert call argument" in result.stderr, result.stderr
