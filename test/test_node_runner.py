"""The process runner of the nodes: ``executor.spin()`` returns once the context is shut down, even when the wake-up
that should come with the shutdown is lost.

rclpy's signal thread triggers the executors' guard conditions *before* it shuts the contexts down; a spinning thread
that runs in between re-waits with nothing left to wake it (a node that ignored SIGTERM in CI). The test makes that
lost wake-up deterministic: it shuts the rcl context down the way the signal thread does (the C-level shutdown, with
none of the Python-side callbacks that would wake the executor) while an executor spins with nothing to do.
"""

from __future__ import annotations

import threading

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402

from repflow_ros.node_runner import ShutdownWaker  # noqa: E402


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
