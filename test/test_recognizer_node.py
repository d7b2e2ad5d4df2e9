"""The recognizer node as a separate process, driven over real DDS from this process.

One node process (tiny checkpoint, CPU) is shared by the behaviour tests; each test identifies its own frames by
their header stamps, so leftovers of an earlier test cannot satisfy a later one. Processes that must fail at start-up
(bad checkpoint, CUDA on a CPU machine, out-of-range value) and a second node (compressed transport, namespace) are
started together in the background once the shared node is up, and checked at the end.

The shared node runs through test/gated_recognizer_node.py: the real node with a gate in front of inference, so the
burst test makes inference busy for as long as it needs instead of relying on the machine's speed (issue 17).
Nothing here waits a fixed time: every wait is on a condition with a generous deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from ros_helpers import (  # noqa: E402
    REPO_ROOT,
    LifecycleClient,
    NodeProcess,
    RosHarness,
    diagnostic_values,
    image_msg,
    make_tiny_checkpoint,
    newest_diagnostic,
    predictions,
    predictions_for,
    wait_diagnostic,
    wait_until,
)

NODE = "/repflow_recognizer"
IMAGE_TOPIC = "/test_cam/image_raw"
CMP_IMAGE_TOPIC = "/test_cam2/image_raw"  # the compressed node subscribes <this>/compressed
LABELS = ("a", "b", "c")
DIAG_NAME = "repflow_recognizer: inference"
W, H = 64, 48
WAIT = 20.0  # upper bound of every single wait


# ---------------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("recognizer_node")


@pytest.fixture(scope="module")
def tiny_ckpt(workdir):
    return make_tiny_checkpoint(workdir / "tiny.pt", labels=LABELS)


@pytest.fixture(scope="module")
def failing_runs(workdir, tiny_ckpt, drv):
    """Start-up failures, launched together in the background once the shared node is up (they then overlap with
    the paced streaming tests instead of slowing the shared node's start); each test at the end checks one."""
    corrupt = workdir / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    missing = workdir / "no_such_dir" / "missing.pt"
    runs = {
        "missing": (missing, ["-p", f"model_path:={missing}", "-p", "device:=cpu"]),
        "corrupt": (corrupt, ["-p", f"model_path:={corrupt}", "-p", "device:=cpu"]),
        "cuda": (tiny_ckpt, ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cuda"]),
        "bad_value": (tiny_ckpt, ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cpu", "-p", "hop:=0"]),
    }
    procs = {key: (path, NodeProcess("repflow_ros.recognizer_node", args, workdir / "logs", name=f"fail_{key}"))
             for key, (path, args) in runs.items()}
    yield procs
    for _, proc in procs.values():
        proc.stop(timeout=5)


@pytest.fixture(scope="module")
def compressed_node(workdir, tiny_ckpt, drv):
    """A second node in namespace /cmp: compressed transport, reliable QoS. Started early, tested at the end."""
    proc = NodeProcess(
        "repflow_ros.recognizer_node",
        ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cpu", "-p", "image_transport:=compressed",
         "-p", "image_qos:=reliable", "-p", "warmup:=0", "-r", "__ns:=/cmp", "-r", f"image:={CMP_IMAGE_TOPIC}"],
        workdir / "logs", name="compressed_node")
    yield proc
    proc.stop(timeout=10)


class Gate:
    """Inference of the shared node waits while the gate is closed (see test/gated_recognizer_node.py)."""

    def __init__(self, path):
        self.path = path

    def close(self) -> None:
        self.path.write_text("closed\n")

    def open(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def gate(workdir):
    gate = Gate(workdir / "inference.gate")
    gate.open()
    yield gate
    gate.open()


@pytest.fixture(scope="module")
def node(workdir, tiny_ckpt, gate):
    proc = NodeProcess(
        "gated_recognizer_node",
        ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cpu", "-p", "hop:=2", "-p", "smoothing:=2",
         "-p", "warmup:=1", "-p", "top_k:=5", "-r", f"image:={IMAGE_TOPIC}"],
        workdir / "logs", name="shared_node", env={"REPFLOW_TEST_PREDICT_GATE": str(gate.path)})
    yield proc
    proc.stop(timeout=10)


class Driver:
    """The test side: a camera publisher and recorders of every output of the node."""

    def __init__(self, harness: RosHarness):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.h = harness
        self.image_pub = harness.publisher(Image, IMAGE_TOPIC, depth=50)
        self.labels = harness.record(String, "/action_label")
        self.prediction = harness.record(String, f"{NODE}/prediction")
        self.diagnostics = harness.record(DiagnosticArray, "/diagnostics")
        self.rng = np.random.default_rng(1)

    # camera
    def frame(self, w: int = W, h: int = H) -> np.ndarray:
        return self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def send(self, n: int, fps: float = 30.0, size=(W, H), stamps=None, make_msg=None) -> list:
        """Publish ``n`` frames paced at ``fps`` (0: as fast as possible), stamped with the wall clock unless
        ``stamps`` (ns) are given. Returns the stamps used."""
        used = []
        for i in range(n):
            stamp = int(stamps[i]) if stamps is not None else time.time_ns()
            rgb = self.frame(*size)
            msg = make_msg(rgb, stamp) if make_msg else image_msg(rgb, stamp)
            self.image_pub.publish(msg)
            used.append(stamp)
            if fps > 0:
                time.sleep(1.0 / fps)
        return used

    # outputs
    def predictions_for(self, stamps, since: float = 0.0) -> list:
        return predictions_for(self.prediction, stamps, since)

    def wait_predictions_for(self, stamps, since: float = 0.0, count: int = 1, timeout: float = WAIT) -> list:
        wait_until(lambda: len(self.predictions_for(stamps, since)) >= count, timeout)
        return self.predictions_for(stamps, since)

    def diag(self, since: float = 0.0):
        """Values of the newest diagnostics status of the node received at or after ``since`` (None if none)."""
        return newest_diagnostic(self.diagnostics, DIAG_NAME, since)

    def wait_diag(self, predicate, since: float = 0.0, timeout: float = WAIT):
        return wait_diagnostic(self.diagnostics, DIAG_NAME, predicate, since, timeout)

    def fresh_diag(self):
        """Diagnostics published after this call (waits for the next 1 Hz message)."""
        values = self.wait_diag(lambda v: True, since=time.monotonic(), timeout=5.0)
        assert values is not None, "no diagnostics within 5 s"
        return values


@pytest.fixture(scope="module")
def drv(node):
    harness = RosHarness("recognizer_test_driver")
    driver = Driver(harness)
    ready = driver.wait_diag(lambda v: v.get("state") == "active", timeout=60.0)
    assert ready is not None, f"node did not become active\n{node.describe()}"
    assert wait_until(lambda: driver.image_pub.get_subscription_count() >= 1, WAIT), "node never subscribed"
    for recorder in (driver.labels, driver.prediction):
        assert wait_until(lambda r=recorder: r.subscription.get_publisher_count() >= 1, WAIT), "outputs not matched"
    yield driver
    harness.close()


@pytest.fixture
def alive(node, drv, failing_runs, compressed_node):
    """The shared node is running before and after the test (and the background processes have been started)."""
    assert node.alive(), node.describe()
    yield
    assert node.alive(), f"the node died during the test\n{node.describe()}"


def int_value(values, key: str) -> int:
    return int(values[key])


# ---------------------------------------------------------------------------------------------------------------------
# behaviour of the running node


def test_labels_and_prediction_stamps(drv, alive):
    since = time.monotonic()
    stamps = drv.send(30)
    preds = drv.wait_predictions_for(stamps, since, count=3)
    assert len(preds) >= 3, f"only {len(preds)} predictions for 30 frames"
    for p in preds:
        assert set(p) == {"label", "score", "stamp", "frame_id", "topk", "latency_ms", "window_seq"}
        assert p["label"] in LABELS
        assert p["frame_id"] == "test_cam"
        assert [row[0] for row in p["topk"]][0] == p["label"]
        assert len(p["topk"]) == len(LABELS)  # top_k 5 capped at the number of classes
        assert 0.0 <= p["score"] <= 1.0 and abs(p["topk"][0][1] - p["score"]) < 1e-9
        assert 0.0 <= p["latency_ms"] < 5000.0
    seqs = [p["window_seq"] for p in preds]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The first window of a segment ends at its clip_len-th frame (8), and every window at the newest frame pushed.
    assert min(p["stamp"] for p in preds) >= stamps[7] / 1e9 - 1e-6
    labels = drv.labels.wait_for(lambda msgs: [m.data for m in msgs] if msgs else None, WAIT, since=since)
    assert labels and set(labels) <= set(LABELS)


def test_diagnostics_keys(drv, alive):
    values = drv.wait_diag(lambda v: int(v["windows_inferred"]) > 0)
    assert values is not None
    expected = {"input_rate_hz", "windows_per_s", "inference_ms_mean", "inference_ms_p95", "latency_ms_p50",
                "latency_ms_p95", "frames_in", "windows_skipped_busy", "device", "state"}
    expected |= {f"frames_dropped_{c}" for c in ("unsupported_encoding", "truncated", "bad_step", "empty",
                                                  "compressed_decode_failed")}
    expected |= {f"window_resets_{r}" for r in ("time_jump_backwards", "frame_gap", "size_change")}
    assert expected <= set(values), f"missing keys: {expected - set(values)}"
    for key in ("input_rate_hz", "windows_per_s", "inference_ms_mean", "inference_ms_p95", "latency_ms_p50",
                "latency_ms_p95"):
        assert float(values[key]) >= 0.0
    assert float(values["inference_ms_mean"]) > 0.0
    assert values["device"].startswith("cpu")
    assert values["state"] == "active"


def test_unsupported_encoding_dropped_and_counted(drv, node, alive):
    def bayer(rgb, stamp):
        msg = image_msg(rgb, stamp)
        msg.encoding = "bayer_rggb8"
        msg.step = msg.width
        msg.data = msg.data[: msg.width * msg.height]
        return msg

    since = time.monotonic()
    drv.send(5, make_msg=bayer)
    good = drv.send(20)
    values = drv.wait_diag(lambda v: int_value(v, "frames_dropped_unsupported_encoding") >= 1, since=since)
    assert values is not None, drv.diag()
    assert drv.wait_predictions_for(good, since), "no labels for good frames after the bad ones"
    # Logged once per cause, then only counted.
    assert wait_until(lambda: "unsupported_encoding" in node.output(), 5.0)
    assert node.output().count("dropping frame (unsupported_encoding)") == 1, node.output()


def test_truncated_frames_dropped_and_counted(drv, alive):
    def truncated(rgb, stamp):
        msg = image_msg(rgb, stamp)
        msg.data = msg.data[: len(msg.data) // 2]
        return msg

    since = time.monotonic()
    drv.send(4, make_msg=truncated)
    good = drv.send(20)
    # WARN (level 1) in the period in which frames were dropped.
    values = drv.wait_diag(lambda v: int_value(v, "frames_dropped_truncated") >= 1 and v["_level"] == 1,
                           since=since)
    assert values is not None, drv.diag()
    assert "dropping frames" in values["_message"]
    assert drv.wait_predictions_for(good, since), "no labels for good frames after truncated ones"


def test_size_change_resets_window(drv, alive):
    since = time.monotonic()
    # Stamps 30 fps apart whatever the sending speed: a sender stalled by a loaded machine must not turn the size
    # change into a frame_gap reset (which takes precedence).
    t0 = time.time_ns()
    drv.send(12, stamps=[t0 + i * 33_333_333 for i in range(12)])
    bigger = drv.send(20, size=(80, 60), stamps=[t0 + (12 + i) * 33_333_333 for i in range(20)])
    values = drv.wait_diag(lambda v: int_value(v, "window_resets_size_change") >= 1, since=since)
    assert values is not None, drv.diag()
    preds = drv.wait_predictions_for(bigger, since)
    assert preds, "labels did not resume after the size change"
    # The first window after the reset ends no earlier than the 8th frame of the new size.
    assert min(p["stamp"] for p in preds) >= bigger[7] / 1e9 - 1e-6


def test_time_jump_backwards_resets_window(drv, alive):
    since = time.monotonic()
    drv.send(12)
    start = time.time_ns() - 10_000_000_000
    jumped = drv.send(20, stamps=[start + i * 33_333_333 for i in range(20)])
    values = drv.wait_diag(lambda v: int_value(v, "window_resets_time_jump_backwards") >= 1, since=since)
    assert values is not None, drv.diag()
    preds = drv.wait_predictions_for(jumped, since)
    assert preds, "labels did not resume after the jump back in time"
    assert min(p["stamp"] for p in preds) >= jumped[7] / 1e9 - 1e-6


def test_frame_gap_resets_window(drv, alive):
    since = time.monotonic()
    drv.send(12)
    start = time.time_ns() + 2_000_000_000  # 2 s later than the frame before: more than max_frame_gap (0.5 s)
    gapped = drv.send(16, stamps=[start + i * 33_333_333 for i in range(16)])
    values = drv.wait_diag(lambda v: int_value(v, "window_resets_frame_gap") >= 1, since=since)
    assert values is not None, drv.diag()
    preds = drv.wait_predictions_for(gapped, since)
    assert preds, "labels did not resume after the gap"
    # Without the reset a window would end at one of the first frames after the gap (hop 2).
    assert min(p["stamp"] for p in preds) >= gapped[7] / 1e9 - 1e-6


def test_frames_without_stamp_use_the_node_clock(drv, node, alive):
    def unstamped(rgb, _stamp):
        return image_msg(rgb, 0, frame_id="nostamp_cam")  # header stamp zero

    since = time.monotonic()
    before_ns = time.time_ns()
    drv.send(20, make_msg=unstamped)
    got = drv.prediction.wait_for(
        lambda msgs: [p for p in predictions(msgs) if p["frame_id"] == "nostamp_cam"], WAIT, since=since)
    assert got, "no labels for frames without a stamp"
    assert all(p["stamp"] >= before_ns / 1e9 - 1.0 and p["label"] in LABELS for p in got)
    values = drv.wait_diag(lambda v: int_value(v, "frames_no_stamp") >= 1, since=since)
    assert values is not None, drv.diag()
    assert node.output().count("have no header stamp") == 1


def test_debug_image_only_with_subscriber(drv, alive):
    from sensor_msgs.msg import Image

    debug = drv.h.record(Image, f"{NODE}/debug_image", depth=5, reliable=False)
    try:
        stamps = []

        def ours(msgs):  # an image of one of this test's frames (not a late one of the previous test)
            return [m for m in msgs if m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec in stamps]

        # The node publishes only once it has discovered this subscription: send until an image comes back.
        deadline = time.monotonic() + WAIT
        while not ours(debug.messages()) and time.monotonic() < deadline:
            stamps += drv.send(10)
        got = debug.wait_for(ours, 5.0)
        assert got, "no debug image while subscribed"
        msg = got[-1]
        assert msg.encoding == "rgb8" and msg.height >= 240 and msg.width > 0
        assert msg.header.frame_id == "test_cam"
    finally:
        drv.h.node.destroy_subscription(debug.subscription)


def test_burst_skips_windows_and_stays_responsive(drv, node, gate, alive):
    """Inference is held (the gate) while a burst arrives, so windows must be skipped whatever the machine's load:
    every window that becomes ready while one is pending replaces it. Once released, the node works on the newest
    window only (no backlog) and then keeps up with a paced stream."""
    want, clip_len = 30, 8
    results = drv.h.set_parameters(NODE, {"hop": 1})
    assert results[0].successful, results[0].reason
    try:
        before = drv.fresh_diag()
        t0, burst = time.time_ns(), []
        gate.close()
        try:
            since = time.monotonic()

            def arrived(values) -> int:
                return int_value(values, "frames_in") - int_value(before, "frames_in")

            # Send until `want` frames have reached the node (best-effort QoS may lose some on a loaded machine);
            # stamps 30 fps apart whatever the sending speed, so no gap or jump resets the window inside the burst.
            deadline = time.monotonic() + 4 * WAIT
            while time.monotonic() < deadline and not (drv.diag(since) and arrived(drv.diag(since)) >= want):
                burst += drv.send(10, stamps=[t0 + (len(burst) + i) * 33_333_333 for i in range(10)])
                drv.wait_diag(lambda v: True, since=time.monotonic(), timeout=5.0)
            # Quiescent: two successive diagnostics (1 Hz) report the same frame count.
            settled, previous = None, None
            while time.monotonic() < deadline and settled is None:
                values = drv.fresh_diag()
                if previous is not None and values["frames_in"] == previous["frames_in"]:
                    settled = values
                previous = values
            assert settled is not None and arrived(settled) >= want, f"the burst did not reach the node: {drv.diag()}"
            got = arrived(settled)
            skipped = int_value(settled, "windows_skipped_busy") - int_value(before, "windows_skipped_busy")
            # At most clip_len - 1 arrivals complete no window; while the gate holds, at most two windows are taken
            # (one finishing from before, one held) and one is pending: every other window that became ready was
            # skipped, never queued.
            assert skipped >= got - (clip_len - 1) - 3, (got, skipped, settled)
        finally:
            released = time.monotonic()
            gate.open()
        preds = drv.wait_predictions_for(burst, since)
        assert preds, f"no prediction after the gate opened: {drv.diag()}"
        # No backlog: after the release the held window and then the newest one are processed: `got` of the frames
        # sent arrived, so the newest arrival (and the newest window) is at least burst[got - 1].
        newest = drv.prediction.wait_for(
            lambda msgs: [p for p in predictions(msgs) if burst[got - 1] / 1e9 - 1e-6 <= p["stamp"] <= burst[-1] / 1e9
                          + 1e-6], WAIT, since=released)
        assert newest, f"the newest window of the burst was not processed: {drv.predictions_for(burst, since)}"
        paced_since = time.monotonic()
        paced = drv.send(30)
        preds = drv.wait_predictions_for(paced, paced_since, count=3)
        assert len(preds) >= 3, "labels stopped after the burst"
        burst_preds = drv.predictions_for(burst, since)
        assert len(burst_preds) <= 2, f"a backlog of {len(burst_preds)} burst windows was processed"
        # The newest frames are processed promptly.
        assert preds[-1]["latency_ms"] < 2000.0, preds[-1]
    finally:
        gate.open()
        results = drv.h.set_parameters(NODE, {"hop": 2})
        assert results[0].successful


def test_enable_service_pauses_and_resumes(drv, alive):
    from std_srvs.srv import SetBool

    response = drv.h.call(SetBool, f"{NODE}/enable", SetBool.Request(data=False))
    assert response.success, response.message
    try:
        since = time.monotonic()
        before = drv.fresh_diag()
        paused = drv.send(30)
        values = drv.wait_diag(
            lambda v: v["state"] == "paused"
            and int_value(v, "frames_ignored_paused") > int_value(before, "frames_ignored_paused"), since=since)
        assert values is not None, drv.diag()
        assert drv.predictions_for(paused, since) == [], "predictions while paused"
    finally:
        response = drv.h.call(SetBool, f"{NODE}/enable", SetBool.Request(data=True))
    assert response.success, response.message
    since = time.monotonic()
    resumed = drv.send(30)
    assert drv.wait_predictions_for(resumed, since), "labels did not resume after enable=true"


def test_read_only_parameter_refused(drv, alive):
    results = drv.h.set_parameters(NODE, {"device": "cpu"})
    assert not results[0].successful
    assert "read-only" in results[0].reason and "restart" in results[0].reason, results[0].reason
    results = drv.h.set_parameters(NODE, {"model_path": "/elsewhere.pt"})
    assert not results[0].successful and "model_path" in results[0].reason


def test_runtime_parameters_accepted(drv, alive):
    results = drv.h.set_parameters(NODE, {"score_threshold": 1.0})
    assert results[0].successful, results[0].reason
    try:
        since = time.monotonic()
        stamps = drv.send(24)
        preds = drv.wait_predictions_for(stamps, since)
        assert preds and all(p["label"] == "unknown" for p in preds), preds
        assert all(p["topk"][0][0] in LABELS for p in preds)
        assert drv.labels.wait_for(lambda msgs: any(m.data == "unknown" for m in msgs), WAIT, since=since)
        # Out of range and wrong type are refused.
        results = drv.h.set_parameters(NODE, {"score_threshold": 1.5})
        assert not results[0].successful
        results = drv.h.set_parameters(NODE, {"hop": "three"})
        assert not results[0].successful
    finally:
        results = drv.h.set_parameters(NODE, {"score_threshold": 0.0, "hop": 3, "top_k": 2})
        assert all(r.successful for r in results), [r.reason for r in results]
    since = time.monotonic()
    stamps = drv.send(24)
    preds = drv.wait_predictions_for(stamps, since, count=2)
    assert preds and all(p["label"] in LABELS and len(p["topk"]) == 2 for p in preds)
    assert drv.wait_diag(lambda v: v["hop"] == "3", since=since) is not None, drv.diag()
    results = drv.h.set_parameters(NODE, {"hop": 2, "top_k": 5})
    assert all(r.successful for r in results)


def test_nothing_is_published_while_inactive(drv, alive):
    """Lifecycle publishers: after deactivate (model released, image unsubscribed) neither predictions nor
    diagnostics come out; after activate both resume."""
    from lifecycle_msgs.msg import Transition

    life = LifecycleClient(drv.h, NODE)
    transition = life.transition

    assert transition(Transition.TRANSITION_DEACTIVATE)
    try:
        assert wait_until(lambda: drv.image_pub.get_subscription_count() == 0, WAIT), "still subscribed"
        # Messages published before the transition may still be in flight: observe from a moment later.
        settle = time.monotonic() + 0.5
        wait_until(lambda: time.monotonic() >= settle, 1.0)
        since = time.monotonic()
        drv.send(20)
        # A negative check needs an observation window: 2.5 diagnostics periods.
        wait_until(lambda: time.monotonic() >= since + 2.5, 5.0)
        assert drv.prediction.messages(since) == [], "predictions while inactive"
        assert drv.diag(since) is None, f"diagnostics while inactive: {drv.diag(since)}"
    finally:
        assert transition(Transition.TRANSITION_ACTIVATE)
    assert drv.wait_diag(lambda v: v["state"] == "active", since=time.monotonic()) is not None
    assert wait_until(lambda: drv.image_pub.get_subscription_count() >= 1, WAIT)
    since = time.monotonic()
    stamps = drv.send(20)
    assert drv.wait_predictions_for(stamps, since), "labels did not resume after activate"


def test_sigint_exits_cleanly_without_waiting_for_inference(node, drv, gate):
    """SIGINT while a window is in inference (held by the gate, which never opens): the node exits 0 at once, it
    does not wait for the window (under ros2 launch a slow exit gets a second SIGINT and is reported as died)."""
    assert node.alive(), node.describe()
    before = drv.fresh_diag()
    gate.close()
    since = time.monotonic()
    drv.send(12)
    assert drv.wait_diag(lambda v: int_value(v, "frames_in") > int_value(before, "frames_in") + 8, since=since), \
        drv.diag()
    code = node.stop(timeout=15.0)
    print(f"SIGINT -> exit {code} in {node.stop_seconds * 1000:.0f} ms (inference held)")
    assert code == 0, node.describe()
    assert node.stop_seconds < 2.0, f"exit took {node.stop_seconds:.2f} s"
    output = node.output()
    assert "Traceback" not in output and "never retrieved" not in output, output[-3000:]


def test_compressed_transport_and_namespace(compressed_node, drv):
    """image_transport=compressed subscribes <remapped image>/compressed; outputs and diagnostics move into /cmp."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import String

    from repflow_ros.image_decoding import rgb_to_compressed_msg

    pub = drv.h.publisher(CompressedImage, CMP_IMAGE_TOPIC + "/compressed", depth=20)
    prediction = drv.h.record(String, "/cmp/repflow_recognizer/prediction")
    diagnostics = drv.h.record(DiagnosticArray, "/diagnostics")
    assert wait_until(lambda: pub.get_subscription_count() >= 1, 60.0), compressed_node.describe()
    assert wait_until(lambda: prediction.subscription.get_publisher_count() >= 1, WAIT)

    def jpeg(rgb, stamp):
        sec, nanosec = divmod(stamp, 1_000_000_000)
        return rgb_to_compressed_msg(rgb, "jpeg", stamp=Time(sec=sec, nanosec=nanosec), frame_id="cmp_cam")

    since = time.monotonic()
    stamps = []
    for _ in range(20):
        stamp = time.time_ns()
        pub.publish(jpeg(drv.frame(), stamp))
        stamps.append(stamp)
        time.sleep(1 / 30)
    got = prediction.wait_for(lambda msgs: predictions(msgs), WAIT, since=since)
    assert got, compressed_node.describe()
    assert all(p["label"] in LABELS and p["frame_id"] == "cmp_cam" for p in got)
    assert any(abs(p["stamp"] - s / 1e9) < 2e-6 for p in got for s in stamps)
    name = "cmp/repflow_recognizer: inference"
    values = diagnostics.wait_for(
        lambda msgs: [v for v in (diagnostic_values(m, name) for m in msgs) if v and int(v["frames_in"]) > 0], WAIT)
    assert values and values[-1]["image_topic"] == CMP_IMAGE_TOPIC + "/compressed"
    assert compressed_node.stop(sig=signal.SIGTERM) == 0, compressed_node.describe()  # SIGTERM: also a clean exit
    print(f"SIGTERM -> exit 0 in {compressed_node.stop_seconds * 1000:.0f} ms")
    assert compressed_node.stop_seconds < 2.0, f"exit took {compressed_node.stop_seconds:.2f} s"
    assert "Traceback" not in compressed_node.output(), compressed_node.output()[-3000:]


# ---------------------------------------------------------------------------------------------------------------------
# start-up failures (processes started by the failing_runs fixture)


def _finished(run, timeout: float = 60.0):
    path, proc = run
    code = proc.wait_exit(timeout)
    assert code is not None, f"did not exit\n{proc.describe()}"
    return path, code, proc.stderr()


def test_missing_checkpoint_fails_configure(failing_runs):
    path, code, err = _finished(failing_runs["missing"])
    assert code == 1, err
    assert str(path) in err and "model_path" in err and "not found" in err, err


def test_corrupt_checkpoint_fails_configure(failing_runs):
    path, code, err = _finished(failing_runs["corrupt"])
    assert code == 1, err
    assert str(path) in err and "model_path" in err, err


def test_cuda_request_fails_without_cuda(failing_runs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, code, err = _finished(failing_runs["cuda"])
    assert code == 1, err
    assert "device='cuda'" in err and "CUDA is not available" in err, err


def test_out_of_range_value_fails_configure(failing_runs):
    _, code, err = _finished(failing_runs["bad_value"])
    assert code == 1, err
    assert "hop" in err and "configure failed" in err, err


def test_module_exposes_parameter_specs():
    from repflow_ros import recognizer_node

    assert recognizer_node.PARAMETER_SPECS["hop"].default >= 1
    assert set(recognizer_node.RUNTIME_PARAMETERS) == {"hop", "smoothing", "score_threshold", "top_k"}
    assert os.path.basename(recognizer_node.__file__) == "recognizer_node.py"


# ---------------------------------------------------------------------------------------------------------------------
# command line (no graph): --help and a missing parameter file
# (the result logic -- smoothing, threshold, vision_msgs/Classification -- is tested without ROS in test_prediction.py)


def _run_node_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "repflow_ros.recognizer_node", *args], cwd=str(REPO_ROOT),
                          env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_parameters_and_exits_at_once():
    from repflow_ros.node_parameters import PARAMETER_SPECS

    start = time.monotonic()
    result = _run_node_cli("--help")
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    for name, spec in PARAMETER_SPECS.items():
        assert f"{name} ({spec.type.__name__}, default {spec.default!r}" in result.stdout, name
    # No node was started: no ROS log line, no model load.
    output = result.stdout + result.stderr
    assert "[INFO]" not in output and "configured: model" not in output and "active: listening" not in output
    print(f"--help: {elapsed * 1000:.0f} ms")


def test_missing_params_file_fails(tmp_path):
    missing = tmp_path / "typo" / "recognize.yaml"
    result = _run_node_cli("--ros-args", "--params-file", str(missing), "-p", "device:=cpu")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert str(missing) in result.stderr and "does not exist" in result.stderr, result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**:\n  ros__parameters: [unclosed\n")
    result = _run_node_cli("--ros-args", "--params-file", str(broken))
    assert result.returncode == 1 and str(broken) in result.stderr, result.stderr
