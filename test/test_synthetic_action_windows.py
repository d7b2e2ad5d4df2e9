"""Windows that show their label: the synthetic stream only takes windows of a clip that hold the action
(synthetic.min_window_motion), chosen from the person's motion before any frame is rendered."""

import numpy as np
import pytest

from repflow_core.config import TrainConfig
from repflow_core.data.synthetic import ACTIONS, SynthConfig, person_motion, render_clip, window_motion
from repflow_core.data.synthetic_stream import stream_datasets

# A still, noiseless, steady camera in a room without moving distractors: frame differences come from the person.
QUIET = {"camera": {"motion": False, "noise": (0.0, 0.0), "flicker_prob": 0.0},
         "scene": {"door_prob": 0.0, "ball_prob": 0.0, "second_person_prob": 0.0}}


def _cfg(min_window_motion: float) -> TrainConfig:
    cfg = TrainConfig()
    cfg.data.layout = "synthetic_stream"
    cfg.data.clip_len, cfg.data.size, cfg.data.resize_short = 8, 32, 36
    cfg.synthetic.geometries = ["64x48"]
    cfg.synthetic.clip_frames = 40
    cfg.synthetic.train_clips, cfg.synthetic.val_clips, cfg.synthetic.test_clips = 200, 10, 10
    cfg.synthetic.min_window_motion = min_window_motion
    return cfg


def _held(ds, index: int) -> float:
    """Share of the clip's busiest-window motion that item ``index``'s window holds."""
    seed, label, size, frames, _ = ds.plan(index)
    m = person_motion(ds.classes[label], ds.clip_frames, size, seed, ds.synth)
    per_start = np.array([m[s : s + ds.span - 1].sum() for s in range(ds.clip_frames - ds.span + 1)])
    return float(per_start[int(frames[0])] / per_start.max())


def test_person_motion_follows_the_rendered_frames():
    cfg = SynthConfig.from_dict(QUIET)
    frames = render_clip("sit_down", 40, (96, 128), 5, config=cfg).astype(np.float32)
    diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    motion = person_motion("sit_down", 40, (96, 128), 5, config=cfg)
    assert motion.shape == (39,) and (motion >= 0).all()
    assert np.corrcoef(motion, diff)[0, 1] > 0.8


def test_window_motion_is_the_motion_between_each_windows_first_and_last_frame():
    motion = person_motion("fall", 40, (64, 64), 3)
    held = window_motion(motion, 16)
    assert held.shape == (40 - 16 + 1,)
    np.testing.assert_allclose(held, [motion[s : s + 15].sum() for s in range(25)], rtol=1e-12, atol=1e-12)


def test_a_reversed_class_moves_as_its_partner_backwards():
    m = person_motion("sit_down", 30, (64, 64), 11)
    assert np.array_equal(person_motion("stand_up", 30, (64, 64), 11), m[::-1])


def test_person_motion_refuses_bad_arguments():
    with pytest.raises(ValueError, match="unknown action"):
        person_motion("juggle", 30, (64, 64), 0)
    with pytest.raises(ValueError, match="size"):
        person_motion("idle", 30, (8, 64), 0)


def test_training_windows_hold_the_action():
    cfg = _cfg(0.25)
    _, train, _, _ = stream_datasets(cfg)
    transitional = [i for i in range(200) if train.classes[i % 10] in ("sit_down", "stand_up", "fall", "pick_up",
                                                                       "put_down")]
    assert min(_held(train, i) for i in transitional) >= 0.25


def test_without_the_rule_some_windows_miss_the_action():
    _, train, _, _ = stream_datasets(_cfg(0.0))
    held = [_held(train, i) for i in range(200) if train.classes[i % 10] in ("sit_down", "fall")]
    assert min(held) < 0.1  # what the rule is for: a window showing breathing only, labelled sit_down / fall


def test_an_evaluation_window_moves_to_the_nearest_start_that_shows_the_action():
    _, _, val, _ = stream_datasets(_cfg(0.25))
    aim = val.eval_starts[0]  # item 0's aimed start
    assert val.window_start(0, None, np.array([aim + 3, aim + 9, aim - 3])) in (aim - 3, aim + 3)
    assert val.window_start(0, None, np.array([0, aim])) == aim
    assert all(_held(val, i) >= 0.25 for i in range(10))


def test_min_window_motion_outside_zero_one_is_refused():
    cfg = _cfg(1.5)
    with pytest.raises(ValueError, match="synthetic.min_window_motion"):
        cfg.validate()


def test_the_window_census_writes_its_table_and_chart(tmp_path, capsys):
    import json

    from repflow_core.experiments import action_windows

    out = tmp_path / "census"
    assert action_windows.main(["--clips-per-class", "4", "--geometry", "64x48", "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())["share_of_windows_below"]
    assert set(table) == set(ACTIONS) and table["walk_right"]["<0.1"] == 0.0
    assert all(table[a]["<0.1"] <= table[a]["<0.25"] <= table[a]["<0.5"] for a in table)
    assert out.with_suffix(".png").stat().st_size > 1000 and "sit_down" in capsys.readouterr().out
