"""Issue 10 part 2: real bags (rosbags writers: ROS 2 sqlite3 and mcap, ROS 1) -> labelled clips in the folders
layout, with `python -m repflow_core.data.rosbag`; bad input (missing topic, corrupt bag, span outside, hostile
label, unsupported encodings, oversized frames) reported clearly."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import colour_frames, storage_file, write_bag

from repflow_core.data.layouts import DataConfig, build_samples
from repflow_core.data.rosbag import BagError, check_label, main, read_spans
from repflow_core.data.video_io import read_video

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
N_EACH = 10  # frames per colour, at 10 fps: red 0.0-0.9 s, green 1.0-1.9 s, blue 2.0-2.9 s
TIMES = [i / 10 for i in range(3 * N_EACH)]
SPANS = "label,start,end\nred,0.0,0.95\ngreen,1.0,1.95\nblue,2.0,2.95\n"


def _make(tmp_path: Path, storage: str, encoding: str = "rgb8", pad: int = 0) -> Path:
    frames = colour_frames(list(COLOURS.values()), N_EACH)
    return write_bag(tmp_path / f"rec_{storage}", storage, "/cam/image", frames, TIMES, encoding=encoding, pad=pad)


def _spans(tmp_path: Path, text: str = SPANS) -> Path:
    p = tmp_path / "spans.csv"
    p.write_text(text, encoding="utf-8")
    return p


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "repflow_core.data.rosbag", *args], capture_output=True, text=True,
                          env=env, timeout=300)


CASES = [
    ("sqlite3", "rgb8", 5),  # padded step: 5 garbage bytes per row
    ("mcap", "bgr8", 0),
    ("ros1", "mono8", 0),
    ("sqlite3", "jpeg", 0),
    ("mcap", "png", 0),
    ("ros1", "rgb8", 7),
]


@pytest.mark.parametrize("storage,encoding,pad", CASES)
def test_spans_become_clips_the_folders_layout_reads(tmp_path, storage, encoding, pad, capsys):
    bag = _make(tmp_path, storage, encoding, pad)
    out = tmp_path / "data"
    assert main(["--bag", str(bag), "--topic", "/cam/image", "--spans", str(_spans(tmp_path)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "30 messages" in printed and "30 decoded" in printed and "wrote 3 of 3 clips" in printed

    samples, classes = build_samples(DataConfig(layout="folders", root=str(out)), "train")
    assert classes == ["blue", "green", "red"]
    assert len(samples) == 3
    stem = bag.stem if storage == "ros1" else bag.name
    for s in samples:
        label = classes[s.label]
        assert s.path == out / label / f"{stem}_{['red', 'green', 'blue'].index(label):03d}.avi"
        frames = read_video(s.path)
        assert frames.shape == (N_EACH, 48, 64, 3)
        body = frames[:, :, 24:].reshape(-1, 3).mean(0)  # right of the white quarter
        want = np.array(COLOURS[label], float)
        if encoding == "mono8":
            want = np.full(3, want @ [0.299, 0.587, 0.114])
        assert np.abs(body - want).max() < 12, (label, body, want)
        # the white quarter stays on the left of every row: the row padding was skipped, not read as pixels
        assert frames[:, :, :12].mean() > 235 and frames[:, :, 20:].mean() < 200
        assert (s.path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert not [p for p in out.rglob(".*")], "no temporary files left"

    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert [r["label"] for r in rows] == ["red", "green", "blue"]
    assert [int(r["frames"]) for r in rows] == [N_EACH] * 3
    assert [float(r["start"]) for r in rows] == pytest.approx([0.0, 1.0, 2.0])
    assert [float(r["end"]) for r in rows] == pytest.approx([0.9, 1.9, 2.9])
    assert all((out / r["path"]).is_file() for r in rows)


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_command_line_and_a_second_bag_add_to_the_index(tmp_path):
    bag1 = _make(tmp_path, "mcap")
    bag2 = write_bag(tmp_path / "other", "sqlite3", "/cam/image", colour_frames([COLOURS["red"]], 8), TIMES[:8])
    out = tmp_path / "data"
    spans = _spans(tmp_path)
    r = _run("--bag", str(bag1), "--topic", "/cam/image", "--spans", str(spans), "--out", str(out))
    assert r.returncode == 0, r.stderr
    # the storage file itself is accepted as --bag too
    r = _run("--bag", str(storage_file(bag2)), "--topic", "/cam/image", "--spans",
             str(_spans(tmp_path, "label,start,end\nred,0,0.7\n")), "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert sorted(r["path"] for r in rows) == ["blue/rec_mcap_002.avi", "green/rec_mcap_001.avi",
                                               "red/other_000.avi", "red/rec_mcap_000.avi"]
    assert len(read_video(out / "red" / "other_000.avi")) == 8


def test_missing_topic_lists_the_bags_topics(tmp_path):
    bag = _make(tmp_path, "sqlite3")
    r = _run("--bag", str(bag), "--topic", "/camera/image_raw", "--spans", str(_spans(tmp_path)),
             "--out", str(tmp_path / "data"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "'/camera/image_raw' is not in bag" in r.stderr
    assert "/cam/image (sensor_msgs/msg/Image, 30 msgs)" in r.stderr
    assert "/chatter (std_msgs/msg/String, 30 msgs)" in r.stderr
    r = _run("--bag", str(bag), "--topic", "/chatter", "--spans", str(_spans(tmp_path)), "--out",
             str(tmp_path / "data"))
    assert r.returncode == 2 and "carries std_msgs/msg/String, not an image type" in r.stderr


@pytest.mark.parametrize("storage", ["sqlite3", "mcap", "ros1"])
def test_truncated_bag_is_a_clear_error(tmp_path, storage):
    bag = _make(tmp_path, storage)
    f = storage_file(bag)
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(_spans(tmp_path)), "--out",
             str(tmp_path / "data"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert str(bag.name) in r.stderr and ("cannot read bag" in r.stderr or "is damaged" in r.stderr), r.stderr
    assert not (tmp_path / "data" / "index.csv").exists()


def test_missing_bag_and_not_a_bag(tmp_path):
    r = _run("--bag", str(tmp_path / "nope"), "--topic", "/x", "--spans", str(_spans(tmp_path)), "--out",
             str(tmp_path / "d"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.bag"
    junk.write_bytes(b"this is not a bag at all" * 10)
    r = _run("--bag", str(junk), "--topic", "/x", "--spans", str(_spans(tmp_path)), "--out", str(tmp_path / "d"))
    assert r.returncode == 2 and "cannot read bag" in r.stderr and "Traceback" not in r.stderr


def test_span_outside_the_bag_is_reported(tmp_path):
    bag = _make(tmp_path, "mcap")
    spans = _spans(tmp_path, "label,start,end\nred,0,0.95\nblue,10,12\ngreen,2.5,5\n")
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(spans), "--out", str(tmp_path / "data"))
    assert r.returncode == 1, r.stderr
    assert "span 1 (blue 10-12 s): no clip, outside the topic's 2.90 s" in r.stderr
    assert "span 2 (green 2.5-5 s) goes past the topic's end at 2.90 s: clip cut there" in r.stderr
    assert "wrote 2 of 3 clips" in r.stdout
    assert len(read_video(tmp_path / "data" / "green" / "rec_mcap_002.avi")) == 5  # 2.5 .. 2.9 s


@pytest.mark.parametrize("label", ["../x", "/", "", "a/b", ".hidden", "..", "train", "bad\tlabel"])
def test_hostile_labels_are_refused_with_a_reason(tmp_path, label):
    bag = _make(tmp_path, "sqlite3")
    out = tmp_path / "sub" / "data"
    spans = _spans(tmp_path, f"label,start,end\nred,0,1\n{label},1,2\n")
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(spans), "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "span 1" in r.stderr and "label" in r.stderr
    assert not out.exists() and not (tmp_path / "sub" / "x").exists()  # nothing written, let alone outside
    with pytest.raises(BagError):
        check_label(label)


def test_spans_file_errors_name_the_row(tmp_path):
    for text, expect in [("lbl,start,end\nred,0,1\n", "header 'label,start,end'"),
                         ("label,start,end\nred,1,0.5\n", "end 0.5 s must be after start 1 s"),
                         ("label,start,end\nred,soon,2\n", "start 'soon' is not a number"),
                         ("label,start,end\nred,0\n", "expected 3 fields"),
                         ("label,start,end\n", "no spans")]:
        with pytest.raises(BagError, match=expect):
            read_spans(_spans(tmp_path, text))
    assert [s.label for s in read_spans(_spans(tmp_path, "label,start,end\n# comment\n\nwave,0,1\n"))] == ["wave"]


def test_unsupported_encodings_and_oversized_frames_are_counted_by_cause(tmp_path):
    bag = write_bag(tmp_path / "odd", "sqlite3", "/cam/image", colour_frames([COLOURS["red"]], 6), TIMES[:6],
                    encoding="32FC1")
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(_spans(tmp_path, "label,start,end\nred,0,1\n")),
             "--out", str(tmp_path / "data"))
    assert r.returncode == 1
    assert "6 messages over 0.50 s, 0 decoded, dropped: unsupported_encoding 6" in r.stdout
    assert "unsupported encodings: '32FC1' x6" in r.stdout
    assert "span 0 (red 0-1 s): no clip, no frame decoded in it" in r.stderr

    bag = _make(tmp_path, "mcap")
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(_spans(tmp_path)), "--out",
             str(tmp_path / "data2"), "--max-image-pixels", "1000")  # 64 x 48 = 3072 pixels per frame
    assert r.returncode == 1
    assert "dropped: too_large 30" in r.stdout


def test_bag_damaged_part_way_keeps_the_clips_before_the_damage(tmp_path):
    bag = write_bag(tmp_path / "mid", "ros1", "/cam/image", colour_frames([COLOURS["red"]], 30, h=96, w=128),
                    TIMES)
    size = bag.stat().st_size
    with open(bag, "r+b") as fh:  # overwrite records 60% of the way in: the first records still read
        fh.seek(int(size * 0.6))
        fh.write(b"\xff" * 2000)
    out = tmp_path / "data"
    spans = _spans(tmp_path, "label,start,end\nred,0,1\nred,1.0,3\n")
    r = _run("--bag", str(bag), "--topic", "/cam/image", "--spans", str(spans), "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is damaged after" in r.stderr and "messages of '/cam/image'" in r.stderr
    rows = list(csv.DictReader(open(out / "index.csv", encoding="utf-8")))
    assert [r["path"] for r in rows] == ["red/mid_000.avi"]
    assert len(read_video(out / "red" / "mid_000.avi")) == 11  # 0.0 .. 1.0 s inclusive
