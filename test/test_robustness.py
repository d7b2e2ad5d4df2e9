"""The robustness report (repflow_core/robustness.py, ``evaluate --robustness``): a fixed, seeded matrix whose
cells are what they claim, unseen seeds, atomic outputs, a tiny checkpoint end to end, bad options refused."""

import csv
import json
import os

import cv2
import numpy as np
import pytest

from repflow_core import evaluate, robustness
from repflow_core.atomic_io import default_file_mode
from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
from repflow_core.data.synthetic import ACTIONS, ALL_ACTIONS, SynthConfig, _clip_seed, _render, render_clip
from repflow_core.data.synthetic.camera import camera_track
from repflow_core.data.synthetic_stream import SPLIT_CODES
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.robustness import (
    FACTORS,
    GEOMETRIES,
    ROBUSTNESS_SEED_BASE,
    SEEDS_PER_CLASS,
    Cell,
    RobustnessError,
    build_matrix,
    clip_seed,
)

SEEDS = [clip_seed(c, 0) for c in range(4)]


def make_checkpoint(tmp_path, labels=("idle", "wave", "fall"), name="tiny.pt"):
    cfg = ModelConfig(width=0.125, num_classes=len(labels), flow_channels=4, iterations=1, flow_after="layer1",
                      dropout=0.0)
    spec = InputSpec(clip_len=4, size=(32, 32), resize_short=36)
    path = tmp_path / name
    save_checkpoint(Checkpoint(cfg, list(labels), spec, ActionNet(cfg).state_dict()), path)
    return path


def test_matrix_is_fixed_bounded_and_covers_every_geometry_and_factor():
    quick, full = build_matrix("quick"), build_matrix("full")
    assert quick == build_matrix("quick") and len(quick) == len(set(quick)) == 16
    assert len(full) == len(set(full)) == len(GEOMETRIES) * len(FACTORS) == 40
    assert set(quick) <= set(full)
    assert {c.geometry for c in quick} == set(GEOMETRIES) and {c.factor for c in quick} == set(FACTORS)
    assert {c.factor for c in quick if c.geometry == "640x360"} >= {"left", "centre", "right"}
    assert build_matrix(geometries=["64x48"], factors=["left", "still"]) == [Cell("64x48", "left"),
                                                                             Cell("64x48", "still")]
    assert Cell("640x360", "still").size == (360, 640) and Cell("360x640", "still").size == (640, 360)


def test_seeds_are_fixed_unique_and_outside_every_training_set():
    seeds = {clip_seed(c, j) for c in range(len(ALL_ACTIONS)) for j in range(50)}
    assert len(seeds) == len(ALL_ACTIONS) * 50
    lo, hi = ROBUSTNESS_SEED_BASE, ROBUSTNESS_SEED_BASE + 4 * len(ALL_ACTIONS) * SEEDS_PER_CLASS
    assert all(lo <= s < hi for s in seeds)
    # write_dataset's clip seeds are 32-bit hashes and camera_sim's are below 2**31: the range is beyond both
    assert lo >= 2**32 and all(s % 4 == robustness.SEED_CODE for s in seeds)
    assert robustness.SEED_CODE not in SPLIT_CODES.values()  # the on-the-fly training stream's seed codes
    train = [_clip_seed(seed, ci, i) for seed in (0, 1, 12345) for ci in range(len(ALL_ACTIONS)) for i in range(200)]
    assert max(train) < 2**32
    with pytest.raises(RobustnessError, match="at most"):
        clip_seed(0, SEEDS_PER_CLASS)


def test_a_cell_clip_renders_the_same_bytes_every_time():
    cell = Cell("64x48", "motion")
    a = render_clip("wave", 6, cell.size, SEEDS[0], generation=2, config=cell.synth_config())
    b = render_clip("wave", 6, cell.size, SEEDS[0], generation=2, config=cell.synth_config())
    assert a.shape == (6, 48, 64, 3) and np.array_equal(a, b)


def test_each_factor_changes_only_its_own_fields():
    base = Cell("128x128", "still").synth_config()
    assert base.camera.motion is False and base.scene.occlusion == 0.0 and base.person.position == "any"
    expect = {"motion": ("camera", {"motion": True, "motion_prob": 1.0}), "occlusion": ("scene", {"occlusion": 1.0}),
              "low_light": ("camera", {"low_light": True}), "left": ("person", {"position": "left"}),
              "right": ("person", {"position": "right"}), "centre": ("person", {"position": "centre"}),
              "blur_compr": ("camera", {"blur": 2.0, "compression": 2.0, "compression_prob": 1.0})}
    for factor, (section, fields) in expect.items():
        cfg = Cell("128x128", factor).synth_config()
        for sec in ("person", "scene", "camera"):
            got, ref = vars(getattr(cfg, sec)), vars(getattr(base, sec))
            diff = {k: v for k, v in got.items() if ref[k] != v}
            assert diff == (fields if sec == section else {}), (factor, sec, diff)


@pytest.mark.parametrize("factor,third", [("left", 0), ("centre", 1), ("right", 2)])
def test_position_cells_put_the_person_in_their_third(factor, third):
    cell = Cell("640x360", factor)
    H, W = cell.size
    for seed in SEEDS:
        _, masks = _render("idle", 2, cell.size, seed, with_mask=True, generation=2, config=cell.synth_config())
        cols = np.nonzero(masks[0])[1]
        assert cols.size > 0.002 * H * W, f"seed {seed}: the person is barely visible"
        # the feet are placed in the third; the body's centre stays within a few % of the frame of it
        centre = float(np.median(cols)) / W
        assert third / 3 - 0.04 <= centre <= (third + 1) / 3 + 0.04, (seed, centre)


def test_camera_cells_are_what_they_claim_by_the_generators_own_camera_draws():
    T, (H, W) = 8, GEOMETRIES["640x480"]
    for seed in SEEDS:
        def track(factor, seed=seed):
            cfg = Cell("640x480", factor).synth_config().camera
            return camera_track(np.random.default_rng(seed), cfg, T, H, W, False)

        still, moving = track("still"), track("motion")
        assert still.matrices.size == 0
        assert moving.matrices.shape == (T, 2, 3) and not np.allclose(moving.matrices, moving.matrices[0])
        assert track("blur_compr").jpeg_quality > 0
        dark = track("low_light").lut[:, 0, 200].mean()
        assert dark < 0.7 * still.lut[:, 0, 200].mean()


def test_occlusion_and_low_light_show_in_the_frames():
    area = {"still": [], "occlusion": []}
    light = {"still": [], "low_light": []}
    for seed in SEEDS:
        for factor in ("still", "occlusion", "low_light"):
            cell = Cell("320x240", factor)
            frames, masks = _render("idle", 2, cell.size, seed, with_mask=True, generation=2,
                                    config=cell.synth_config())
            if factor in area:
                area[factor].append(int((masks[0] > 0).sum()))
            if factor in light:
                light[factor].append(float(frames.mean()))
    # furniture in front of the lower body: clearly less of the person visible (same person per seed)
    assert sum(area["occlusion"]) < 0.85 * sum(area["still"]), area
    assert np.mean(light["low_light"]) < 0.75 * np.mean(light["still"]), light


def _run(argv, capsys):
    code = evaluate.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tiny_checkpoint_runs_through_robustness_deterministically(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    argv = ["--checkpoint", str(ckpt), "--robustness", "--geometries", "48x48,64x36", "--factors", "still,left",
            "--clips-per-cell", "4", "--clip-frames", "8", "--windows", "2", "--no-progress", "--device", "cpu"]
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        code, stdout, err = _run(argv + ["--out", str(out)], capsys)
        assert code == 0, err
        assert "video top-1 by geometry" in stdout and "per class" in stdout and "fall" in stdout
        outs.append(out)
    names = {"robustness.csv", "robustness_clips.csv", "robustness.json", "robustness.png"}
    for out in outs:
        assert {p.name for p in out.iterdir()} == names  # no temporary files left behind
        for name in names:
            assert (os.stat(out / name).st_mode & 0o777) == default_file_mode()
    rows = list(csv.DictReader(open(outs[0] / "robustness.csv")))
    assert [(r["geometry"], r["factor"], r["clips"]) for r in rows] == [
        ("48x48", "still", "4"), ("48x48", "left", "4"), ("64x36", "still", "4"), ("64x36", "left", "4")]
    clips = list(csv.DictReader(open(outs[0] / "robustness_clips.csv")))
    assert len(clips) == 16 and [c["action"] for c in clips[:4]] == ["idle", "wave", "fall", "idle"]
    assert clips[3]["seed"] == str(clip_seed(0, 1)) and all(c["windows"] == "2" for c in clips)
    assert all(int(c["action_windows_right"]) <= min(int(c["action_windows"]), int(c["windows_right"]))
               and 1 <= int(c["action_windows"]) <= 2 for c in clips)  # the busiest window always shows it
    for r in rows:  # the cell accuracy is the share of its clips predicted right
        mine = [c for c in clips if (c["geometry"], c["factor"]) == (r["geometry"], r["factor"])]
        assert float(r["video_top1"]) == pytest.approx(np.mean([c["predicted"] == c["action"] for c in mine]))
    summary = json.loads((outs[0] / "robustness.json").read_text())
    assert summary["clips"] == 16 and summary["seed_base"] == ROBUSTNESS_SEED_BASE and summary["clip_frames"] == 8
    png = cv2.imread(str(outs[0] / "robustness.png"))
    assert png is not None and png.shape[0] > 100
    for name in ("robustness.csv", "robustness_clips.csv"):  # the same numbers from the same matrix
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    cells = [Cell("48x48", "still")]
    probs = np.array([[0.7, 0.3]])
    records = [{"geometry": "48x48", "factor": "still", "label": 0, "seed": 1, "window_probs": probs,
                "probs": probs.mean(0)}]
    summary = robustness.summarise(records, cells, ["idle", "wave"])
    robustness.write_report(summary, records, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("repflow_core.atomic_io.os.replace", refuse)
    records[0]["label"] = 1
    with pytest.raises(OSError, match="disk full"):
        robustness.write_report(robustness.summarise(records, cells, ["idle", "wave"]), records, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("extra,message", [
    (["--clips-per-cell", "0"], "--clips-per-cell must be >= 1"),
    (["--windows", "0"], "--windows must be >= 1"),
    (["--factors", "still,rain"], "unknown factor 'rain'"),
    (["--geometries", "640by480"], "expected WIDTHxHEIGHT"),
    (["--geometries", "8x8"], "sides must be 16-4096 px"),
    (["--geometries", "1000x16"], "aspect <= 8:1"),
    (["--clip-frames", "2"], "shorter than one window"),
])
def test_bad_robustness_options_are_refused_clearly(tmp_path, capsys, extra, message):
    ckpt = make_checkpoint(tmp_path)
    code, _, err = _run(["--checkpoint", str(ckpt), "--robustness", "--geometries", "48x48", "--factors", "still",
                         "--clips-per-cell", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "o")]
                        + extra, capsys)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("argv,message", [
    (["--robustness", "--clips", "3"], "--clips applies to the dataset evaluation"),
    (["--robustness", "--set", "data.root=/x"], "applies to the dataset evaluation"),
    (["--matrix", "full"], "--matrix needs --robustness"),
    (["--robustness", "--bag", "x.db3"], "pick one"),
    (["--robustness", "--matrix", "huge"], "invalid choice"),
])
def test_options_of_the_other_mode_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--checkpoint", str(tmp_path / "x.pt")] + argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_checkpoint_of_other_classes_is_refused(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path, labels=("Basketball", "wave"))
    code, _, err = _run(["--checkpoint", str(ckpt), "--robustness", "--no-progress", "--device", "cpu"], capsys)
    assert code == 2 and "'Basketball'" in err and "synthetic actions" in err
    assert set(ACTIONS) <= set(ALL_ACTIONS)


def test_heat_map_draws_unmeasured_cells_and_refuses_mismatched_shapes(tmp_path):
    from repflow_core import viz

    values = np.array([[0.0, 0.5, float("nan")], [1.0, 0.25, 0.9]])
    img = viz.plot_heatmap(values, ["128x128", "640x360"], ["still", "left", "right"], tmp_path / "h.png",
                           counts=np.array([[2, 2, 0], [2, 4, 2]]), run_name="tiny")
    assert img.ndim == 3 and img.dtype == np.uint8
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / "h.png")), cv2.COLOR_BGR2RGB), img)
    with pytest.raises(ValueError, match="do not match 3 rows"):
        viz.plot_heatmap(values, ["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="counts"):
        viz.plot_heatmap(values, ["a", "b"], ["x", "y", "z"], counts=np.zeros((3, 3)))


def test_clips_move_at_the_speed_the_checkpoint_was_trained_on():
    from repflow_core.robustness import trained_clip_frames

    written = {"config": {"data": {"layout": "splitlist", "clip_len": 16}, "synthetic": {"num_frames": 40}}}
    stream = {"config": {"data": {"layout": "synthetic_stream", "clip_len": 16, "frame_stride": 2},
                         "synthetic": {"num_frames": 40}}}
    assert trained_clip_frames(written) == 40 and trained_clip_frames(stream) == 31  # a stream before clip_frames
    timeline = {"config": {"data": {"layout": "synthetic_stream", "clip_len": 16, "frame_stride": 1},
                           "synthetic": {"num_frames": 40, "clip_frames": 48}}}
    assert trained_clip_frames(timeline) == 48
    assert trained_clip_frames(None) == trained_clip_frames({}) == 40


def test_action_window_accuracy_counts_only_the_windows_that_show_the_action():
    cells = [Cell("48x48", "still")]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])  # right on the first window only
    records = [{"geometry": "48x48", "factor": "still", "label": 0, "seed": 1, "window_probs": probs,
                "probs": probs.mean(0), "action_windows": np.array([True, False, False])}]
    summary = robustness.summarise(records, cells, ["idle", "wave"])
    assert summary["window_top1"] == pytest.approx(1 / 3) and summary["action_window_top1"] == 1.0
    assert summary["cells"][0]["action_windows"] == 1 and summary["action_windows"] == 1


def test_windows_that_miss_a_transition_are_told_apart_from_a_gestures():
    synth = SynthConfig()
    sit = [robustness.action_windows("sit_down", 40, (64, 64), s, synth, 16, 3) for s in range(12)]
    wave = [robustness.action_windows("wave", 40, (64, 64), s, synth, 16, 3) for s in range(12)]
    assert all(w.all() for w in wave)  # a gesture goes on through the clip
    assert not all(w.all() for w in sit) and all(w.any() for w in sit)  # a transition is somewhere, not everywhere
