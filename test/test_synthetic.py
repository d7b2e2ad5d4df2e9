"""Tests for the synthetic action-video generator (repflow_core.data.synthetic).

Small clips (64x64, 16-32 frames) keep the whole file to a few seconds on a 2-core machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from repflow_core.data import synthetic
from repflow_core.data.synthetic import ACTIONS, render_clip, write_dataset

SMALL = (64, 64)
REPO_ROOT = Path(__file__).resolve().parents[1]


def _motion(frames: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames, in grey levels."""
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())


def _clean(action: str, seed: int, num_frames: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Frames and figure masks without sensor noise or camera jitter."""
    frames, masks = synthetic._render(action, num_frames, SMALL, seed, clean=True, with_mask=True, generation=1)
    assert masks is not None
    return frames, masks


def test_actions_are_the_ten_classes_in_order():
    assert ACTIONS == (
        "idle", "wave", "clap", "walk_left", "walk_right", "sit_down", "stand_up", "fall", "pick_up", "put_down"
    )  # fmt: skip


def test_render_clip_returns_uint8_thwc_rgb():
    clip = render_clip("wave", 12, (48, 80), seed=3)
    assert clip.shape == (12, 48, 80, 3)
    assert clip.dtype == np.uint8
    assert clip.flags["C_CONTIGUOUS"]


def test_same_seed_gives_same_bytes_and_different_seed_differs():
    a = render_clip("clap", 16, SMALL, seed=7)
    b = render_clip("clap", 16, SMALL, seed=7)
    c = render_clip("clap", 16, SMALL, seed=8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_renders_a_non_constant_clip(action):
    clip = render_clip(action, 16, SMALL, seed=1)
    assert clip.shape == (16, *SMALL, 3)
    assert clip.std() > 5.0


def test_unknown_action_raises_value_error_naming_valid_actions():
    with pytest.raises(ValueError) as err:
        render_clip("dance", 8, SMALL)
    for action in ACTIONS:
        assert action in str(err.value)


def test_invalid_frame_count_and_size_raise_value_error():
    with pytest.raises(ValueError):
        render_clip("idle", 0, SMALL)
    with pytest.raises(ValueError):
        render_clip("idle", 4, (8, 8))


@pytest.mark.parametrize(("reverse", "forward"), [("walk_left", "walk_right"), ("stand_up", "sit_down"),
                                                  ("put_down", "pick_up")])  # fmt: skip
def test_time_reversed_pair_is_exact_reversal_of_its_partner(reverse, forward):
    for seed in (0, 5):
        fwd = render_clip(forward, 24, SMALL, seed=seed)
        rev = render_clip(reverse, 24, SMALL, seed=seed)
        np.testing.assert_array_equal(rev, fwd[::-1])
        # Same multiset of frames, but the order matters: the clip is not a palindrome.
        assert _motion(np.stack([fwd[0], fwd[-1]])) > 0.5


def test_one_seed_gives_the_same_appearance_for_every_action():
    """Appearance is drawn before the action, so only motion separates classes for one seed."""
    first = {a: render_clip(a, 2, SMALL, seed=11)[0] for a in ("idle", "clap", "sit_down", "pick_up")}
    # Starting frames of idle and sit_down (standing, before the motion window) look alike.
    assert np.abs(first["idle"].astype(int) - first["sit_down"].astype(int)).mean() < 6.0


def test_moving_actions_have_real_motion_and_idle_much_less():
    for seed in (0, 1, 2):
        idle = _motion(_clean("idle", seed)[0])
        for action in ACTIONS[1:]:
            moving = _motion(_clean(action, seed)[0])
            assert moving > 2.0 * idle, (action, seed, moving, idle)
        assert _motion(_clean("walk_right", seed)[0]) > 1.0


def test_noisy_clip_has_sensor_noise_and_clean_clip_does_not():
    noisy = render_clip("idle", 4, SMALL, seed=2, generation=1)
    clean, _ = _clean("idle", 2, 4)
    residual = noisy.astype(np.int16) - clean.astype(np.int16)
    assert 0.5 < residual.std() < 12.0


@pytest.mark.parametrize(("action", "sign"), [("walk_right", 1.0), ("walk_left", -1.0)])
def test_walk_moves_the_figure_in_its_direction(action, sign):
    for seed in (0, 3, 4):
        _, masks = _clean(action, seed)
        xs = np.arange(SMALL[1])
        centroid = np.array([(m.sum(0) * xs).sum() / max(m.sum(), 1) for m in masks.astype(float)])
        slope = np.polyfit(np.arange(len(centroid)), centroid, 1)[0]
        assert sign * slope > 0.3, (seed, slope)  # px / frame


def test_sit_down_ends_lower_than_it_starts():
    for seed in (0, 1, 2):
        _, masks = _clean("sit_down", seed)
        top = [np.nonzero(m.any(1))[0][0] for m in masks]
        assert top[-1] - top[0] > 0.1 * SMALL[0] * 0.55, (seed, top[0], top[-1])


def test_fall_ends_lying_down():
    for seed in (0, 1, 2):
        _, masks = _clean("fall", seed)

        def aspect(m):
            rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
            return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)

        assert aspect(masks[0]) < 0.9 and aspect(masks[-1]) > 1.3, (seed, aspect(masks[0]), aspect(masks[-1]))


def _check_dataset(root: Path, per_class: int, frames: int, size: int) -> None:
    assert (root / "classInd.txt").read_text().splitlines() == [f"{i + 1} {a}" for i, a in enumerate(ACTIONS)]
    train = (root / "trainlist.txt").read_text().splitlines()
    test = (root / "testlist.txt").read_text().splitlines()
    listed = train + test
    written = sorted(str(p.relative_to(root)) for p in root.glob("*/*") if p.suffix in (".avi", ".mp4"))
    assert sorted(listed) == written and len(set(listed)) == len(listed) == per_class * len(ACTIONS)
    for action in ACTIONS:  # stratified: the same split in every class
        assert sum(p.startswith(action + "/") for p in test) == round(per_class * 0.25)
    for rel in listed:
        cap = cv2.VideoCapture(str(root / rel))
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (size, size, 3)
            n += 1
        cap.release()
        assert n == frames, rel


def test_write_dataset_writes_decodable_videos_and_stratified_splits(tmp_path):
    info = write_dataset(tmp_path / "ds", per_class=4, num_frames=16, size=64, progress=False)
    assert info["num_videos"] == 40 and info["num_train"] == 30 and info["num_test"] == 10
    assert info["codec"] in ("MJPG", "mp4v")
    _check_dataset(tmp_path / "ds", per_class=4, frames=16, size=64)
    # Deterministic: the same call gives the same split and the same file names.
    again = write_dataset(tmp_path / "ds2", per_class=4, num_frames=16, size=64, progress=False)
    assert again["codec"] == info["codec"]
    for name in ("trainlist.txt", "testlist.txt"):
        assert (tmp_path / "ds" / name).read_text() == (tmp_path / "ds2" / name).read_text()


def test_written_video_matches_rendered_clip(tmp_path):
    write_dataset(tmp_path, per_class=1, num_frames=8, size=64, test_fraction=0.0, progress=False)
    path = next((tmp_path / "wave").iterdir())
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    expected = render_clip("wave", 8, (64, 64), seed=synthetic._clip_seed(0, ACTIONS.index("wave"), 0))
    assert np.abs(np.stack(frames).astype(int) - expected.astype(int)).mean() < 8.0  # lossy codec


def test_cli_writes_dataset_and_prints_summary(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "repflow_core.data.synthetic", "--out", str(out), "--per-class", "4",
         "--frames", "16", "--size", "64", "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "wrote 40 videos" in result.stdout
    _check_dataset(out, per_class=4, frames=16, size=64)


def test_cli_actions_chooses_the_classes_and_their_order(tmp_path):
    out = tmp_path / "cli_actions"
    result = subprocess.run(
        [sys.executable, "-m", "repflow_core.data.synthetic", "--out", str(out), "--per-class", "2",
         "--frames", "4", "--size", "48", "--no-progress", "--actions", "nod", "wave"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "wrote 4 videos" in result.stdout and "x 2 classes" in result.stdout
    assert (out / "classInd.txt").read_text() == "1 nod\n2 wave\n"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["nod", "wave"]


def test_cli_refuses_an_unknown_action_naming_the_choices(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "repflow_core.data.synthetic", "--out", str(tmp_path / "x"), "--per-class", "2",
         "--actions", "wave", "juggle"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown action(s) juggle" in result.stderr and "point" in result.stderr
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------- generation 2
import hashlib  # noqa: E402

from repflow_core.data.synthetic import EXTRA_ACTIONS, SynthConfig  # noqa: E402
from repflow_core.data.video_io import read_video, write_video  # noqa: E402

# sha256 of generation-1 clips recorded from the single-module generator before the package split.
V1_HASHES = {
    ("idle", 16, (64, 64), 0): "57e0b3378ffb42c056cd20313ffe5bd223193effce410f1d9f3b19850f35db51",
    ("wave", 12, (48, 80), 3): "a380d07ca1fd4872b4a2cc79ecdbc2ba7a73228bebbbe5bcc3575505447c17ed",
    ("walk_left", 24, (64, 64), 5): "756663211f0d52c7ec2ce97128b3dad3ae035c88425b2e113bc68986eb6ade11",
    ("sit_down", 20, (128, 128), 1): "f9a271b1284da503de317115cf2f3ba622067cf13fbc5b715bc36953cbce3de7",
    ("fall", 16, (128, 96), 4): "76e0c48052330a4480c8ffb5229b801c7765d4c47124b79e3f8dfc5b826d45ff",
    ("pick_up", 16, (64, 64), 7): "3752dcba7511e607f4a08077088cedb2e1ee0b9e5e414c3f071457776c5e7d69",
    ("clap", 16, (120, 160), 11): "d01a6625de34a711d8e2e37fa1faa96924e15856510514be46c6be9ba6e9ccac",
}
GEOMETRIES = [(112, 112), (90, 120), (72, 128), (128, 72)]  # 1:1, 4:3, 16:9, portrait 9:16


@pytest.mark.parametrize("key", sorted(V1_HASHES))
def test_generation_1_is_byte_identical_to_the_old_module(key):
    action, frames, size, seed = key
    clip = render_clip(action, frames, size, seed=seed, generation=1)
    assert hashlib.sha256(clip.tobytes()).hexdigest() == V1_HASHES[key]


@pytest.mark.parametrize("size", GEOMETRIES)
def test_generation_2_renders_every_geometry_deterministically(size):
    a = render_clip("wave", 8, size, seed=4)
    assert a.shape == (8, *size, 3) and a.dtype == np.uint8 and a.std() > 5.0
    assert a.tobytes() == render_clip("wave", 8, size, seed=4).tobytes()
    assert not np.array_equal(a, render_clip("wave", 8, size, seed=5))


@pytest.mark.parametrize(("reverse", "forward"), [("walk_left", "walk_right"), ("stand_up", "sit_down"),
                                                  ("put_down", "pick_up")])  # fmt: skip
def test_generation_2_reversed_pairs_are_exact_reversals(reverse, forward):
    fwd = render_clip(forward, 12, (72, 128), seed=3)
    np.testing.assert_array_equal(render_clip(reverse, 12, (72, 128), seed=3), fwd[::-1])


def test_extra_actions_render_by_name_but_are_not_default_classes():
    assert len(EXTRA_ACTIONS) >= 3 and not set(EXTRA_ACTIONS) & set(ACTIONS)
    for action in EXTRA_ACTIONS:
        for generation in (1, 2):
            assert render_clip(action, 6, SMALL, seed=1, generation=generation).std() > 5.0


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return rows[0], rows[-1], cols[0], cols[-1]


@pytest.mark.parametrize("size", [(120, 160), (90, 160), (160, 90)])
def test_person_height_and_placement_ranges(size):
    cfg = SynthConfig.from_dict({"person": {"out_of_frame_prob": 0.0}, "scene": {"occlusion": 0.0}})
    H, W = size
    fracs = []
    for seed in range(12):
        _, masks = synthetic._render("idle", 2, size, seed, clean=True, with_mask=True, config=cfg)
        r0, r1, c0, c1 = _bbox(masks[0])
        fracs.append((r1 - r0 + 1) / H)
        assert r0 >= 0 and r1 <= H - 1 and c0 >= 0 and c1 <= W - 1
    assert 0.2 <= min(fracs) and max(fracs) <= 0.95 and max(fracs) - min(fracs) > 0.25, fracs


@pytest.mark.parametrize("position", ["left", "centre", "right"])
def test_person_position_puts_the_body_in_that_third(position):
    cfg = SynthConfig.from_dict({"person": {"position": position, "out_of_frame_prob": 0.0, "height": [0.3, 0.6]},
                                 "scene": {"occlusion": 0.0}})
    W = 160
    for seed in range(6):
        _, masks = synthetic._render("idle", 2, (90, W), seed, clean=True, with_mask=True, config=cfg)
        xs = np.nonzero(masks[0].any(0))[0]
        third = int(xs.mean() // (W / 3))
        assert third == {"left": 0, "centre": 1, "right": 2}[position], (seed, xs.mean())


def _global_shift(clip: np.ndarray) -> float:
    a = cv2.cvtColor(clip[0], cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(clip[-1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    return float(np.hypot(dx, dy))


def test_camera_motion_moves_the_whole_image():
    on = SynthConfig.from_dict({"camera": {"motion_prob": 1.0, "pan_speed": [0.004, 0.006]}})
    off = SynthConfig.from_dict({"camera": {"motion": False}})
    shifts_on = [_global_shift(render_clip("idle", 16, (96, 128), seed=s, config=on)) for s in range(3)]
    shifts_off = [_global_shift(render_clip("idle", 16, (96, 128), seed=s, config=off)) for s in range(3)]
    assert min(shifts_on) > 4.0 and max(shifts_off) < 1.0, (shifts_on, shifts_off)


def test_factor_switches_reject_bad_values():
    with pytest.raises(ValueError, match="position"):
        SynthConfig.from_dict({"person": {"position": "top"}})
    with pytest.raises(ValueError, match="camera.nope"):
        SynthConfig.from_dict({"camera": {"nope": 1}})


def test_generation_2_video_round_trip_through_video_io(tmp_path):
    clip = render_clip("clap", 8, (72, 128), seed=2)
    path = write_video(tmp_path / "c.avi", clip, 15)
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 8.0
