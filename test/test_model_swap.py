"""Swapping the model of the running recognizer node over real DDS (issue 10 part 5), and ``backend:=onnxruntime``.

One node process (tiny checkpoints, CPU, reliable image QoS) is shared by the swap tests, in file order: A (labels
a, b, c; clip_len 8) -> B (x, y; same input spec: window kept) -> C (p, q, r, s; clip_len 6: window restarted) ->
failures (corrupt, NaN-producing, missing: C keeps running) -> ``~/load_model`` of a file replaced in place. The node
runs through test/gated_swap_node.py: a gate holds a swap's background load for as long as the test needs, so "intake
and the old model keep running during a load" is shown without depending on how fast the machine loads. Every wait
is on a condition with a generous deadline; each test identifies its frames by their stamps.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from ros_helpers import (  # noqa: E402
    NodeProcess,
    Recorder,
    RosHarness,
    image_msg,
    make_tiny_checkpoint,
    newest_diagnostic,
    predictions,
    predictions_for,
    wait_until,
)

NODE = "/repflow_recognizer"
IMAGE_TOPIC = "/swap_cam/image_raw"
DIAG_NAME = "repflow_recognizer: inference"
LABELS_A, LABELS_B, LABELS_C = ("a", "b", "c"), ("x", "y"), ("p", "q", "r", "s")
W, H = 64, 48
WAIT = 30.0


def _sha(path) -> str:
    from repflow_core.checkpoint import file_sha256

    return file_sha256(path)


def record_latched(harness: RosHarness, msg_type, topic: str) -> Recorder:
    """A transient-local subscription (depth 1): receives what a latched publisher published before it joined."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    recorder = Recorder()
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    recorder.subscription = harness.node.create_subscription(msg_type, topic, recorder, qos)
    return recorder


def _name(path) -> str:
    """The model's name as ~/model_info gives it: the card's name (save_checkpoint fills one in)."""
    from repflow_core.checkpoint import load_checkpoint

    return load_checkpoint(path).card["name"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("model_swap")


@pytest.fixture(scope="module")
def models(workdir):
    import torch

    paths = {"A": make_tiny_checkpoint(workdir / "a.pt", labels=LABELS_A),
             "B": make_tiny_checkpoint(workdir / "b.pt", labels=LABELS_B, seed=1),
             "C": make_tiny_checkpoint(workdir / "c.pt", labels=LABELS_C, clip_len=6, seed=2)}
    corrupt = workdir / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    nan = make_tiny_checkpoint(workdir / "nan.pt", labels=LABELS_B, seed=3)
    data = torch.load(nan, weights_only=True)  # finite weights (validation passes) that overflow: NaN scores
    data["state_dict"]["backbone.fc.weight"] = torch.full_like(data["state_dict"]["backbone.fc.weight"], 3e38)
    torch.save(data, nan)
    paths.update(corrupt=corrupt, nan=nan, missing=workdir / "nowhere" / "missing.pt")
    return paths


@pytest.fixture(scope="module")
def gate(workdir):
    path = workdir / "load.gate"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def node(workdir, models, gate):
    proc = NodeProcess("gated_swap_node",
                       ["-p", f"model_path:={models['A']}", "-p", "device:=cpu", "-p", "hop:=2", "-p", "smoothing:=1",
                        "-p", "warmup:=1", "-p", "image_qos:=reliable", "-p", "max_frame_gap:=0.0",
                        "-r", f"image:={IMAGE_TOPIC}"],
                       workdir / "logs", name="swap_node", env={"REPFLOW_TEST_LOAD_GATE": str(gate)})
    yield proc
    proc.stop(timeout=10)


class Driver:
    def __init__(self, harness: RosHarness):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.h = harness
        self.image_pub = harness.publisher(Image, IMAGE_TOPIC, depth=50)
        self.prediction = harness.record(String, f"{NODE}/prediction")
        self.diagnostics = harness.record(DiagnosticArray, "/diagnostics")
        self.rng = np.random.default_rng(1)

    def send(self, n: int, fps: float = 30.0) -> list[int]:
        stamps = []
        for _ in range(n):
            stamp = time.time_ns()
            self.image_pub.publish(image_msg(self.rng.integers(0, 256, (H, W, 3), dtype=np.uint8), stamp))
            stamps.append(stamp)
            time.sleep(1.0 / fps)
        return stamps

    def preds_for(self, stamps) -> list[dict]:
        return predictions_for(self.prediction, stamps)

    def wait_preds_for(self, stamps, count: int = 1) -> list[dict]:
        wait_until(lambda: len(self.preds_for(stamps)) >= count, WAIT)
        return self.preds_for(stamps)

    def diag(self, since: float = 0.0):
        return newest_diagnostic(self.diagnostics, DIAG_NAME, since)

    def settled_frames_in(self) -> int:
        """frames_in once two successive diagnostics agree (frames of earlier tests all counted)."""
        seen: list[int] = []

        def settled():
            since = time.monotonic()
            values = wait_until(lambda: self.diag(since=since), 5.0)
            if values:
                seen.append(int(values["frames_in"]))
            return len(seen) >= 2 and seen[-1] == seen[-2]
        assert wait_until(settled, WAIT, interval=0.0), seen
        return seen[-1]

    def model_info(self, timeout: float = WAIT) -> dict | None:
        """The latched ~/model_info, as a subscriber created now (a late joiner) receives it."""
        from std_msgs.msg import String

        recorder = record_latched(self.h, String, f"{NODE}/model_info")
        try:
            msgs = recorder.wait_for(lambda m: m, timeout)
            return json.loads(msgs[-1].data) if msgs else None
        finally:
            self.h.node.destroy_subscription(recorder.subscription)

    def wait_model_info(self, predicate, timeout: float = WAIT) -> dict | None:
        return wait_until(lambda: (lambda info: info if info and predicate(info) else None)(self.model_info(5.0)),
                          timeout, interval=0.0)

    def get_model_path(self) -> str:
        from rcl_interfaces.srv import GetParameters

        reply = self.h.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=["model_path"]))
        return reply.values[0].string_value

    def set_model(self, path) -> object:
        return self.h.set_parameters(NODE, {"model_path": str(path)}, timeout=WAIT)[0]


@pytest.fixture(scope="module")
def drv(node):
    harness = RosHarness("swap_test_driver")
    driver = Driver(harness)
    ready = wait_until(lambda: (driver.diag() or {}).get("state") == "active", 90.0)
    assert ready, f"node did not become active\n{node.describe()}"
    assert wait_until(lambda: driver.image_pub.get_subscription_count() >= 1, WAIT), "node never subscribed"
    assert wait_until(lambda: driver.prediction.subscription.get_publisher_count() >= 1, WAIT)
    yield driver
    harness.close()


@pytest.fixture
def alive(node, drv):
    assert node.alive(), node.describe()
    yield
    assert node.alive(), f"the node died during the test\n{node.describe()}"


def test_model_info_is_latched(drv, models, alive):
    info = drv.model_info()
    assert info is not None, "no ~/model_info for a late subscriber"
    assert info["labels"] == list(LABELS_A) and info["path"] == str(models["A"])
    assert info["sha256"] == _sha(models["A"]) and info["name"] == _name(models["A"])
    assert info["backend"] == "torch" and info["device"].startswith("cpu") and info["precision"] == "fp32"
    assert info["input_spec"]["clip_len"] == 8 and info["input_spec"]["size"] == [32, 32]
    assert info["swaps"] == 0 and "summary" in info
    stamps = drv.send(12)
    assert all(p["label"] in LABELS_A for p in drv.wait_preds_for(stamps))
    values = wait_until(lambda: drv.diag(), WAIT)
    assert values["model_id"] == f"{info['name']}@{info['sha256'][:12]}", values


def test_swap_while_frames_flow_keeps_intake_and_old_model_until_switch(drv, models, gate, alive):
    """A -> B (same input spec). While the background load is held, frames keep arriving and A keeps publishing;
    then only B's labels come out; the node counted every frame sent (reliable QoS: nothing lost to a stalled
    intake)."""
    frames_before = drv.settled_frames_in()
    gate.write_text("closed\n")
    try:
        result = drv.set_model(models["B"])  # accepted once the file is read and validated; the rest in background
        assert result.successful, result.reason
        during = drv.send(20, fps=15.0)  # reliable QoS, depth 5: only an intake stalled for 1/3 s could lose one
        preds = drv.wait_preds_for(during, count=3)
        assert len(preds) >= 3 and all(p["label"] in LABELS_A for p in preds), (preds, drv.diag())
        assert drv.model_info()["labels"] == list(LABELS_A)  # not switched while the load is held
    finally:
        gate.unlink(missing_ok=True)
    assert drv.wait_model_info(lambda info: info["labels"] == list(LABELS_B)), drv.model_info()
    after = drv.send(20, fps=15.0)
    preds = drv.wait_preds_for(after, count=3)
    assert preds and all(p["label"] in LABELS_B and len(p["topk"]) == 2 for p in preds), preds
    # Same input spec: the window was kept, so the first window after the switch needs no refill.
    assert min(p["stamp"] for p in preds) < after[7] / 1e9 - 1e-6
    sent = len(during) + len(after)
    values = wait_until(lambda: (lambda v: v if v and int(v["frames_in"]) >= frames_before + sent else None)(
        drv.diag()), WAIT)
    assert values is not None and int(values["frames_in"]) == frames_before + sent, (frames_before, sent, drv.diag())
    info = drv.model_info()
    assert info["sha256"] == _sha(models["B"]) and info["swaps"] == 1 and info["load_s"] > 0
    expected = f"{_name(models['B'])}@{info['sha256'][:12]}"
    assert wait_until(lambda: (drv.diag() or {}).get("model_id") == expected, WAIT), drv.diag()


def test_swap_to_another_input_spec_restarts_the_window(drv, models, alive):
    result = drv.set_model(models["C"])
    assert result.successful, result.reason
    assert drv.wait_model_info(lambda info: info["labels"] == list(LABELS_C)), drv.model_info()
    stamps = drv.send(16)
    preds = drv.wait_preds_for(stamps, count=2)
    assert preds and all(p["label"] in LABELS_C for p in preds), preds
    # The window restarted empty: the first window ends at the 6th frame (clip_len 6) sent after the switch.
    assert min(p["stamp"] for p in preds) >= stamps[5] / 1e9 - 1e-6
    info = drv.model_info()
    assert info["labels"] == list(LABELS_C) and info["input_spec"]["clip_len"] == 6 and info["swaps"] == 2
    since = time.monotonic()
    values = wait_until(lambda: drv.diag(since=since), WAIT)
    assert values["clip_len"] == "6"


@pytest.mark.parametrize("bad, why", [("corrupt", "model not swapped"), ("missing", "not found")])
def test_unreadable_model_is_refused_with_the_reason(drv, models, bad, why, alive):
    result = drv.set_model(models[bad])
    assert not result.successful
    assert why in result.reason and str(models[bad]) in result.reason and "model_path" in result.reason, result.reason
    assert str(models["C"]) in result.reason  # says what keeps running
    assert drv.get_model_path() == str(models["C"])
    stamps = drv.send(12)
    preds = drv.wait_preds_for(stamps, count=1)
    assert preds and all(p["label"] in LABELS_C for p in preds), preds
    info = drv.model_info()
    assert info["sha256"] == _sha(models["C"]) and info["swaps"] == 2


def test_model_failing_its_self_test_keeps_the_old_one_and_reverts_model_path(drv, models, node, alive):
    """Weights that load but give NaN fail in the background part: model_path goes back to the running model and the
    log says why."""
    result = drv.set_model(models["nan"])
    assert result.successful, result.reason  # the file itself is a valid checkpoint
    assert wait_until(lambda: drv.get_model_path() == str(models["C"]), WAIT), drv.get_model_path()
    assert wait_until(lambda: "not finite" in node.output() and "model not swapped" in node.output(), WAIT)
    stamps = drv.send(12)
    preds = drv.wait_preds_for(stamps, count=1)
    assert preds and all(p["label"] in LABELS_C for p in preds), preds
    info = drv.model_info()
    assert info["sha256"] == _sha(models["C"]) and info["swaps"] == 2


def test_load_model_service_reloads_a_file_replaced_in_place(drv, models, workdir, alive):
    from std_srvs.srv import Trigger

    inplace = workdir / "inplace.pt"
    inplace.write_bytes(models["B"].read_bytes())
    result = drv.set_model(inplace)
    assert result.successful, result.reason
    assert drv.wait_model_info(lambda info: info["path"] == str(inplace)), drv.model_info()
    # One answered round trip first, on the still-valid file (a reload of the same model): the first reply to a new
    # client can be lost with Fast DDS (see RosHarness.call), and the calls below must each be sent exactly once.
    # Until a reload succeeds: a reply "another model is being loaded" means an unanswered one is still running.
    deadline = time.monotonic() + WAIT
    while True:
        try:
            if drv.h.call(Trigger, f"{NODE}/load_model", Trigger.Request(), timeout=5.0).success:
                break
        except TimeoutError:
            pass
        assert time.monotonic() < deadline, "~/load_model never answered with a successful reload"
    assert drv.wait_model_info(lambda info: info["path"] == str(inplace)), drv.model_info()
    inplace.write_bytes(models["corrupt"].read_bytes())  # a broken file appears at the same path
    reply = drv.h.call(Trigger, f"{NODE}/load_model", Trigger.Request(), timeout=WAIT)
    assert not reply.success and str(inplace) in reply.message and "model not swapped" in reply.message, reply
    tmp = workdir / "inplace.tmp"
    tmp.write_bytes(models["nan"].read_bytes())
    tmp.replace(inplace)  # a valid file whose weights give NaN: refused by the self-test, reply says so
    reply = drv.h.call(Trigger, f"{NODE}/load_model", Trigger.Request(), timeout=WAIT)
    assert not reply.success and "not finite" in reply.message and "still running" in reply.message, reply
    stamps = drv.send(12)
    assert all(p["label"] in LABELS_B for p in drv.wait_preds_for(stamps))
    tmp.write_bytes(models["A"].read_bytes())
    tmp.replace(inplace)  # retrained in place (atomically)
    reply = drv.h.call(Trigger, f"{NODE}/load_model", Trigger.Request(), timeout=WAIT)
    assert reply.success and "swapped in" in reply.message, reply.message
    assert "frame window kept" in reply.message  # B and A have the same input spec
    stamps = drv.send(14)
    preds = drv.wait_preds_for(stamps)
    assert preds and all(p["label"] in LABELS_A for p in preds), preds
    info = drv.model_info()
    assert info["sha256"] == _sha(models["A"]) and info["path"] == str(inplace)


def test_load_model_keeps_intake_running_and_the_new_model_logs_to_the_node(drv, node, gate, alive):
    """``~/load_model`` is a coroutine on the single executor thread: while its load is held, intake and the old model
    keep going (every frame counted, predictions published). The model it installs reports its one-time warnings
    (frames smaller than its input) through the node's ROS logger, as the first model does."""
    import threading

    from std_srvs.srv import Trigger

    frames_before = drv.settled_frames_in()
    replies: list = []
    gate.write_text("closed\n")
    try:
        caller = threading.Thread(target=lambda: replies.append(
            drv.h.call(Trigger, f"{NODE}/load_model", Trigger.Request(), timeout=4 * WAIT)), daemon=True)
        caller.start()
        during = drv.send(20, fps=15.0)
        preds = drv.wait_preds_for(during, count=3)
        assert len(preds) >= 3 and all(p["label"] in LABELS_A for p in preds), (preds, drv.diag())
        assert not replies, "~/load_model answered while its load was held"
    finally:
        gate.unlink(missing_ok=True)
    caller.join(timeout=4 * WAIT)
    assert replies and replies[0].success and "swapped in" in replies[0].message, replies
    values = wait_until(lambda: (lambda v: v if v and int(v["frames_in"]) >= frames_before + 20 else None)(
        drv.diag()), WAIT)
    assert values is not None and int(values["frames_in"]) == frames_before + 20, (frames_before, drv.diag())
    rng = np.random.default_rng(5)
    for _ in range(4):  # 16x16 < the model's 32 px input: upscaled, with one warning from the new recognizer
        drv.image_pub.publish(image_msg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), time.time_ns()))
    pattern = "[repflow_recognizer]: frames of 16x16 are smaller than the model's input"
    assert wait_until(lambda: pattern in node.output(), WAIT), node.describe()


# ---------------------------------------------------------------------------------------------------------------------
# backend:=onnxruntime on an exported .onnx model


def test_onnxruntime_backend_runs_an_onnx_model(workdir, models, drv):
    pytest.importorskip("onnxruntime")
    from repflow_core.export import export_checkpoint

    exported = export_checkpoint(models["A"], workdir / "a.onnx", "onnx")
    proc = NodeProcess("repflow_ros.recognizer_node",
                       ["-p", f"model_path:={exported}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
                        "-p", "warmup:=0", "-p", "hop:=2", "-p", "image_qos:=reliable", "-r", "__ns:=/ort",
                        "-r", f"image:={IMAGE_TOPIC}"],
                       workdir / "logs", name="onnx_node")
    try:
        from std_msgs.msg import String

        recorder = drv.h.record(String, "/ort/repflow_recognizer/prediction")
        info_rec = record_latched(drv.h, String, "/ort/repflow_recognizer/model_info")
        msgs = info_rec.wait_for(lambda m: m, 90.0)
        assert msgs, f"no model_info from the onnxruntime node\n{proc.describe()}"
        info = json.loads(msgs[-1].data)
        assert info["backend"] == "onnxruntime" and info["labels"] == list(LABELS_A)
        assert info["sha256"] == _sha(exported) and info["path"] == str(exported)
        assert wait_until(lambda: recorder.subscription.get_publisher_count() >= 1, WAIT)

        def labelled():
            stamps = drv.send(10)
            got = wait_until(lambda: [p for p in predictions(recorder.messages())
                                      if np.min(np.abs(np.asarray(stamps) / 1e9 - p["stamp"])) < 2e-6], 10.0)
            return got
        preds = wait_until(labelled, WAIT, interval=0.0)
        assert preds and all(p["label"] in LABELS_A for p in preds), proc.describe()
        assert proc.alive(), proc.describe()
    finally:
        proc.stop(timeout=10)
