"""The recorder node over real rclpy/DDS: synthetic camera -> recorder process -> clips the folders layout reads.

One recorder process serves the tests of the module (start-up costs seconds on a shared CPU); the kill test starts its
own. Every wait is on a condition (a service answer, an event, a file) with a generous deadline.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from recorder_helpers import (
    FRAME_SIZE,
    PERIOD_NS,
    FramePublisher,
    hidden_temps,
    poll,
    start_recorder,
    wait_event,
    wait_ready,
)
from ros_helpers import REPO_ROOT, Recorder, RosHarness

from repflow_core.data.layouts import load_csv, scan_class_folders
from repflow_core.data.video_io import read_video

pytest.importorskip("rclpy")

NODE = "/repflow_recorder"


def _events_subscription(harness: RosHarness) -> Recorder:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    recorder = Recorder()
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    recorder.subscription = harness.node.create_subscription(String, f"{NODE}/events", recorder, qos)
    return recorder


def _record(calls, events: Recorder, label: str, seconds: float) -> dict:
    results = calls.set_parameters({"label": label, "seconds": seconds})
    assert all(r.successful for r in results), [r.reason for r in results]
    reply = calls.start()
    assert reply.success, reply.message
    clip = int(re.search(r"recording clip (\d+)", reply.message).group(1))
    event = wait_event(events, "written", timeout=60.0, clip=clip)
    assert event is not None, [m.data for m in events.messages()]
    return event


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("recorded")
    logs = tmp_path_factory.mktemp("logs")
    harness = RosHarness("recorder_test_driver")
    camera = FramePublisher(harness)
    proc = start_recorder(root, logs)
    try:
        calls = wait_ready(harness, proc)
        events = _events_subscription(harness)
        yield harness, calls, proc, events, root
    finally:
        code = proc.stop(timeout=15.0)
        camera.close()
        harness.close()
        assert code == 0, proc.describe()


def test_clips_are_read_by_the_folders_layout_with_their_labels(rig):
    _harness, calls, _proc, events, root = rig
    written = {label: _record(calls, events, label, 0.5) for label in ("wave", "clap")}
    samples, classes = scan_class_folders(root)
    assert classes == ["clap", "wave"]
    by_path = {s.path.resolve(): classes[s.label] for s in samples}
    expected_frames = -(-500_000_000 // PERIOD_NS)  # stamps k * PERIOD_NS < 0.5 s: 16 at 33.333333 ms
    for label, event in written.items():
        path = Path(event["path"]).resolve()
        assert by_path[path] == label
        video = read_video(path)
        assert video.shape[1:3] == FRAME_SIZE  # the camera's native size, not resized
        assert video.shape[0] == event["frames"]
        # frames in [first, first + 0.5 s); none beyond, and most of them arrive even on a loaded machine
        assert expected_frames // 2 <= event["frames"] <= expected_frames
        span_ns = event["last_stamp_ns"] - event["first_stamp_ns"]
        assert span_ns < 0.5e9
        assert span_ns % PERIOD_NS == 0  # whole camera periods: the stamps are the camera's, untouched
        assert path.name.startswith(f"{label}_") and path.suffix == ".avi"
    rows = list(csv.DictReader(open(root / "index.csv", encoding="utf-8")))
    assert [r["label"] for r in rows] == ["wave", "clap"]
    for row, event in zip(rows, written.values()):
        assert (root / row["path"]).resolve() == Path(event["path"]).resolve()
        assert int(row["frames"]) == event["frames"]
        assert row["frame_id"] == "rec_cam"
        assert row["first_stamp"] == f"{event['first_stamp_ns'] // 10**9}.{event['first_stamp_ns'] % 10**9:09d}"
        assert row["last_stamp"] == f"{event['last_stamp_ns'] // 10**9}.{event['last_stamp_ns'] % 10**9:09d}"
        assert (int(row["height"]), int(row["width"])) == FRAME_SIZE
    csv_samples, csv_classes = load_csv(root / "index.csv", root)  # the index is also a csv-layout list
    assert csv_classes == ["clap", "wave"] and len(csv_samples) == 2
    assert hidden_temps(root) == []


@pytest.mark.parametrize("label", ["../x", "/", "train", ".hidden", "a/b"])
def test_hostile_label_refused_with_a_reason(rig, label):
    harness, calls, _proc, events, root = rig
    results = calls.set_parameters({"label": label})
    assert not results[0].successful
    assert "label" in results[0].reason
    from std_msgs.msg import String

    pub = harness.publisher(String, f"{NODE}/record")
    assert poll(lambda: pub.get_subscription_count() > 0)
    request = json.dumps({"label": label, "seconds": 0.2})
    pub.publish(String(data=request))
    refused = wait_event(events, "refused", timeout=30.0, request=request)
    assert refused is not None and "label" in refused["reason"]
    harness.node.destroy_publisher(pub)
    assert not (root.parent / "x").exists() and not (root / "train").exists()


def test_empty_label_refused_by_start(rig):
    _harness, calls, _proc, _events, _root = rig
    assert all(r.successful for r in calls.set_parameters({"label": ""}))
    reply = calls.start()
    assert not reply.success and "no label" in reply.message


def test_max_bytes_refuses_and_discards(rig):
    harness, calls, _proc, events, root = rig
    before = sorted(p.name for p in root.rglob("*.avi"))
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    # the folder already holds `used` bytes: with that as the limit, nothing more may start
    assert all(r.successful for r in calls.set_parameters({"label": "wave", "seconds": 5.0,
                                                                   "max_bytes": used}))
    reply = calls.start()
    assert not reply.success and "max_bytes" in reply.message
    # room for a fraction of a clip: it starts, then is discarded when the file would pass the limit
    assert all(r.successful for r in calls.set_parameters({"max_bytes": used + 4000}))
    reply = calls.start()
    assert reply.success, reply.message
    clip = int(re.search(r"recording clip (\d+)", reply.message).group(1))
    aborted = wait_event(events, "aborted", timeout=60.0, clip=clip)
    assert aborted is not None and "max_bytes" in aborted["reason"]
    assert sorted(p.name for p in root.rglob("*.avi")) == before
    assert hidden_temps(root) == []
    assert all(r.successful for r in calls.set_parameters({"max_bytes": 0}))


def test_min_free_bytes_refuses(rig):
    _harness, calls, _proc, _events, _root = rig
    assert all(r.successful for r in calls.set_parameters({"label": "wave", "min_free_bytes": 2 ** 62},
                                                            timeout=30.0))
    reply = calls.start()
    assert not reply.success and "free disk space" in reply.message
    assert all(r.successful for r in calls.set_parameters({"min_free_bytes": 0}))


def test_read_only_parameter_refused_at_run_time(rig):
    _harness, calls, *_ = rig
    result = calls.set_parameters({"dataset_dir": "/tmp/elsewhere"})[0]
    assert not result.successful and "read-only" in result.reason


def test_killed_recorder_leaves_no_readable_half_clip(tmp_path):
    root, logs = tmp_path / "data", tmp_path / "logs"
    harness = RosHarness("recorder_kill_driver")
    camera = FramePublisher(harness, topic="/rec_kill/image")
    proc = start_recorder(root, logs, name="victim", node_name="rec_kill", topic="/rec_kill/image")
    try:
        calls = wait_ready(harness, proc, node="/rec_kill")
        assert all(r.successful for r in calls.set_parameters({"label": "wave", "seconds": 60.0},
                                                                timeout=30.0))
        reply = calls.start()
        assert reply.success, reply.message
        # mid-clip: the temporary file exists and has frames in it
        assert poll(lambda: any(p.stat().st_size > 2000 for p in hidden_temps(root)), timeout=60.0), proc.describe()
        proc.stop(timeout=5.0, sig=signal.SIGKILL)
        temps = hidden_temps(root)
        assert temps, "the killed recorder's temporary clip should still be there"
        assert not list(root.rglob("*.avi")) or all(p.name.startswith(".") for p in root.rglob("*.avi"))
        with pytest.raises(Exception, match="empty class|no class folders"):
            scan_class_folders(root)  # the loader sees no clip at all
        # the next recorder on the folder removes the stale temporary
        proc2 = start_recorder(root, logs, name="successor", node_name="rec_kill", topic="/rec_kill/image")
        try:
            wait_ready(harness, proc2, node="/rec_kill")
            assert poll(lambda: not hidden_temps(root))
            assert poll(lambda: "killed" in proc2.output()), proc2.describe()
        finally:
            assert proc2.stop(timeout=15.0) == 0, proc2.describe()
    finally:
        if proc.alive():
            proc.stop(timeout=5.0, sig=signal.SIGKILL)
        camera.close()
        harness.close()


def test_sigint_while_recording_discards_the_clip_and_exits_0(tmp_path):
    root, logs = tmp_path / "data", tmp_path / "logs"
    harness = RosHarness("recorder_sigint_driver")
    camera = FramePublisher(harness, topic="/rec_int/image")
    # seconds:=60 arrives as an integer: the node takes it for the float parameter
    proc = start_recorder(root, logs, name="interrupted", extra=("seconds:=60",), node_name="rec_int",
                          topic="/rec_int/image")
    try:
        calls = wait_ready(harness, proc, node="/rec_int")
        assert all(r.successful for r in calls.set_parameters({"label": "wave"}))
        reply = calls.start()
        assert reply.success, reply.message
        assert poll(lambda: bool(hidden_temps(root)), timeout=60.0), proc.describe()
        assert proc.stop(timeout=15.0, sig=signal.SIGTERM) == 0, proc.describe()
        assert proc.stop_seconds < 10.0
        assert hidden_temps(root) == [] and not list(root.rglob("*.avi"))
    finally:
        if proc.alive():
            proc.stop(timeout=5.0, sig=signal.SIGKILL)
        camera.close()
        harness.close()


def test_help_lists_parameters_without_joining_the_graph():
    out = subprocess.run([sys.executable, "-m", "repflow_ros.recorder_node", "--help"], cwd=str(REPO_ROOT),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from repflow_ros.recorder_params import RECORDER_PARAMETERS

    for name in RECORDER_PARAMETERS:
        assert f"  {name} (" in out.stdout
    assert "~/start" in out.stdout and "~/record" in out.stdout


def test_record_yaml_lists_every_parameter_at_its_default():
    import yaml

    from repflow_ros.recorder_params import RECORDER_PARAMETERS

    values = yaml.safe_load((REPO_ROOT / "config" / "record.yaml").read_text())["/**"]["ros__parameters"]
    assert set(values) == set(RECORDER_PARAMETERS)
    for name, value in values.items():
        assert value == RECORDER_PARAMETERS[name].default, name


def test_record_request_parsing():
    from repflow_ros.recorder_params import parse_record_request

    assert parse_record_request('{"label": "wave", "seconds": 2}') == ("wave", 2.0)
    assert parse_record_request("clap 1.5") == ("clap", 1.5)
    assert parse_record_request("clap") == ("clap", 3.0)
    for bad, why in (("../x 2", "path separator"), ("wave -1", "out of range"), ('{"seconds": 2}', "label"),
                     ("{bad json", "JSON"), ("", "LABEL"), ("test 2", "reserved")):
        with pytest.raises(ValueError, match=why):
            parse_record_request(bad)
