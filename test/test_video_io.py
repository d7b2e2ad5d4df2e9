"""Video decoding/encoding: round trips, frame folders, partial reads and damaged files."""

import os

import cv2
import numpy as np
import pytest

from repflow_core.data import video_io
from repflow_core.data.video_io import (
    VideoInfo,
    VideoReadError,
    VideoWriteError,
    is_frame_folder,
    list_frame_files,
    natural_key,
    probe_video,
    read_frames,
    read_video,
    write_frames,
    write_video,
)


def moving_square(t=8, h=32, w=32, seed=None):
    """A white square moving right on a dark background, one distinct grey level per frame."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = 20 + 8 * i
        x = (3 * i) % max(1, w - 8)
        frames[i, 8:16, x:x + 8] = 255
    return frames


def test_avi_round_trip_shape_and_rgb_order(tmp_path):
    frames = moving_square()
    frames[:, :4, :4] = (255, 0, 0)  # a pure red corner survives MJPG well
    p = write_video(tmp_path / "a.avi", frames, fps=25.0)
    out = read_video(p)
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
    r, g, b = out[0, 1, 1].astype(int)
    assert r > 200 and g < 60 and b < 60, "frames must come back RGB, not BGR"
    # MJPG is lossy but close
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 8


def test_mp4_round_trip_and_probe(tmp_path):
    p = write_video(tmp_path / "a.mp4", moving_square(t=6, h=32, w=48), fps=12.0)
    info = probe_video(p)
    assert info == VideoInfo(6, 12.0, 32, 48)
    assert read_video(p).shape == (6, 32, 48, 3)


def test_probe_counts_by_grabbing_when_frame_count_unreliable(tmp_path, monkeypatch):
    p = write_video(tmp_path / "a.avi", moving_square(t=7))
    monkeypatch.setattr(video_io, "_reported_count", lambda cap: 0)
    assert probe_video(p).num_frames == 7


def test_read_frames_matches_full_decode(tmp_path):
    p = write_video(tmp_path / "a.avi", moving_square(t=10))
    full = read_video(p)
    idx = [7, 0, 3, 3, 9]
    part = read_frames(p, idx)
    assert part.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(part, full[idx])


def test_read_frames_past_end_raises_and_small_overshoot_repeats_last(tmp_path):
    p = write_video(tmp_path / "a.avi", moving_square(t=8))
    with pytest.raises(VideoReadError, match="a.avi"):
        read_frames(p, [0, 30])
    full = read_video(p)
    out = read_frames(p, [6, 8])  # one frame past the end: tolerated, last frame repeated
    np.testing.assert_array_equal(out[1], full[7])
    with pytest.raises(VideoReadError):
        read_frames(p, [-1])


def test_natural_sort_and_frame_folder(tmp_path):
    assert sorted(["frame_10", "frame_2", "frame_1"], key=natural_key) == ["frame_1", "frame_2", "frame_10"]
    folder = tmp_path / "vid"
    folder.mkdir()
    for n, level in ((1, 10), (2, 20), (10, 100)):
        img = np.full((16, 24, 3), level, np.uint8)
        cv2.imwrite(str(folder / f"frame_{n}.png"), img)
    (folder / "notes.txt").write_text("not a frame")
    assert is_frame_folder(folder) and not is_frame_folder(tmp_path / "nope")
    assert [f.name for f in list_frame_files(folder)] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    v = read_video(folder)
    assert v.shape == (3, 16, 24, 3)
    assert [int(v[i, 0, 0, 0]) for i in range(3)] == [10, 20, 100]
    assert [int(x[0, 0, 0]) for x in read_frames(folder, [2, 0])] == [100, 10]
    assert probe_video(folder) == VideoInfo(3, 0.0, 16, 24)


def test_write_frames_round_trip(tmp_path):
    frames = moving_square(t=5)
    files = write_frames(tmp_path / "f", frames)
    assert len(files) == 5
    np.testing.assert_array_equal(read_video(tmp_path / "f"), frames)  # PNG is lossless


def test_missing_file_raises_with_path(tmp_path):
    p = tmp_path / "missing.avi"
    for fn in (read_video, probe_video, lambda q: read_frames(q, [0])):
        with pytest.raises(VideoReadError, match="missing.avi"):
            fn(p)


def test_random_bytes_raise(tmp_path):
    p = tmp_path / "garbage.avi"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.avi"):
        read_video(p)
    with pytest.raises(VideoReadError, match="garbage.avi"):
        probe_video(p)


def test_truncated_mp4_raises(tmp_path):
    p = write_video(tmp_path / "a.mp4", moving_square(t=8))
    data = p.read_bytes()
    q = tmp_path / "cut.mp4"
    q.write_bytes(data[: len(data) // 2])  # moov atom lost
    with pytest.raises(VideoReadError, match="cut.mp4"):
        read_video(q)


def test_truncated_avi_partial_decode(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)  # noisy => big, even frames
    p = write_video(tmp_path / "a.avi", frames)
    data = p.read_bytes()
    q = tmp_path / "cut.avi"
    q.write_bytes(data[: len(data) // 2])
    part = read_video(q)  # lenient: what decoded
    assert 1 <= len(part) < 18
    with pytest.raises(VideoReadError, match="truncated"):
        read_video(q, strict=True)
    assert probe_video(q).num_frames == 20  # the header's claim
    with pytest.raises(VideoReadError, match="cut.avi"):
        probe_video(q, verify=True)
    with pytest.raises(VideoReadError, match="cut.avi"):
        read_frames(q, [19])


def test_zero_frames_and_bad_frame_folders(tmp_path):
    w = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (32, 32))
    w.release()
    with pytest.raises(VideoReadError, match="empty.avi"):
        read_video(tmp_path / "empty.avi")
    (tmp_path / "nofr").mkdir()
    with pytest.raises(VideoReadError, match="nofr"):
        read_video(tmp_path / "nofr")
    bad = tmp_path / "badimg"
    bad.mkdir()
    (bad / "frame_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoReadError, match="frame_1.jpg"):
        read_video(bad)


def test_write_errors(tmp_path):
    with pytest.raises(VideoWriteError, match="no_such_dir"):
        write_video(tmp_path / "no_such_dir" / "a.avi", moving_square())
    with pytest.raises(ValueError):
        write_video(tmp_path / "a.avi", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError):
        write_video(tmp_path / "a.avi", np.zeros((4, 8, 8, 3), np.float32))
    assert not os.path.exists(tmp_path / "a.avi")
