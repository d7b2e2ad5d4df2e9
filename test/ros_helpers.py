"""Helpers for tests that talk to real node processes over real DDS.

* :func:`make_tiny_checkpoint` writes a checkpoint small enough for a few-ms CPU inference.
* :class:`NodeProcess` runs ``python -m <module> --ros-args ...`` with output captured to files, and always stops it.
* :class:`RosHarness` is an rclpy node in its own context with a background executor: publishers, recording
  subscriptions (:class:`Recorder`), service calls with timeouts.

Everything waits by polling a condition with a bounded timeout; nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = Path(__file__).resolve().parent


def make_tiny_checkpoint(path, labels: Sequence[str] = ("a", "b", "c"), clip_len: int = 8,
                         size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """A valid repflow checkpoint of a very small model (ResNet-18 at 1/8 width, 2 flow iterations)."""
    import torch

    from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
    from repflow_core.model import ActionNet, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(backbone="resnet18", width=0.125, num_classes=len(labels), flow="single", flow_after="layer1",
                      iterations=2, dropout=0.0)
    model = ActionNet(cfg)
    spec = InputSpec(clip_len=clip_len, size=size, resize_short=max(size) + 4)
    return save_checkpoint(Checkpoint(cfg, list(labels), spec, model.state_dict()), path)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (returns the
    last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------------------------
# node processes


class NodeProcess:
    """A node run as ``python -m module --ros-args ...``; stdout/stderr go to files under ``log_dir``."""

    def __init__(self, module: str, ros_args: Sequence[str], log_dir, name: str = "node",
                 env: dict[str, str] | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"{name}.stdout"
        self.stderr_path = self.log_dir / f"{name}.stderr"
        full_env = dict(os.environ)
        # test/ too, for test-only entry points such as gated_recognizer_node.
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), str(TEST_DIR)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        full_env.setdefault("OMP_NUM_THREADS", "1")
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
        full_env.update(env or {})
        self.cmd = [sys.executable, "-m", module, "--ros-args", *ros_args]
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO_ROOT), env=full_env, stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self) -> str:
        if not self._out.closed:  # still running (stop() closes it)
            self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> int | None:
        """``sig`` (SIGINT: a clean shutdown), then SIGKILL if it does not exit within ``timeout`` s. Returns the exit
        code; :attr:`stop_seconds` is the time from the signal to the exit (None if it was not running)."""
        self.stop_seconds = None
        if self.proc.poll() is None:
            start = time.monotonic()
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            code = self.wait_exit(timeout)
            self.stop_seconds = time.monotonic() - start
            if code is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()
        return self.proc.returncode

    def describe(self) -> str:
        return (f"command: {' '.join(self.cmd)}\nexit: {self.proc.poll()}\n--- stdout ---\n{self.stdout()[-4000:]}"
                f"\n--- stderr ---\n{self.stderr()[-4000:]}")


# ---------------------------------------------------------------------------------------------------------------------
# in-process rclpy driver


class Recorder:
    """Collects (receive monotonic time, message) from a subscription."""

    def __init__(self):
        self._cond = threading.Condition()
        self.items: list[tuple[float, Any]] = []

    def __call__(self, msg) -> None:
        with self._cond:
            self.items.append((time.monotonic(), msg))
            self._cond.notify_all()

    def messages(self, since: float = 0.0) -> list[Any]:
        with self._cond:
            return [msg for t, msg in self.items if t >= since]

    def count(self) -> int:
        with self._cond:
            return len(self.items)

    def wait_for(self, predicate: Callable[[list[Any]], Any], timeout: float, since: float = 0.0) -> Any:
        """Wait until ``predicate(messages received at or after since)`` is truthy; returns its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate([msg for t, msg in self.items if t >= since])
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value
                self._cond.wait(min(remaining, 0.1))


class RosHarness:
    """A test-side rclpy node in a private context, spun by a background executor thread."""

    def __init__(self, name: str = "test_driver"):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self._clients: dict = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="test_executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            pass  # context shut down

    def publisher(self, msg_type, topic: str, depth: int = 50, reliable: bool = True):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def record(self, msg_type, topic: str, depth: int = 200, reliable: bool = True) -> Recorder:
        """Subscribe and record; ``recorder.subscription`` is the rclpy subscription (destroy it to stop)."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        recorder = Recorder()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        recorder.subscription = self.node.create_subscription(msg_type, topic, recorder, qos)
        return recorder

    # Services whose request can be sent twice without changing the outcome.
    IDEMPOTENT = ("SetParameters", "GetParameters", "SetBool", "GetState")

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        """Call a service; waits for it to appear and for the answer (each within ``timeout``).

        Clients are kept for the harness's lifetime: with Fast DDS, the first request of a brand-new client can
        reach the server before the server's reply writer has matched the client, and that reply is lost. An
        idempotent request (:data:`IDEMPOTENT`) that got no answer is therefore sent again every few seconds
        until ``timeout``; any other request is sent once.
        """
        client = self._client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} did not appear within {timeout} s")
        resend = 3.0 if srv_type.__name__ in self.IDEMPOTENT else timeout
        deadline = time.monotonic() + timeout
        while True:
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _f, done=done: done.set())
            left = deadline - time.monotonic()
            if done.wait(max(0.0, min(resend, left))):
                return future.result()
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"service {name} did not answer within {timeout} s")

    def _client(self, srv_type, name: str):
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        return self._clients[key]

    def set_parameters(self, node_name: str, values: dict[str, Any], timeout: float = 10.0):
        """Set parameters on a remote node; returns the list of SetParametersResult."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        return self.call(SetParameters, f"{node_name}/set_parameters", request, timeout).results

    def close(self) -> None:
        import rclpy

        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:
            pass
        try:
            self.node.destroy_node()
        except Exception:
            pass
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


class RepeatedCaller(threading.Thread):
    """Calls one service again and again from a background thread, whenever it exists (a lifecycle node's services
    come and go with configure / cleanup), until :attr:`stop` is set; :attr:`answers` counts the replies.

    ``request()`` builds each request and ``on_answer(response)`` sees each reply. A request without a reply within
    ``reply_wait`` seconds (the service went away with a cleanup, or the reply was lost) is forgotten."""

    def __init__(self, h: RosHarness, srv_type, name: str, request: Callable[[], Any],
                 on_answer: Callable[[Any], None] | None = None, reply_wait: float = 2.0, pause: float = 0.05,
                 thread_name: str = "repeated_caller"):
        super().__init__(name=thread_name, daemon=True)
        self.client = h.node.create_client(srv_type, name)
        self.request, self.on_answer = request, on_answer
        self.reply_wait, self.pause = reply_wait, pause
        self.stop, self.answers = threading.Event(), 0

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.client.wait_for_service(timeout_sec=0.2):
                continue
            done = threading.Event()
            future = self.client.call_async(self.request())
            future.add_done_callback(lambda _f, done=done: done.set())
            if done.wait(self.reply_wait) and future.result() is not None:
                self.answers += 1
                if self.on_answer is not None:
                    self.on_answer(future.result())
            else:
                self.client.remove_pending_request(future)
            self.stop.wait(self.pause)


class LifecycleClient:
    """Persistent clients of one lifecycle node's ``change_state`` / ``get_state``, safe against a lost reply.

    With Fast DDS the first reply to a brand-new client can be lost (see :meth:`RosHarness.call`); on a loaded
    machine discovery is slower and the window wider (seen: a configure that happened, its reply never came). A
    transition is not idempotent, so instead of blindly resending, a request without an answer after a few seconds
    is followed by ``get_state``: already in the transition's goal state means done (the node's single executor
    thread answers ``get_state`` only after a transition in progress has finished); still elsewhere means the
    request is sent again. A late duplicate that the node refuses still counts as done when the goal was reached."""

    GOAL_STATE = {1: "inactive", 2: "unconfigured", 3: "active", 4: "inactive", 5: "finalized", 6: "finalized",
                  7: "finalized"}  # lifecycle_msgs/Transition ids -> the primary state they lead to

    def __init__(self, h: RosHarness, node: str, reply_wait: float = 3.0):
        from lifecycle_msgs.srv import ChangeState, GetState

        self.node, self.reply_wait = node, reply_wait
        self.change = h.node.create_client(ChangeState, f"{node}/change_state")
        self.get = h.node.create_client(GetState, f"{node}/get_state")

    def _send(self, client, request, wait: float):
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if done.wait(max(0.0, wait)):
            return future.result()
        client.remove_pending_request(future)
        return None

    def state(self, timeout: float = 30.0) -> str:
        from lifecycle_msgs.srv import GetState

        deadline = time.monotonic() + timeout
        assert self.get.wait_for_service(timeout_sec=timeout), f"{self.get.srv_name} did not appear"
        while True:
            left = deadline - time.monotonic()
            reply = self._send(self.get, GetState.Request(), min(self.reply_wait, left))
            if reply is not None:
                return reply.current_state.label
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.get.srv_name} did not answer within {timeout} s")

    CYCLE = ((4, "deactivate"), (2, "cleanup"), (1, "configure"), (3, "activate"))  # active -> active

    def cycle(self, what: str, details: Callable[[], str] = str, timeout: float = 30.0) -> None:
        """One full lifecycle round from Active back to Active; an AssertionError names the transition that
        failed, with ``what`` and ``details()`` (e.g. the node process's output)."""
        for tid, name in self.CYCLE:
            assert self.transition(tid, timeout), f"{what}: {name} failed\n{details()}"

    def transition(self, tid: int, timeout: float = 30.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        goal = self.GOAL_STATE[tid]
        deadline = time.monotonic() + timeout
        assert self.change.wait_for_service(timeout_sec=timeout), f"{self.change.srv_name} did not appear"
        resent = False
        while True:
            left = deadline - time.monotonic()
            reply = self._send(self.change, ChangeState.Request(transition=Transition(id=tid)),
                               min(self.reply_wait, left))
            if reply is not None:
                return bool(reply.success) or (resent and self.state(max(1.0, left)) == goal)
            if self.state(max(1.0, deadline - time.monotonic())) == goal:
                return True
            if time.monotonic() >= deadline:
                return False
            resent = True


# ---------------------------------------------------------------------------------------------------------------------
# messages


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "test_cam", encoding: str = "rgb8"):
    """A sensor_msgs/Image with an exact stamp (ns)."""
    from builtin_interfaces.msg import Time

    from repflow_ros.image_decoding import rgb_to_image_msg

    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return rgb_to_image_msg(rgb, stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id, encoding=encoding)


def stamp_ns_of(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def diagnostic_values(array_msg, name: str) -> dict[str, str] | None:
    """The KeyValues of the status called ``name`` in a DiagnosticArray (None when absent)."""
    for status in array_msg.status:
        if status.name == name:
            values = {kv.key: kv.value for kv in status.values}
            values["_level"] = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) \
                else int(status.level)
            values["_message"] = status.message
            return values
    return None


def predictions(string_msgs) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in string_msgs]


def predictions_for(recorder: Recorder, stamps, since: float = 0.0) -> list[dict[str, Any]]:
    """The predictions (``~/prediction`` JSON) recorded at or after ``since`` whose stamp is one of ``stamps`` (ns)."""
    wanted = np.asarray(sorted(stamps), dtype=np.float64) / 1e9
    return [p for p in predictions(recorder.messages(since))
            if len(wanted) and np.min(np.abs(wanted - p["stamp"])) < 2e-6]


def newest_diagnostic(recorder: Recorder, name: str, since: float = 0.0) -> dict[str, str] | None:
    """The values of the newest status ``name`` among the DiagnosticArrays recorded at or after ``since``."""
    for msg in reversed(recorder.messages(since)):
        values = diagnostic_values(msg, name)
        if values is not None:
            return values
    return None


def wait_diagnostic(recorder: Recorder, name: str, predicate, since: float = 0.0, timeout: float = 30.0):
    """The first :func:`newest_diagnostic` for which ``predicate`` holds, waiting up to ``timeout`` (None)."""
    def check():
        values = newest_diagnostic(recorder, name, since)
        return values if values is not None and predicate(values) else None
    return wait_until(check, timeout, interval=0.05)
