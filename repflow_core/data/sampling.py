"""Which frames make up a clip.

A clip is ``clip_len`` frames taken every ``stride`` frames, so it spans
``(clip_len - 1) * stride + 1`` frames of the video.

Short videos
------------
A video shorter than that span cannot give a clip of distinct frames. Two fillings are offered via
``short_video``:

* ``"repeat_last"`` (default): take the video from its first frame and hold the last frame for the
  remaining steps. The motion is played once and then stops, which keeps the meaning of
  *transitional* actions: a looped "sit down" would become sit-down-then-stand-up, i.e. the wrong
  class, and the wrap-around adds a spurious jump that optical-flow-like layers see as huge motion.
* ``"loop"``: indices modulo ``num_frames`` from a random (train) or evenly spread (test) start.
  Better for *periodic* actions (walking, clapping) where a loop looks like more of the same.
"""

from __future__ import annotations

import numpy as np

from .layouts import SHORT_VIDEO_MODES

__all__ = ["clip_span", "test_clip_indices", "train_clip_indices"]


def clip_span(clip_len: int, stride: int) -> int:
    """Number of video frames a clip covers."""
    return (clip_len - 1) * stride + 1


def _check(num_frames: int, clip_len: int, stride: int, short_video: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
    if short_video not in SHORT_VIDEO_MODES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_MODES}, got {short_video!r}")


def _short_clip(num_frames: int, clip_len: int, stride: int, short_video: str,
                start: int) -> np.ndarray:
    steps = np.arange(clip_len, dtype=np.int64) * stride
    if short_video == "loop":
        return (start + steps) % num_frames
    return np.minimum(steps, num_frames - 1)


def train_clip_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator,
                       short_video: str = "repeat_last") -> np.ndarray:
    """Frame indices (int64, length ``clip_len``) of one clip with a uniformly random start.

    Videos with at least ``clip_span`` frames: start in ``[0, num_frames - span]``. Shorter videos
    follow ``short_video`` (see module doc): "repeat_last" starts at frame 0 and holds the last frame,
    "loop" starts at a random frame and wraps around."""
    _check(num_frames, clip_len, stride, short_video)
    span = clip_span(clip_len, stride)
    if num_frames >= span:
        start = int(rng.integers(0, num_frames - span + 1))
        return start + np.arange(clip_len, dtype=np.int64) * stride
    start = int(rng.integers(0, num_frames)) if short_video == "loop" else 0
    return _short_clip(num_frames, clip_len, stride, short_video, start)


def test_clip_indices(num_frames: int, clip_len: int, stride: int, num_clips: int,
                      short_video: str = "repeat_last") -> list[np.ndarray]:
    """``num_clips`` clips with evenly spaced starts (deterministic).

    The possible starts ``[0, num_frames - span]`` are cut into ``num_clips`` equal segments and each
    clip starts at its segment's centre, so one clip is the centre clip and several clips avoid
    hugging the first/last frames (fades, titles). Short videos: "repeat_last" gives ``num_clips``
    copies of the single from-the-start clip; "loop" spreads the starts over the whole video."""
    _check(num_frames, clip_len, stride, short_video)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = clip_span(clip_len, stride)
    steps = np.arange(clip_len, dtype=np.int64) * stride
    if num_frames >= span:
        max_start = num_frames - span
        starts = [max_start * (2 * i + 1) // (2 * num_clips) for i in range(num_clips)]
        return [s + steps for s in starts]
    starts = [num_frames * i // num_clips for i in range(num_clips)]
    return [_short_clip(num_frames, clip_len, stride, short_video, s) for s in starts]


# pytest would otherwise try to collect ``test_clip_indices`` when a test module imports it by name.
test_clip_indices.__test__ = False  # type: ignore[attr-defined]
