"""Clip index sampling: random training clips, evenly spaced test clips, short-video fillings."""

import numpy as np
import pytest

from repflow_core.data.sampling import clip_span, test_clip_indices, train_clip_indices


def test_clip_span():
    assert clip_span(16, 1) == 16 and clip_span(16, 2) == 31 and clip_span(1, 5) == 1


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_train_indices_in_bounds_and_cover_all_starts(stride):
    n, clip_len = 40, 8
    span = clip_span(clip_len, stride)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(600):
        idx = train_clip_indices(n, clip_len, stride, rng)
        assert idx.dtype == np.int64 and idx.shape == (clip_len,)
        assert idx.min() >= 0 and idx.max() < n
        np.testing.assert_array_equal(np.diff(idx), stride)
        starts.add(int(idx[0]))
    assert starts == set(range(n - span + 1))


def test_train_indices_reproducible_and_exact_length():
    a = train_clip_indices(100, 16, 2, np.random.default_rng(7))
    b = train_clip_indices(100, 16, 2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    idx = train_clip_indices(16, 16, 1, np.random.default_rng(0))  # exactly one possible start
    np.testing.assert_array_equal(idx, np.arange(16))


def test_short_video_repeat_last_is_default():
    idx = train_clip_indices(5, 8, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, [0, 1, 2, 3, 4, 4, 4, 4])
    idx = train_clip_indices(5, 4, 2, np.random.default_rng(0))  # span 7 > 5
    np.testing.assert_array_equal(idx, [0, 2, 4, 4])
    for clip in test_clip_indices(5, 8, 1, 3):
        np.testing.assert_array_equal(clip, [0, 1, 2, 3, 4, 4, 4, 4])


def test_short_video_loop():
    rng = np.random.default_rng(3)
    seen_starts = set()
    for _ in range(100):
        idx = train_clip_indices(5, 8, 1, rng, short_video="loop")
        assert idx.shape == (8,) and idx.min() >= 0 and idx.max() < 5
        np.testing.assert_array_equal(idx, (idx[0] + np.arange(8)) % 5)
        seen_starts.add(int(idx[0]))
    assert seen_starts == set(range(5))
    clips = test_clip_indices(6, 8, 1, 3, short_video="loop")
    assert [int(c[0]) for c in clips] == [0, 2, 4]
    np.testing.assert_array_equal(clips[1], (2 + np.arange(8)) % 6)


def test_single_video_frame():
    np.testing.assert_array_equal(train_clip_indices(1, 4, 3, np.random.default_rng(0)), [0, 0, 0, 0])
    np.testing.assert_array_equal(
        train_clip_indices(1, 4, 3, np.random.default_rng(0), short_video="loop"), [0, 0, 0, 0])


def test_test_clips_evenly_spaced():
    # 100 frames, span 16 -> starts in [0, 84]
    clips = test_clip_indices(100, 16, 1, 1)
    assert len(clips) == 1 and clips[0][0] == 42  # the centre clip
    clips = test_clip_indices(100, 16, 1, 4)
    starts = [int(c[0]) for c in clips]
    assert starts == [10, 31, 52, 73]
    assert len(set(np.diff(starts))) == 1  # evenly spaced
    for c in clips:
        np.testing.assert_array_equal(np.diff(c), 1)
        assert c.max() < 100
    clips = test_clip_indices(100, 8, 3, 5)  # span 22
    assert all(c.max() < 100 and (np.diff(c) == 3).all() for c in clips)
    assert test_clip_indices(100, 8, 3, 5)[0].tolist() == clips[0].tolist()  # deterministic


def test_invalid_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        train_clip_indices(0, 8, 1, rng)
    with pytest.raises(ValueError):
        train_clip_indices(10, 0, 1, rng)
    with pytest.raises(ValueError):
        train_clip_indices(10, 8, 0, rng)
    with pytest.raises(ValueError, match="short_video"):
        train_clip_indices(10, 8, 1, rng, short_video="mirror")
    with pytest.raises(ValueError):
        test_clip_indices(10, 8, 1, 0)
