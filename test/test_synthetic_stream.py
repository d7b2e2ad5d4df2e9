"""On-the-fly synthetic data (data.layout: synthetic_stream): deterministic per (seed, epoch, index), new clips
each epoch, fixed evaluation seeds disjoint from training's, usable with DataLoader workers."""

import numpy as np
import pytest
import torch

from repflow_core.config import TrainConfig
from repflow_core.data.dataset import make_loader
from repflow_core.data.layouts import DatasetError, build_samples
from repflow_core.data.synthetic_stream import SPLIT_CODES, parse_geometry, render_seed, stream_datasets
from repflow_core.data.transforms import eval_clip


def _cfg(**data):
    cfg = TrainConfig()
    cfg.data.layout = "synthetic_stream"
    cfg.data.clip_len, cfg.data.size, cfg.data.resize_short = 6, 32, 36
    for k, v in data.items():
        setattr(cfg.data, k, v)
    cfg.synthetic.geometries = ["48x32", "32x48", "40x40"]
    cfg.synthetic.train_clips, cfg.synthetic.val_clips, cfg.synthetic.test_clips = 12, 6, 6
    return cfg


def test_items_are_deterministic_and_change_with_the_epoch():
    cfg = _cfg(crop="full", aspect_jitter=(0.8, 1.25), colour_jitter=0.3, blur_prob=0.5, noise_std=5.0,
               jpeg_prob=0.5)
    classes, train, val, test = stream_datasets(cfg)
    x, y, i = train[3]
    assert x.shape == (3, 6, 32, 32) and x.dtype == torch.uint8 and i == 3 and 0 <= y < len(classes)
    assert torch.equal(train[3][0], x)
    train.set_epoch(1)
    assert not torch.equal(train[3][0], x)
    train.set_epoch(0)
    assert torch.equal(train[3][0], x)
    v = val[2][0]
    val.set_epoch(5)  # evaluation sets are fixed whatever the epoch
    assert torch.equal(val[2][0], v)
    assert sorted(val.labels) == sorted(list(range(6)))  # balanced: item i has class i mod K


def test_split_seeds_are_disjoint_by_construction():
    seeds = {split: {render_seed(0, split, e, i) for e in range(3) for i in range(200)} for split in SPLIT_CODES}
    for split, s in seeds.items():
        assert {v & 3 for v in s} == {SPLIT_CODES[split]}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["train"] & seeds["test"])
    assert not (seeds["val"] & seeds["test"])


def test_evaluation_items_are_exactly_the_recognizer_preprocessing():
    cfg = _cfg(crop="full")
    _, _, val, _ = stream_datasets(cfg)
    for index in range(4):
        raw, label, _ = val.render(index)
        x, y, _ = val[index]
        assert y == label
        assert torch.equal(x, eval_clip(raw, 32, 36, "full"))
    # evaluation cycles through the geometries: item i uses geometry (i // K) mod G
    assert val.geometry(0, None) == (32, 48) and val.geometry(len(val.classes), None) == (48, 32)


def test_dataloader_workers_see_the_epoch():
    cfg = _cfg()
    _, train, _, _ = stream_datasets(cfg)
    direct = [train[i][0] for i in range(4)]
    loader = make_loader(train, 2, sampler=list(range(4)), num_workers=2, seed=0, persistent_workers=True)
    batches = torch.cat([b[0] for b in loader])
    assert all(torch.equal(batches[i], direct[i]) for i in range(4))
    train.set_epoch(2)
    again = torch.cat([b[0] for b in loader])
    assert not torch.equal(again, batches)
    assert torch.equal(again[1], train[1][0])


def test_geometry_parsing_and_config_errors_name_the_culprit():
    assert parse_geometry("640x360") == (360, 640)
    for bad in ("640", "axb", "8x8", "2000x100"):
        with pytest.raises(ValueError, match=bad):
            parse_geometry(bad)
    cfg = TrainConfig()
    cfg.synthetic.geometries = ["640x480", "oops"]
    with pytest.raises(ValueError, match="oops"):
        cfg.synthetic.validate()
    cfg.data.layout = "synthetic_stream"
    with pytest.raises(DatasetError, match="synthetic_stream"):
        build_samples(cfg.data, "train")


def test_render_scale_keeps_the_look_of_the_full_size_clip():
    """A 640x480 clip rendered at half scale (320x240) and letterboxed to the input looks like the full render
    (same seed), much closer than another seed does."""
    from repflow_core.data.synthetic import render_clip

    a = render_clip("wave", 4, (480, 640), 7)
    b = render_clip("wave", 4, (240, 320), 7)
    c = render_clip("wave", 4, (480, 640), 8)
    pa, pb, pc = (eval_clip(x, 112, 128, "full").float() for x in (a, b, c))
    assert (pa - pb).abs().mean() < 0.5 * (pa - pc).abs().mean()
    assert np.isfinite(float((pa - pb).abs().mean()))


# -- the action timeline and its windows (issue 9: actions at the speed the node sees them) --------------------


def test_an_item_is_a_window_of_the_full_clip_timeline():
    """The window's frames are byte-identical to those frames of the synthetic.clip_frames clip (camera motion
    on), for training and evaluation items, with a frame stride too."""
    from repflow_core.data.synthetic import render_clip

    cfg = _cfg(frame_stride=2)
    cfg.synthetic.clip_frames = 24
    cfg.synthetic.generator = {"camera": {"motion": True, "motion_prob": 1.0}}
    _, train, val, _ = stream_datasets(cfg)
    for ds, index in ((train, 0), (train, 5), (val, 3), (val, 8)):
        seed, label, size, frames, _ = ds.plan(index)
        assert len(frames) == 6 and np.all(np.diff(frames) == 2) and 0 <= frames[0] and frames[-1] < 24
        raw, y, _ = ds.render(index)
        full = render_clip(ds.classes[label], 24, size, seed, config=ds.synth)
        assert y == label and np.array_equal(raw, full[frames]), (ds.split, index)


def test_training_windows_move_over_the_timeline_and_are_deterministic():
    cfg = _cfg()
    cfg.synthetic.clip_frames = 40
    _, train, _, _ = stream_datasets(cfg)
    starts = {}
    for epoch in range(3):
        train.set_epoch(epoch)
        starts[epoch] = [int(train.plan(i)[3][0]) for i in range(12)]
    assert all(0 <= s <= 40 - 6 for ss in starts.values() for s in ss)
    assert len(set(starts[0])) >= 5  # varies across items...
    assert starts[0] != starts[1] != starts[2]  # ...and across epochs
    _, again, _, _ = stream_datasets(cfg)  # another process / run: the same windows for (seed, epoch, index)
    again.set_epoch(1)
    assert [int(again.plan(i)[3][0]) for i in range(12)] == starts[1]
    train.set_epoch(1)
    assert torch.equal(train[4][0], again[4][0])


def test_evaluation_windows_are_fixed_and_spread_like_the_test_views():
    cfg = _cfg(test_clips=3)
    cfg.synthetic.val_clips, cfg.synthetic.clip_frames = 90, 30
    cfg.synthetic.min_window_motion = 0.0  # every start allowed: the aimed starts themselves
    _, _, val, test = stream_datasets(cfg)
    # the file datasets' 3 test views of a 30-frame video, windows of 6: starts 4, 12, 20
    assert val.eval_starts == [4, 12, 20]
    first = [int(val.plan(i)[3][0]) for i in range(90)]
    val.set_epoch(7)
    assert [int(val.plan(i)[3][0]) for i in range(90)] == first
    assert [int(test.plan(i)[3][0]) for i in range(6)] == first[:6]
    k, g = len(val.classes), len(val.geometries)
    pairs = {(val.geometry(i, None), first[i]) for i in range(0, g * 3 * k, k)}
    assert len(pairs) == g * 3  # every (geometry, start) pair within G x V blocks of K classes
    assert all(first[i] == first[i - i % k] for i in range(90))  # a block of K classes shares its window


def test_clip_frames_shorter_than_the_window_is_refused_naming_the_keys():
    from repflow_core.config import apply_overrides
    from repflow_core.config_io import ConfigError

    cfg = _cfg(frame_stride=2)  # 6 frames every 2: an 11-frame window
    cfg.synthetic.clip_frames = 10
    with pytest.raises(ValueError, match=r"synthetic.clip_frames 10 .*data.clip_len 6 .*data.frame_stride 2 "
                                         r"\(11 frames\)"):
        stream_datasets(cfg)
    with pytest.raises(ValueError, match="synthetic.clip_frames"):
        cfg.validate()
    cfg.synthetic.clip_frames = 11
    cfg.validate()
    assert len(stream_datasets(cfg)[1].plan(0)[3]) == 6
    with pytest.raises(ConfigError, match="synthetic.clip_frames 11 .*data.clip_len 7"):
        apply_overrides(cfg, ["data.clip_len=7"])
    file_cfg = TrainConfig()  # the check only concerns the stream
    file_cfg.synthetic.clip_frames = 4
    file_cfg.validate()
    with pytest.raises(ConfigError, match="clip_frames"):
        apply_overrides(TrainConfig(), ["synthetic.clip_frames=0"])


def test_the_stream_trains(tmp_path):
    """One tiny epoch through train(): windows of 20-frame timelines, validation and the final test."""
    from repflow_core.checkpoint import load_checkpoint_dict
    from repflow_core.train import train

    cfg = _cfg()
    cfg.synthetic.clip_frames = 20
    cfg.synthetic.train_clips, cfg.synthetic.val_clips, cfg.synthetic.test_clips = 10, 10, 10
    cfg.model.backbone, cfg.model.width, cfg.model.flow_after = "resnet18", 0.125, "layer1"
    cfg.model.flow_channels, cfg.model.iterations = 8, 2
    cfg.data.num_workers, cfg.data.test_clips = 0, 2
    cfg.epochs, cfg.batch_size, cfg.device, cfg.tensorboard = 1, 5, "cpu", False
    cfg.out_dir = str(tmp_path / "run")
    result = train(cfg, progress=False)
    row = result.history[-1]
    assert np.isfinite(row["train_loss"]) and row["val_acc"] is not None
    saved = load_checkpoint_dict(result.run_dir / "best.pt")["training"]
    assert saved["config"]["synthetic"]["clip_frames"] == 20 and saved["test_videos"] == 10
