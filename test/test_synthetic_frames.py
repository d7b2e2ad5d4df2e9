"""render_clip(..., frames=...): chosen frames of a longer clip, byte-identical to the same frames of the full
render (the on-the-fly stream renders a 16-frame window of a 40-frame action timeline this way)."""

import numpy as np
import pytest

from repflow_core.data import synthetic
from repflow_core.data.synthetic import ALL_ACTIONS, SynthConfig, render_clip

# Every moving part on: camera ego-motion (so motion blur reads the previous frame's camera), door, ball,
# second person, occluder, partial actions; per-frame noise offsets, flicker and JPEG stay at their defaults.
BUSY = SynthConfig.from_dict({"camera": {"motion": True, "motion_prob": 1.0, "flicker_prob": 1.0},
                              "scene": {"door_prob": 1.0, "ball_prob": 1.0, "second_person_prob": 1.0,
                                        "occlusion": 0.5},
                              "person": {"partial_prob": 0.5}})
GEOMETRIES = [(48, 64), (64, 48), (36, 64), (40, 40)]


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_chosen_frames_equal_the_full_render(action):
    k = ALL_ACTIONS.index(action)
    for seed, size in ((k, GEOMETRIES[k % 4]), (100 + 7 * k, GEOMETRIES[(k + 1) % 4])):
        full, masks = synthetic._render(action, 40, size, seed, with_mask=True, config=BUSY)
        assert full.shape == (40, *size, 3)
        for frames in (range(12, 28), [39, 0, 17, 17, 1], np.arange(0, 40, 3)):
            part, part_masks = synthetic._render(action, 40, size, seed, with_mask=True, config=BUSY, frames=frames)
            idx = list(frames)
            assert part.shape == (len(idx), *size, 3)
            assert np.array_equal(part, full[idx]), (action, seed, size, idx)
            assert np.array_equal(part_masks, masks[idx])
        # the default config (camera motion on for 75 % of clips) and the public entry point
        assert np.array_equal(render_clip(action, 40, size, seed, frames=range(24, 40)),
                              render_clip(action, 40, size, seed)[24:])


def test_clean_and_generation_1_frames_are_slices_too():
    for action in ("sit_down", "stand_up", "walk_left"):
        full, masks = synthetic._render(action, 30, (48, 64), 5, clean=True, with_mask=True)
        part, part_masks = synthetic._render(action, 30, (48, 64), 5, clean=True, with_mask=True, frames=range(3, 19))
        assert np.array_equal(part, full[3:19]) and np.array_equal(part_masks, masks[3:19])
        v1 = render_clip(action, 24, (48, 48), 9, generation=1)
        assert np.array_equal(render_clip(action, 24, (48, 48), 9, generation=1, frames=[5, 2, 23]), v1[[5, 2, 23]])


def test_time_reversed_pairs_hold_for_chosen_frames():
    """stand_up frame j is sit_down frame T-1-j, also when only some frames are drawn."""
    fwd = render_clip("sit_down", 40, (48, 64), 3, config=BUSY, frames=range(10, 26))
    back = render_clip("stand_up", 40, (48, 64), 3, config=BUSY, frames=range(14, 30))
    assert np.array_equal(back, fwd[::-1])


@pytest.mark.parametrize("frames, match", [([], "non-empty"), ([0, 40], r"\[0, 39\].*num_frames=40"),
                                           ([-1], r"\[0, 39\]"), ([0.5, 2.0], "integer"), ([[1, 2]], "1-D")])
def test_bad_frame_indices_are_refused(frames, match):
    with pytest.raises(ValueError, match=match):
        render_clip("wave", 40, (32, 32), 0, frames=frames)
