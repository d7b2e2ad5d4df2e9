"""Clip datasets on tiny real videos: item shapes, determinism, loaders and unreadable videos."""

import logging
import shutil

import numpy as np
import pytest
import torch

from repflow_core.data.dataset import (
    INVALID_LABEL,
    MultiViewDataset,
    VideoClipDataset,
    make_dataset,
    make_loader,
    scan_dataset,
)
from repflow_core.data.layouts import DataConfig, DatasetError, build_samples
from repflow_core.data.transforms import hflip
from repflow_core.data.video_io import write_frames, write_video

CLASSES = ["jump", "walk_left", "walk_right"]


def make_clip(seed, t=12, h=32, w=40):
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[:] = rng.integers(0, 120, 3, dtype=np.uint8)
    for i in range(t):
        x = (2 * i + seed) % (w - 8)
        frames[i, 10:18, x:x + 8] = 255
        frames[i, :2, :] = 10 * i  # frame number visible in the top rows
    return frames


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    k = 0
    for c in CLASSES:
        (root / c).mkdir()
        for j in range(2):
            write_video(root / c / f"{c}{j}.avi", make_clip(k))
            k += 1
    write_frames(root / "jump" / "frames0", make_clip(99, t=10))
    return root


def config(root, **kw):
    base = dict(layout="folders", root=str(root), clip_len=4, frame_stride=2, size=16,
                resize_short=20, test_clips=2, test_crops=3, hflip_pairs=[["walk_left", "walk_right"]])
    base.update(kw)
    return DataConfig(**base)


def samples_of(root, cfg):
    return build_samples(cfg, "train")


def test_train_item_shapes(tree):
    cfg = config(tree)
    samples, classes = samples_of(tree, cfg)
    assert classes == CLASSES and len(samples) == 7
    ds = make_dataset(samples, classes, cfg, train=True)
    assert isinstance(ds, VideoClipDataset) and len(ds) == 7
    for i in range(len(ds)):
        x, label, index = ds[i]
        assert x.shape == (3, 4, 16, 16) and x.dtype == torch.uint8
        assert index == i and 0 <= label < 3
        if samples[i].label == 0:
            assert label == 0  # jump is never relabelled


def test_eval_single_and_multi_view(tree):
    cfg = config(tree)
    samples, classes = samples_of(tree, cfg)
    single = VideoClipDataset(samples, classes, cfg, train=False)
    x, label, index = single[2]
    assert x.shape == (3, 4, 16, 16) and label == samples[2].label and index == 2
    assert torch.equal(single[2][0], x)  # deterministic
    mv = make_dataset(samples, classes, cfg, train=False)
    assert isinstance(mv, MultiViewDataset) and mv.num_views == 6
    v, label, index = mv[2]
    assert v.shape == (6, 3, 4, 16, 16) and v.dtype == torch.uint8 and label == samples[2].label
    assert not torch.equal(v[0], v[2])  # left vs right crop
    assert not torch.equal(v[1], v[4])  # clip 0 vs clip 1 (centre crops)
    # one clip, one crop == the single centre view
    mv1 = MultiViewDataset(samples, classes, config(tree, test_clips=1, test_crops=1))
    assert torch.equal(mv1[2][0][0], x)
    # frame folders work too
    fi = next(i for i, s in enumerate(samples) if s.path.name == "frames0")
    assert mv[fi][0].shape == (6, 3, 4, 16, 16)


def test_determinism_per_seed_epoch_index(tree):
    cfg = config(tree)
    samples, classes = samples_of(tree, cfg)
    a = VideoClipDataset(samples, classes, cfg, train=True, seed=5)
    b = VideoClipDataset(samples, classes, cfg, train=True, seed=5)
    first = [a[i] for i in range(len(a))]
    for i in reversed(range(len(b))):  # order does not matter
        x, label, _ = b[i]
        assert torch.equal(x, first[i][0]) and label == first[i][1]
    a.set_epoch(1)
    assert a.epoch == 1
    assert any(not torch.equal(a[i][0], first[i][0]) for i in range(len(a)))
    a.set_epoch(0)
    assert all(torch.equal(a[i][0], first[i][0]) for i in range(len(a)))
    c = VideoClipDataset(samples, classes, cfg, train=True, seed=6)
    assert any(not torch.equal(c[i][0], first[i][0]) for i in range(len(c)))


def test_loader_with_worker_follows_set_epoch(tree):
    cfg = config(tree)
    samples, classes = samples_of(tree, cfg)
    ds = VideoClipDataset(samples, classes, cfg, train=True, seed=1)
    loader = make_loader(ds, batch_size=3, shuffle=True, num_workers=1, seed=0,
                         persistent_workers=True, drop_last=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == 2
        x, labels, idx = batches[0]
        assert x.shape == (3, 3, 4, 16, 16) and x.dtype == torch.uint8
        assert labels.dtype == torch.int64 and idx.dtype == torch.int64
        for k in range(3):  # the worker saw the same epoch as this process
            ref, ref_label, _ = ds[int(idx[k])]
            assert torch.equal(x[k], ref) and int(labels[k]) == ref_label


def test_flip_swaps_left_right_labels(tmp_path):
    for c in CLASSES:
        (tmp_path / c).mkdir()
        write_frames(tmp_path / c / "v", make_clip(3, t=4, h=16, w=16))
    cfg = config(tmp_path, frame_stride=1, scale_jitter=(1.0, 1.0), size=16)
    samples, classes = build_samples(cfg, "train")
    ds = VideoClipDataset(samples, classes, cfg, train=True)
    seen = set()
    plain = None
    for epoch in range(16):
        ds.set_epoch(epoch)
        x, label, _ = ds[1]  # the walk_left video
        seen.add(label)
        if label == 1:
            plain = x
    assert seen == {1, 2}
    for epoch in range(16):
        ds.set_epoch(epoch)
        x, label, _ = ds[1]
        if label == 2:
            assert torch.equal(x, hflip(plain))


def test_short_video_in_dataset(tmp_path):
    (tmp_path / "a").mkdir()
    write_video(tmp_path / "a" / "short.avi", make_clip(0, t=3))
    cfg = config(tmp_path, clip_len=8, frame_stride=1, hflip_pairs=[])
    samples, classes = build_samples(cfg, "train")
    assert VideoClipDataset(samples, classes, cfg, train=True)[0][0].shape == (3, 8, 16, 16)
    assert MultiViewDataset(samples, classes, cfg)[0][0].shape == (6, 3, 8, 16, 16)


@pytest.fixture
def damaged(tree, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(tree, root)
    (root / "jump" / "garbage.avi").write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    write_video(root / "jump" / "cut.mp4", make_clip(5))
    data = (root / "jump" / "cut.mp4").read_bytes()
    (root / "jump" / "cut.mp4").write_bytes(data[: len(data) // 2])
    noisy = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    write_video(root / "walk_left" / "half.avi", noisy)
    data = (root / "walk_left" / "half.avi").read_bytes()
    (root / "walk_left" / "half.avi").write_bytes(data[: len(data) // 3])
    return root


def test_scan_dataset_skips_and_counts_unreadable(damaged):
    cfg = config(damaged)
    samples, classes = build_samples(cfg, "train")
    assert len(samples) == 10
    ds = VideoClipDataset(samples, classes, cfg, train=True)
    res = scan_dataset(ds, progress=False)
    assert res.total == 10 and len(res.samples) == 8 and len(res.bad) == 2
    assert res.summary.startswith("skipped 2 of 10 unreadable videos")
    assert "garbage.avi" in res.summary and "cut.mp4" in res.summary
    assert len(ds) == 8 and {p.name for p in ds.bad_videos} == {"garbage.avi", "cut.mp4"}
    good, summary = scan_dataset(samples, progress=False, verify=True)  # full decode
    assert len(good) == 7 and "half.avi" in summary and "skipped 3 of 10" in summary
    # the scanned dataset serves every item from a readable video
    for i in range(len(ds)):
        assert ds[i][0].shape == (3, 4, 16, 16)


def test_runtime_failure_substitutes_in_train_and_marks_invalid_in_test(damaged, caplog, tmp_path):
    cfg = config(damaged)
    samples, classes = build_samples(cfg, "train")
    bad_i = next(i for i, s in enumerate(samples) if s.path.name == "garbage.avi")
    log_file = tmp_path / "bad.txt"
    ds = VideoClipDataset(samples, classes, cfg, train=True, bad_log=log_file)
    with caplog.at_level(logging.WARNING):
        x, label, index = ds[bad_i]
        x2, label2, index2 = ds[bad_i]
        ds.set_epoch(3)
        ds[bad_i]
    assert index != bad_i and samples[index].path.name != "garbage.avi"
    assert torch.equal(x, x2) and (label, index) == (label2, index2)  # deterministic substitute
    assert x.shape == (3, 4, 16, 16)
    assert caplog.text.count("garbage.avi") == 1  # reported once
    assert "garbage.avi" in log_file.read_text()

    # another instance (think: another worker process) sharing the log does not report it again
    caplog.clear()
    mv = MultiViewDataset(samples, classes, cfg, bad_log=log_file)
    with caplog.at_level(logging.WARNING):
        v, label, index = mv[bad_i]
    assert "garbage.avi" not in caplog.text
    assert label == INVALID_LABEL and index == bad_i
    assert v.shape == (6, 3, 4, 16, 16) and not v.any()
    assert any(p.name == "garbage.avi" for p in mv.bad_videos)
    # invalid items collate with the good ones
    good_i = next(i for i, s in enumerate(samples) if s.path.name == "walk_right0.avi")
    batch = next(iter(make_loader(torch.utils.data.Subset(mv, [bad_i, good_i]), batch_size=2)))
    assert batch[0].shape == (2, 6, 3, 4, 16, 16)
    assert batch[1].tolist() == [INVALID_LABEL, 2]


def test_all_unreadable_scan_raises(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.avi").write_bytes(b"nope")
    cfg = config(tmp_path, hflip_pairs=[])
    samples, classes = build_samples(cfg, "train")
    with pytest.raises(DatasetError, match="unreadable"):
        scan_dataset(VideoClipDataset(samples, classes, cfg), progress=False)
    with pytest.raises(DatasetError):
        VideoClipDataset([], classes, cfg)
