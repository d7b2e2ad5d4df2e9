"""Issue 10 part 2: `python -m repflow_core.evaluate --checkpoint CKPT --bag BAG --topic TOPIC --spans SPANS.csv`
replays a real bag (written with rosbags) through the Recognizer window by window as the node does, and writes
a timeline CSV, a PNG strip and per-span accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from bag_helpers import colour_frames, write_bag

from repflow_core.bag_replay import NODE_DEFAULT_HOP, replay_bag
from repflow_core.data.rosbag import Span
from repflow_core.data.synthetic import render_clip
from repflow_core.evaluate import main as evaluate_main
from repflow_core.recognizer import default_checkpoint
from repflow_ros.frame_window import FrameWindow

ACTIONS = ["idle", "wave", "walk_left", "fall"]
FPS = 30.0
CLIP_FRAMES = 40


def test_node_defaults_duplicated_in_core_match_the_node():
    import yaml

    from repflow_core.bag_replay import NODE_DEFAULT_MAX_FRAME_GAP
    from repflow_ros.node_parameters import PARAMETER_SPECS

    assert PARAMETER_SPECS["hop"].default == NODE_DEFAULT_HOP
    assert PARAMETER_SPECS["max_frame_gap"].default == NODE_DEFAULT_MAX_FRAME_GAP
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "recognize.yaml").read_text())
    assert cfg["/**"]["ros__parameters"]["hop"] == NODE_DEFAULT_HOP


def _actions_bag(tmp_path: Path) -> tuple[Path, Path]:
    frames, rows = [], ["label,start,end"]
    for i, action in enumerate(ACTIONS):
        frames += list(render_clip(action, CLIP_FRAMES, (128, 128), seed=100 + i, generation=1))
        rows.append(f"{action},{i * CLIP_FRAMES / FPS:.6f},{((i + 1) * CLIP_FRAMES - 1) / FPS:.6f}")
    bag = write_bag(tmp_path / "robot", "mcap", "/camera/image_raw", frames, [k / FPS for k in range(len(frames))],
                    encoding="jpeg")
    spans = tmp_path / "spans.csv"
    spans.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return bag, spans


def test_replay_with_the_packaged_model_scores_each_span_well_above_chance(tmp_path, capsys):
    bag, spans = _actions_bag(tmp_path)
    out = tmp_path / "replay"
    rc = evaluate_main(["--checkpoint", str(default_checkpoint()), "--bag", str(bag), "--topic", "/camera/image_raw",
                        "--spans", str(spans), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    n = len(ACTIONS) * CLIP_FRAMES
    assert f"{n} messages" in printed and f"{n} decoded" in printed

    rows = list(csv.DictReader(open(out / "timeline.csv", encoding="utf-8")))
    assert len(rows) == (n - 16) // NODE_DEFAULT_HOP + 1  # clip_len 16, one window every hop frames
    assert list(rows[0]) == ["time", "window_start", "stamp", "label", "score", "topk", "truth"]
    assert float(rows[0]["time"]) == pytest.approx(15 / FPS, abs=1e-3)
    assert float(rows[1]["time"]) - float(rows[0]["time"]) == pytest.approx(NODE_DEFAULT_HOP / FPS, abs=1e-3)
    assert all(len(r["topk"].split()) == 5 and 0 < float(r["score"]) <= 1 for r in rows)
    assert {r["truth"] for r in rows} == set(ACTIONS) | {""}  # "" = straddles two spans

    summary = json.loads((out / "replay.json").read_text())
    per_span = {s["label"]: s for s in summary["per_span"]}
    assert list(per_span) == ACTIONS
    assert all(s["windows"] >= 5 for s in per_span.values())
    chance = 1 / 10
    assert summary["mean_span_accuracy"] >= 0.6 > 5 * chance, per_span
    assert sum(s["accuracy"] >= 0.5 for s in per_span.values()) >= 3, per_span
    # the per-span table agrees with the timeline's clean windows
    for label, s in per_span.items():
        clean = [r for r in rows if r["truth"] == label]
        assert len(clean) == s["windows"]
        assert sum(r["label"] == label for r in clean) == s["correct"]

    img = cv2.imread(str(out / "timeline.png"))
    assert img is not None and img.shape[0] >= 300 and img.shape[1] >= 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


class ColourRecognizer:
    """A stand-in with the Recognizer's replay interface: labels frames by their dominant channel, so the
    windowing and per-span bookkeeping are checked exactly, without a model."""

    labels = ["red", "green", "blue"]

    def __init__(self, clip_len: int, frame_stride: int):
        self.clip_len, self.frame_stride = clip_len, frame_stride
        self.windows: list[np.ndarray] = []

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return rgb[:, 16:]  # right of the white quarter

    def predict(self, frames: np.ndarray) -> np.ndarray:
        assert frames.shape[0] == self.clip_len
        self.windows.append(frames)
        means = frames.reshape(-1, 3).mean(0)
        return np.exp(means / 20) / np.exp(means / 20).sum()


@pytest.mark.parametrize("clip_len,stride,hop", [(4, 1, 4), (3, 2, 3), (5, 1, 1)])
def test_windows_are_the_nodes_frame_window_windows(tmp_path, clip_len, stride, hop):
    colours = [(220, 30, 30), (30, 200, 40), (30, 40, 220)]
    frames = colour_frames(colours, 12)
    times = [k / 10 for k in range(36)]
    times = times[:20] + [t + 1.0 for t in times[20:]]  # a 1.1 s gap after frame 19: the node restarts its window
    bag = write_bag(tmp_path / "colours", "sqlite3", "/cam", frames, times, encoding="rgb8", pad=3)
    rec = ColourRecognizer(clip_len, stride)
    spans = [Span("red", 0.0, 1.15, 0), Span("green", 1.2, 3.35, 1), Span("blue", 3.4, 4.6, 2)]
    result = replay_bag(rec, bag, "/cam", hop=hop, max_frame_gap=0.5, spans=spans)

    node = FrameWindow(clip_len, stride, hop=hop, max_frame_gap=0.5)
    expected = []
    for f, t in zip(frames, times):
        if node.push(f, t).window_ready:
            expected.append(node.take_ready(timeout=0).stamp)
    assert [round(w.time, 6) for w in result.windows] == [round(t, 6) for t in expected]
    assert dict(result.resets) == {"frame_gap": 1}
    span = (clip_len - 1) * stride + 1
    assert all(w.start == pytest.approx(w.time - (span - 1) / 10) for w in result.windows)
    for s in result.per_span:
        assert s["accuracy"] == 1.0 and s["windows"] >= 1, s


def test_replay_bad_input_is_reported_without_a_traceback(tmp_path, capsys):
    bag = write_bag(tmp_path / "b", "ros1", "/cam", colour_frames([(200, 0, 0)], 5), [k / 10 for k in range(5)])
    ckpt = str(default_checkpoint())
    assert evaluate_main(["--checkpoint", ckpt, "--bag", str(bag), "--topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "'/nope' is not in bag" in err and "/cam (sensor_msgs/msg/Image, 5 msgs)" in err
    assert evaluate_main(["--checkpoint", ckpt, "--bag", str(bag)]) == 2
    assert "--bag needs --topic" in capsys.readouterr().err
    bad = tmp_path / "spans.csv"
    bad.write_text("label,start,end\n../up,0,1\n", encoding="utf-8")
    assert evaluate_main(["--checkpoint", ckpt, "--bag", str(bag), "--topic", "/cam", "--spans", str(bad)]) == 2
    assert "path separator" in capsys.readouterr().err
