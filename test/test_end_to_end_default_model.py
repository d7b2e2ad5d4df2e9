"""End to end over real DDS with the packaged default model: known synthetic actions in, the right labels out.

A test process publishes rendered action clips at 30 fps as sensor_msgs/Image; the recognizer node runs in
its own process with the shipped checkpoint. Every prediction must name the newest frame of its window by
stamp, agree with the offline Recognizer on that exact window, and (for these clearly moving actions) be the
true action for most windows.
"""

import time

import numpy as np
import pytest
from ros_helpers import NodeProcess, RosHarness, diagnostic_values, image_msg, predictions, wait_until

from repflow_core.data.synthetic import render_clip
from repflow_core.recognizer import Recognizer, default_checkpoint

CLIPS = [("walk_left", 101), ("walk_right", 101)]  # (action, seed): held-out renders, not training clips
FRAMES = 40
FPS = 30.0
HOP = 4


@pytest.fixture(scope="module")
def offline():
    return Recognizer.from_checkpoint(default_checkpoint(), device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    logs = tmp_path_factory.mktemp("e2e")
    node = NodeProcess("repflow_ros.recognizer_node",
                       ["-p", "device:=cpu", "-p", "smoothing:=1", "-p", f"hop:={HOP}",
                        "-r", "image:=/e2e/image_raw"], logs, name="recognizer")
    ros = RosHarness("e2e_driver")
    try:
        labels = ros.record(String, "/action_label")
        preds = ros.record(String, "/repflow_recognizer/prediction")
        diags = ros.record(DiagnosticArray, "/diagnostics")
        pub = ros.publisher(Image, "/e2e/image_raw", depth=100)
        wait_until(lambda: pub.get_subscription_count() > 0 or not node.alive(), timeout=60)
        assert node.alive(), node.describe()
        # The node subscribes only once activated (model loaded and warmed up).
        published = {}
        last_end = 15 + (FRAMES - 1 - 15) // HOP * HOP  # the last window of a clip ends at this frame (clip_len 16)
        for action, seed in CLIPS:
            clip = render_clip(action, FRAMES, size=(128, 128), seed=seed, generation=1)
            base = time.time_ns()
            for i, frame in enumerate(clip):
                stamp = base + int(i * 1e9 / FPS)
                published[stamp] = (action, seed, i)
                pub.publish(image_msg(frame, stamp, frame_id="e2e_cam"))
                time.sleep(1.0 / FPS)  # a 30 fps camera (pacing, not synchronisation)
            # Wait (a condition, not a fixed time) for the clip's last window, so no window is still pending when
            # the next clip resets the frame window; then make the stamp gap exceed max_frame_gap (0.5 s), so
            # windows never straddle clips.
            last_stamp = base + int(last_end * 1e9 / FPS)
            wait_until(lambda s=last_stamp: any(abs(p["stamp"] * 1e9 - s) < 1000
                                                for p in predictions(preds.messages())), timeout=60)
            wait_until(lambda s=stamp: time.time_ns() > s + 1_500_000_000, timeout=5)
        total = FRAMES * len(CLIPS)
        wait_until(lambda: diags.count() >= 2 and any(
            v and int(v["frames_in"]) >= total
            for v in (diagnostic_values(m, "repflow_recognizer: inference") for m in diags.messages())), timeout=30)
        yield {"labels": labels, "preds": preds, "diags": diags, "published": published, "node": node}
    finally:
        ros.close()
        node.stop()


def test_predictions_arrive_for_each_clip_and_name_the_newest_frame(run):
    preds = predictions(run["preds"].messages())
    assert preds, run["node"].describe()
    stamps = [round(p["stamp"] * 1e9) for p in preds]
    matched = [min(run["published"], key=lambda s: abs(s - st)) for st in stamps]
    assert all(abs(m - s) < 1000 for m, s in zip(matched, stamps)), "prediction stamps are not frame stamps"
    actions = {run["published"][m][0] for m in matched}
    assert actions == {a for a, _ in CLIPS}
    assert all(run["published"][m][2] >= 15 for m in matched), "a window ended before 16 frames had arrived"


def test_labels_agree_with_the_offline_recognizer_on_the_same_window(run, offline):
    preds = predictions(run["preds"].messages())
    renders = {(a, s): [offline.preprocess(f) for f in render_clip(a, FRAMES, size=(128, 128), seed=s, generation=1)]
               for a, s in CLIPS}
    checked = 0
    for p in preds:
        stamp = min(run["published"], key=lambda s: abs(s - round(p["stamp"] * 1e9)))
        action, seed, end = run["published"][stamp]
        window = np.stack(renders[(action, seed)][end - 15 : end + 1])
        probs = offline.predict(window)
        assert p["label"] == offline.labels[int(np.argmax(probs))]
        assert p["score"] == pytest.approx(float(probs.max()), abs=1e-3)
        checked += 1
    assert checked >= 4


def test_most_windows_get_the_true_action_on_action_label(run):
    preds = predictions(run["preds"].messages())
    truth = [run["published"][min(run["published"], key=lambda s: abs(s - round(p["stamp"] * 1e9)))][0]
             for p in preds]
    correct = sum(p["label"] == t for p, t in zip(preds, truth))
    assert correct >= 0.8 * len(preds), list(zip([p["label"] for p in preds], truth))
    # With smoothing 1 and no threshold, /action_label carries exactly each window's top-1.
    assert [m.data for m in run["labels"].messages()] == [p["label"] for p in preds]


def test_diagnostics_report_the_stream(run):
    from ros_helpers import diagnostic_values

    values = [diagnostic_values(m, "repflow_recognizer: inference") for m in run["diags"].messages()]
    values = [v for v in values if v]
    assert values
    last = values[-1]
    assert int(last["frames_in"]) == FRAMES * len(CLIPS)
    assert int(last["window_resets_frame_gap"]) >= 1  # the pause between the two clips
    assert "cpu" in last["device"]
