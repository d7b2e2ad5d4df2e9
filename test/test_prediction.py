"""The recognizer node's ROS-free parts: smoothing / threshold / top-k / the prediction record, the
vision_msgs/Classification filling, the counters and diagnostics status, and the parameter table's checks.

No rclpy here: these run anywhere (the node process itself is tested in test_recognizer_node.py).
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from repflow_ros.node_diagnostics import NodeStats, diagnostic_status
from repflow_ros.node_parameters import PARAMETER_SPECS, check_parameters, format_parameter_help, params_file_problem
from repflow_ros.prediction import UNKNOWN_LABEL, Predictor, fill_classification, rank

LABELS = ["a", "b", "c"]


def _predictor(**kwargs) -> Predictor:
    return Predictor(lambda probs, k: rank(probs, LABELS, k), **kwargs)


def _classification():
    """A stand-in with the fields of vision_msgs/msg/Classification (vision_msgs is not installable here)."""
    stamp = types.SimpleNamespace(sec=0, nanosec=0)
    return types.SimpleNamespace(header=types.SimpleNamespace(stamp=stamp, frame_id=""), results=[])


def _hypothesis(class_id="", score=0.0):
    return types.SimpleNamespace(class_id=class_id, score=score)


def test_smoothing_threshold_and_classification():
    """Moved from the in-process node test: same inputs, same assertions, now without rclpy."""
    predictor = _predictor(smoothing=2, score_threshold=0.0, top_k=2)
    stamp = 1_700_000_000_123_456_789
    first = predictor.update(np.array([0.6, 0.3, 0.1]), epoch=0, window_seq=1, stamp_ns=stamp, frame_id="cam",
                             now_ns=stamp)
    second = predictor.update(np.array([0.0, 0.8, 0.2]), epoch=0, window_seq=2, stamp_ns=stamp + 1,
                              frame_id="cam", now_ns=stamp + 1)
    first, second_json = json.loads(first.to_json()), json.loads(second.to_json())
    assert first["label"] == "a" and second_json["label"] == "b"  # mean of the two: [0.3, 0.55, 0.15]
    assert second_json["score"] == pytest.approx(0.55) and len(second_json["topk"]) == 2
    assert second_json["window_seq"] == 2 and second_json["frame_id"] == "cam"
    assert set(second_json) == {"label", "score", "stamp", "frame_id", "topk", "latency_ms", "window_seq"}
    actions = fill_classification(_classification(), _hypothesis, second)
    assert (actions.header.stamp.sec, actions.header.stamp.nanosec) == (1_700_000_000, 123_456_790)
    assert actions.header.frame_id == "cam"
    assert [(h.class_id, round(h.score, 6)) for h in actions.results] == [("b", 0.55), ("a", 0.3)]
    # A new epoch (the frame window was reset) restarts the smoothing history.
    third = predictor.update(np.array([0.1, 0.1, 0.8]), epoch=1, window_seq=3, stamp_ns=stamp + 2,
                             frame_id="cam", now_ns=stamp + 2)
    assert third.score == pytest.approx(0.8) and third.label == "c"
    # Below the threshold: "unknown" as the label, the real top-1 score kept.
    predictor.set("score_threshold", 0.9)
    fourth = predictor.update(np.array([0.1, 0.1, 0.8]), epoch=1, window_seq=4, stamp_ns=stamp + 3,
                              frame_id="cam", now_ns=stamp + 3)
    assert fourth.label == UNKNOWN_LABEL == "unknown"
    assert json.loads(fourth.to_json())["score"] == pytest.approx(0.8)
    assert [p.label for p in (second, third)] == ["b", "c"]


def test_runtime_settings_and_latency():
    predictor = _predictor(smoothing=3, top_k=5)
    for i, probs in enumerate(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0])):
        last = predictor.update(np.array(probs), 0, i + 1, 1_000_000_000, "cam", 1_250_000_000)
    assert last.label == "b" and last.score == pytest.approx(2 / 3)
    assert len(last.topk) == 3  # top_k 5 capped at the number of classes
    assert last.latency_ms == pytest.approx(250.0)
    predictor.set("smoothing", 1)  # keeps the newest entry only
    assert predictor.smoothing == 1
    last = predictor.update(np.array([0.0, 0.0, 1.0]), 0, 4, 1, "cam", 1)
    assert last.label == "c" and last.score == pytest.approx(1.0)
    predictor.set("top_k", 1)
    assert len(predictor.update(np.array([0.2, 0.5, 0.3]), 0, 5, 1, "cam", 1).topk) == 1
    predictor.clear()
    after_clear = predictor.update(np.array([0.9, 0.05, 0.05]), 0, 6, 1, "cam", 1)
    assert after_clear.score == pytest.approx(0.9)
    with pytest.raises(KeyError):
        predictor.set("hop", 2)


def test_node_stats_and_diagnostic_status():
    stats = NodeStats(("truncated", "other"))
    assert stats.drop("truncated") == ("truncated", True)
    assert stats.drop("truncated") == ("truncated", False)
    assert stats.drop("no_such_cause") == ("other", True)
    for _ in range(3):
        stats.count("frames_in")
    stats.inferred(10.0, 40.0)
    stats.inferred(20.0, 60.0)
    info = {"device": "cpu (1 threads)", "image_topic": "/cam", "hop": "2"}
    warn, message, kv = diagnostic_status(stats.snapshot(), {"windows_skipped_busy": 4, "resets": {"frame_gap": 1}},
                                          ("frame_gap", "size_change"), info, "active", True)
    assert warn and "dropping frames (truncated, other)" in message
    assert kv["frames_in"] == "3" and kv["frames_dropped_truncated"] == "2" and kv["frames_dropped_other"] == "1"
    assert kv["windows_inferred"] == "2" and kv["windows_skipped_busy"] == "4"
    assert kv["window_resets_frame_gap"] == "1" and kv["window_resets_size_change"] == "0"
    assert float(kv["inference_ms_mean"]) == pytest.approx(15.0) and kv["hop"] == "2" and kv["state"] == "active"
    # Next period: nothing new dropped, no frames while active -> "no images"; paused -> no complaint.
    warn, message, _ = diagnostic_status(stats.snapshot(), None, (), info, "active", True)
    assert warn and message == "no images on /cam"
    warn, message, kv = diagnostic_status(stats.snapshot(), None, (), info, "paused", False)
    assert not warn and message.startswith("paused") and kv["windows_skipped_busy"] == "0"


def test_check_parameters_names_the_culprit():
    values = {name: spec.default for name, spec in PARAMETER_SPECS.items()}
    cfg = check_parameters(dict(values, device=" CUDA:1 ", score_threshold=1))
    assert cfg["device"] == "cuda:1" and cfg["score_threshold"] == 1.0 and isinstance(cfg["score_threshold"], float)
    with pytest.raises(ValueError, match=r"parameter hop=0 is invalid: out of range"):
        check_parameters(dict(values, hop=0))
    with pytest.raises(ValueError, match=r"parameter image_qos='fast'.*sensor_data"):
        check_parameters(dict(values, image_qos="fast"))
    with pytest.raises(ValueError, match=r"parameter device='gpu'"):
        check_parameters(dict(values, device="gpu"))


def test_params_file_problem(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("/**:\n  ros__parameters:\n    hop: 2\n")
    assert params_file_problem(["prog", "--ros-args", "--params-file", str(good)]) is None
    assert params_file_problem(["prog", "--params-file", "not/ros/args.yaml"]) is None  # not a ROS argument
    missing = str(tmp_path / "typo.yaml")
    assert "does not exist" in params_file_problem(["prog", "--ros-args", "-p", "a:=1", "--params-file", missing])
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**: [\n")
    assert "cannot be read" in params_file_problem(["prog", "--ros-args", "--params-file", str(broken)])
    assert "needs a file name" in params_file_problem(["prog", "--ros-args", "--params-file"])


def test_help_text_lists_every_parameter():
    text = format_parameter_help("prog", "repflow_recognizer")
    for name, spec in PARAMETER_SPECS.items():
        assert f"  {name} ({spec.type.__name__}, default {spec.default!r}" in text


def test_debug_overlay_enlarges_small_frames_and_keeps_the_input():
    from repflow_ros.prediction import Prediction, debug_overlay

    frame = np.zeros((48, 64, 3), np.uint8)
    pred = Prediction("wave", 0.87, 1, "cam", (("wave", 0.87),), 1.0, 1)
    out = debug_overlay(frame, pred)
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8 and out.any()
    assert not frame.any()  # the window's frame is not drawn on
    big = np.zeros((480, 640, 3), np.uint8)
    assert debug_overlay(big, pred).shape == big.shape and not big.any()
