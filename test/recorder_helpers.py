"""Helpers for the recorder tests: a synthetic camera publishing over real DDS, and the recorder as a process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ros_helpers import NodeProcess, RosHarness, wait_until

FRAME_SIZE = (64, 80)  #: (height, width): not square, so a test sees that clips keep the camera's native size
FPS = 30
PERIOD_NS = 1_000_000_000 // FPS
CAMERA_TOPIC = "/rec_test/image"


class FramePublisher:
    """Publishes synthetic generation-1 frames (``render_clip``) on ``topic`` at about ``FPS`` (wall clock), with
    exact header stamps ``base + k * PERIOD_NS`` and frame_id ``rec_cam``; ``published`` counts them."""

    def __init__(self, harness: RosHarness, topic: str = CAMERA_TOPIC, action: str = "wave"):
        from sensor_msgs.msg import Image

        from repflow_core.data.synthetic import render_clip

        self.frames = render_clip(action, 30, size=FRAME_SIZE, seed=3, generation=1)
        self.pub = harness.publisher(Image, topic, depth=10, reliable=True)
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame_publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from ros_helpers import image_msg

        base = 1_700_000_000 * 1_000_000_000
        while not self._stop.is_set():
            k = self.published
            self.pub.publish(image_msg(self.frames[k % len(self.frames)], base + k * PERIOD_NS, "rec_cam"))
            self.published += 1
            self._stop.wait(1.0 / FPS)  # a camera's pace, not synchronisation

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def start_recorder(dataset_dir: Path, log_dir: Path, name: str = "recorder", extra: tuple[str, ...] = (),
                   node_name: str = "repflow_recorder", topic: str = CAMERA_TOPIC) -> NodeProcess:
    """The recorder node as a process on the test camera (reliable QoS so no frame is lost to the test's load).
    Tests that run beside another recorder give theirs another ``node_name`` and ``topic``."""
    args = ["-p", f"dataset_dir:={dataset_dir}", "-p", "image_qos:=reliable", "-p", "min_free_bytes:=0",
            "-r", f"image:={topic}", "-r", f"__node:={node_name}"]
    for item in extra:
        args += ["-p", item]
    return NodeProcess("repflow_ros.recorder_node", args, log_dir, name=name)


def wait_ready(harness: RosHarness, proc: NodeProcess, timeout: float = 60.0,
               node: str = "/repflow_recorder") -> RecorderClient:
    """Until the recorder answers on ``set_parameters``, ``~/stop`` and ``~/start`` (which leaves its ``label``
    empty); returns the warmed-up clients."""
    from std_srvs.srv import Trigger

    client = harness.node.create_client(Trigger, f"{node}/start")
    try:
        assert client.wait_for_service(timeout_sec=timeout), proc.describe()
    finally:
        harness.node.destroy_client(client)
    calls = RecorderClient(harness, node)
    calls.warm_up(timeout)
    return calls


def events_of(recorder) -> list[dict]:
    return [json.loads(m.data) for m in recorder.messages()]


def wait_event(events, kind: str, timeout: float = 30.0, **match) -> dict | None:
    """The first ``~/events`` entry of ``kind`` whose fields equal ``match``."""
    def find():
        for event in events_of(events):
            if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        return None
    return events.wait_for(lambda _msgs: find(), timeout)


def hidden_temps(dataset_dir: Path) -> list[Path]:
    return sorted(p for p in Path(dataset_dir).rglob(".*") if p.is_file())


def poll(predicate, timeout: float = 30.0):
    return wait_until(predicate, timeout, interval=0.05)


def monotonic() -> float:
    return time.monotonic()


class RecorderClient:
    """Persistent service clients of the recorder (created once, so a reply never races a fresh client's discovery:
    with a new client per call, Fast DDS can drop the first reply when the server's reply writer has not matched the
    client yet). :meth:`warm_up` makes one harmless round trip on each client, retrying until answered."""

    def __init__(self, harness: RosHarness, node: str = "/repflow_recorder"):
        from rcl_interfaces.srv import SetParameters
        from std_srvs.srv import Trigger

        self.harness, self.node_name = harness, node
        self._clients = {"start": harness.node.create_client(Trigger, f"{node}/start"),
                         "stop": harness.node.create_client(Trigger, f"{node}/stop"),
                         "set": harness.node.create_client(SetParameters, f"{node}/set_parameters")}

    def client(self, which: str):
        """The persistent rclpy client: ``start``, ``stop`` or ``set``."""
        return self._clients[which]

    def _call(self, which: str, request, timeout: float):
        client = self._clients[which]
        assert client.wait_for_service(timeout_sec=timeout), f"{self.node_name} {which} did not appear"
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        return future.result() if done.wait(timeout) else None

    def warm_up(self, timeout: float = 60.0) -> None:
        from std_srvs.srv import Trigger

        deadline = time.monotonic() + timeout
        while self.set_parameters({"label": ""}, timeout=2.0, retry=False) is None:
            assert time.monotonic() < deadline, f"{self.node_name}/set_parameters never answered"
        for which in ("stop", "start"):  # with no label, start is refused: harmless
            while self._call(which, Trigger.Request(), 2.0) is None:
                assert time.monotonic() < deadline, f"{self.node_name}/{which} never answered"

    def set_parameters(self, values: dict, timeout: float = 30.0, retry: bool = True):
        """SetParametersResult list (idempotent, so resent when a reply is lost), None on timeout without retry."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._call("set", request, min(5.0, timeout))
            if reply is not None or not retry:
                return reply.results if reply is not None else None
            assert time.monotonic() < deadline, f"{self.node_name}/set_parameters did not answer in {timeout} s"

    def start(self, timeout: float = 30.0):
        from std_srvs.srv import Trigger

        reply = self._call("start", Trigger.Request(), timeout)
        assert reply is not None, f"{self.node_name}/start did not answer in {timeout} s"
        return reply


def events_subscription(harness: RosHarness, node: str = "/repflow_recorder", depth: int = 50):
    """A :class:`~ros_helpers.Recorder` of ``node``'s ``~/events`` (reliable, transient local: recent outcomes too)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from ros_helpers import Recorder
    from std_msgs.msg import String

    recorder = Recorder()
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    recorder.subscription = harness.node.create_subscription(String, f"{node}/events", recorder, qos)
    return recorder


def trigger_until_answered(client, timeout: float = 30.0, reply_wait: float = 3.0):
    """Call a std_srvs/Trigger ``client`` until a reply comes (a service recreated by configure can lose the first
    reply to a client it has not matched yet); returns the reply. Only for calls whose repetition is harmless or
    recognisable (a repeated ``~/start`` answers "already recording")."""
    from std_srvs.srv import Trigger

    deadline = time.monotonic() + timeout
    assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} did not appear"
    while True:
        done = threading.Event()
        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda _f, done=done: done.set())
        if done.wait(max(0.0, min(reply_wait, deadline - time.monotonic()))):
            return future.result()
        client.remove_pending_request(future)
        assert time.monotonic() < deadline, f"{client.srv_name} did not answer within {timeout} s"
