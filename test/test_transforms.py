"""Spatial transforms, the flip policy and on-device normalisation."""

import numpy as np
import pytest
import torch

from repflow_core.data.layouts import DataConfig
from repflow_core.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    FlipPolicy,
    center_crop,
    hflip,
    normalize_on_device,
    random_resized_crop,
    resize_short_side,
    three_crops,
    to_tensor,
)


def coord_clip(t=4, h=30, w=50):
    """Pixel (y, x) holds (y, x, frame) so crops can be located exactly."""
    clip = np.zeros((t, h, w, 3), np.uint8)
    clip[..., 0] = np.arange(h)[None, :, None]
    clip[..., 1] = np.arange(w)[None, None, :]
    clip[..., 2] = np.arange(t)[:, None, None]
    return clip


def test_to_tensor_layouts():
    clip = coord_clip()
    x = to_tensor(clip)
    assert x.shape == (3, 4, 30, 50) and x.dtype == torch.uint8 and x.is_contiguous()
    assert int(x[1, 0, 0, 7]) == 7
    # torch input in either layout
    assert torch.equal(to_tensor(torch.from_numpy(clip)), x)
    assert torch.equal(center_crop(x, 20), center_crop(clip, 20))
    with pytest.raises(TypeError):
        to_tensor(clip.astype(np.float32))
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 8, 8), np.uint8))


def test_resize_short_side():
    assert resize_short_side(coord_clip(h=30, w=50), 60).shape == (4, 60, 100, 3)
    assert resize_short_side(coord_clip(h=50, w=30), 15).shape == (4, 25, 15, 3)
    clip = coord_clip(h=20, w=20)
    np.testing.assert_array_equal(resize_short_side(clip, 20), clip)  # already the right size


def test_center_and_three_crops_positions():
    clip = coord_clip(h=30, w=50)
    c = center_crop(clip, 20)
    assert c.shape == (3, 4, 20, 20)
    assert (int(c[0, 0, 0, 0]), int(c[1, 0, 0, 0])) == (5, 15)  # y0=(30-20)//2, x0=(50-20)//2
    crops = three_crops(clip, 20)
    assert [int(k[1, 0, 0, 0]) for k in crops] == [0, 15, 30]  # left, centre, right
    assert all(int(k[0, 0, 0, 0]) == 5 for k in crops)
    portrait = three_crops(coord_clip(h=50, w=30), 20)
    assert [int(k[0, 0, 0, 0]) for k in portrait] == [0, 15, 30]  # top, centre, bottom
    # clips smaller than the crop are upscaled first
    assert center_crop(coord_clip(h=10, w=12), 16).shape == (3, 4, 16, 16)


def test_random_resized_crop_same_geometry_for_all_frames_and_reproducible():
    clip = np.repeat(coord_clip(t=1), 6, axis=0)  # identical frames
    out = random_resized_crop(clip, 16, (0.5, 1.0), np.random.default_rng(0))
    assert out.shape == (3, 6, 16, 16) and out.dtype == torch.uint8
    for t in range(1, 6):
        assert torch.equal(out[:, t], out[:, 0])
    again = random_resized_crop(clip, 16, (0.5, 1.0), np.random.default_rng(0))
    assert torch.equal(out, again)
    outs = {tuple(random_resized_crop(clip, 16, (0.5, 1.0), np.random.default_rng(s))[:2, 0, 0, 0].tolist())
            for s in range(20)}
    assert len(outs) > 5  # positions/scales vary
    # full-scale crop of a square clip == plain resize
    sq = coord_clip(h=32, w=32)
    full = random_resized_crop(sq, 32, (1.0, 1.0), np.random.default_rng(1))
    assert torch.equal(full, to_tensor(sq))
    with pytest.raises(ValueError):
        random_resized_crop(sq, 16, (0.0, 1.0), np.random.default_rng(0))


def test_hflip():
    clip = coord_clip()
    x = to_tensor(clip)
    f = hflip(x)
    assert int(f[1, 0, 0, 0]) == 49 and torch.equal(hflip(f), x)
    assert hflip(clip)[0, 0, 0, 1] == 49


def test_flip_policy_swaps_pairs_and_respects_forbidden():
    classes = ["walk_left", "walk_right", "jump", "turn_left", "wave"]
    pol = FlipPolicy.from_classes(classes, pairs=[["walk_left", "walk_right"]], forbidden=["wave"])
    assert pol.swap == {0: 1, 1: 0}
    assert pol.forbidden == {3, 4}  # turn_left has no mirror class -> auto-forbidden
    x = to_tensor(coord_clip())
    rng = np.random.default_rng(0)
    results = {lab: set() for lab in range(5)}
    for _ in range(64):
        for lab in range(5):
            clip, new = pol.apply(x, lab, rng)
            flipped = not torch.equal(clip, x)
            if flipped:
                assert torch.equal(clip, hflip(x))
            results[lab].add((flipped, new))
    assert results[0] == {(False, 0), (True, 1)}  # flipped walk_left is walk_right
    assert results[1] == {(False, 1), (True, 0)}
    assert results[2] == {(False, 2), (True, 2)}  # ordinary class: flip keeps the label
    assert results[3] == {(False, 3)} and results[4] == {(False, 4)}  # never flipped
    assert "walk_left<->walk_right" in pol.describe(classes)


def test_flip_policy_auto_pairs_disabled_and_errors():
    classes = ["Pushing something from left to right", "Pushing something from right to left",
               "SwipeLeft", "SwipeRight", "clap"]
    pol = FlipPolicy.from_classes(classes)
    assert pol.swap == {0: 1, 1: 0, 2: 3, 3: 2} and pol.forbidden == set()
    rot = ["rotate_cw", "rotate_ccw", "spin clockwise", "spin anticlockwise", "TURN_LEFT", "TURN_RIGHT",
           "roll counterclockwise", "leftover"]
    pol = FlipPolicy.from_classes(rot)
    assert pol.swap == {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
    assert pol.forbidden == {6}  # no "roll clockwise" class; "leftover" is not a direction word
    off = FlipPolicy.from_config(DataConfig(hflip=False), classes)
    x = to_tensor(coord_clip())
    rng = np.random.default_rng(0)
    assert all(off.apply(x, 4, rng)[0] is x for _ in range(10))
    with pytest.raises(ValueError, match="unknown class 'jog_left'"):
        FlipPolicy.from_classes(classes, pairs=[["clap", "jog_left"]])
    with pytest.raises(ValueError, match="both"):
        FlipPolicy.from_classes(classes, pairs=[["SwipeLeft", "SwipeRight"]], forbidden=["SwipeLeft"])
    with pytest.raises(ValueError, match="symmetric"):
        FlipPolicy(swap={0: 1})


def test_flip_probability_about_half():
    pol = FlipPolicy.from_classes(["a", "b"])
    rng = np.random.default_rng(0)
    x = to_tensor(coord_clip(t=1, h=4, w=6))
    n = sum(not torch.equal(pol.apply(x, 0, rng)[0], x) for _ in range(400))
    assert 150 < n < 250


def test_normalize_on_device_numerics():
    x = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    y = normalize_on_device(x)
    assert y.dtype == torch.float32 and y.shape == x.shape and y.device == x.device
    m = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
    s = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    torch.testing.assert_close(y, (x.float() / 255 - m) / s, rtol=1e-5, atol=1e-5)
    assert x.dtype == torch.uint8  # input untouched
    # multi-view batches (B, V, 3, T, H, W) and custom statistics
    z = normalize_on_device(x.unsqueeze(1).expand(2, 3, 3, 4, 5, 6), mean=(0.5, 0.5, 0.5),
                            std=(0.5, 0.5, 0.5))
    torch.testing.assert_close(z[:, 1], x.float() / 127.5 - 1, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        normalize_on_device(x.float())
    with pytest.raises(ValueError):
        normalize_on_device(torch.zeros(2, 4, 4, 5, 6, dtype=torch.uint8))
