"""Training on video files (UCF101, the robot's own clips, bags turned into folders) follows the same geometry
policy and on-the-fly augmentations as the synthetic stream, so a `crop: full` model is trained, evaluated and
run on the same letterboxed frames."""

import numpy as np
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
from repflow_core.data.dataset import MultiViewDataset, VideoClipDataset
from repflow_core.data.layouts import DataConfig, build_samples
from repflow_core.data.sampling import test_clip_indices, train_clip_indices
from repflow_core.data.transforms import eval_clip, pad_value, random_resized_crop
from repflow_core.data.video_io import read_frames, write_video
from repflow_core.evaluate import evaluate_checkpoint
from repflow_core.model import ActionNet, ModelConfig

CLASSES = ["wave", "idle"]


def _wide_clip(seed, t=12, h=36, w=64):
    """16:9 frames with a bright figure at the left edge: a centre crop cuts it off."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 100, (t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        frames[i, 8:30, 1 + i % 3:9 + i % 3] = (250, 240, 30)
    return frames


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    for k, c in enumerate(CLASSES):
        (root / c).mkdir()
        for j in range(2):
            write_video(root / c / f"{c}{j}.avi", _wide_clip(10 * k + j))
    return root


def _cfg(root, **kw):
    base = dict(layout="folders", root=str(root), clip_len=4, frame_stride=2, size=32, resize_short=40,
                test_clips=2, test_crops=1, hflip=False)
    base.update(kw)
    return DataConfig(**base)


def _is_pad(x: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) uint8 -> (T, H, W) bool: the letterbox colour."""
    return (x == torch.tensor(pad_value(), dtype=torch.uint8).view(3, 1, 1, 1)).all(dim=0)


def test_full_policy_eval_views_are_the_recognizer_preprocessing_of_the_whole_frame(wide_tree):
    cfg = _cfg(wide_tree, crop="full")
    samples, classes = build_samples(cfg, "train")
    views, label, _ = MultiViewDataset(samples, classes, cfg)[0]
    assert views.shape == (2, 3, 4, 32, 32) and label == samples[0].label
    frames = read_frames(samples[0].path, np.arange(12))
    for view, idx in zip(views, test_clip_indices(12, 4, 2, 2, cfg.short_video)):
        assert torch.equal(view, eval_clip(frames[idx], 32, 40, "full"))
    assert _is_pad(views[0])[:, 0].all() and _is_pad(views[0])[:, -1].all()  # 16:9: bars above and below
    assert not _is_pad(views[0])[:, 16].all()
    single, _, _ = VideoClipDataset(samples, classes, cfg, train=False)[0]  # validation view: the same policy
    assert single.shape == (3, 4, 32, 32) and _is_pad(single)[:, 0].all()


def test_full_policy_keeps_the_figure_at_the_edge_that_a_centre_crop_cuts_off(wide_tree):
    yellow = torch.tensor((250, 240, 30), dtype=torch.int16).view(3, 1, 1, 1)

    def has_figure(x):
        return bool(((x.to(torch.int16) - yellow).abs() < 20).all(dim=-4).any())  # dim -4: RGB

    for crop, expected in (("full", True), ("center", False)):
        cfg = _cfg(wide_tree, crop=crop)
        samples, classes = build_samples(cfg, "train")
        views, _, _ = MultiViewDataset(samples, classes, cfg)[0]
        assert has_figure(views) is expected, crop


def test_full_policy_training_items_are_random_letterboxes_with_aspect_jitter(wide_tree):
    cfg = _cfg(wide_tree, crop="full", scale_jitter=(0.6, 1.0), aspect_jitter=(0.8, 1.25))
    samples, classes = build_samples(cfg, "train")
    ds = VideoClipDataset(samples, classes, cfg, train=True)
    content_rows = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        x, _, _ = ds[0]
        assert x.shape == (3, 4, 32, 32)
        pad = _is_pad(x)[0]
        assert pad.any(dim=1).all() or pad.any(dim=0).all()  # some bar on every row or column
        content_rows.add(int((~pad).any(dim=1).sum()))
    assert len(content_rows) > 1  # the scale / aspect draws change the fitted size


def test_centre_policy_without_augmentation_draws_exactly_as_before(wide_tree):
    cfg = _cfg(wide_tree, scale_jitter=(0.7, 1.0))
    samples, classes = build_samples(cfg, "train")
    ds = VideoClipDataset(samples, classes, cfg, train=True)
    x, _, i = ds[1]
    rng = ds.rng(1)
    idx = train_clip_indices(12, 4, 2, rng, cfg.short_video)
    expected = random_resized_crop(read_frames(samples[i].path, idx), 32, cfg.scale_jitter, rng)
    assert torch.equal(x, expected)


def test_photometric_augmentation_applies_to_file_clips_and_keeps_the_geometry(wide_tree):
    plain = _cfg(wide_tree, crop="full")
    jittered = _cfg(wide_tree, crop="full", colour_jitter=0.4, noise_std=8.0)
    samples, classes = build_samples(plain, "train")
    a, _, _ = VideoClipDataset(samples, classes, plain, train=True)[2]
    b, _, _ = VideoClipDataset(samples, classes, jittered, train=True)[2]
    assert not torch.equal(a, b)
    # the same random letterbox: the photometric draws come after the geometry's
    assert (a.float() - b.float()).abs().mean() < 60
    mask_a = _is_pad(a)[0]
    assert mask_a.any()
    assert (b[:, 0][:, mask_a].float().mean(dim=1) - torch.tensor(pad_value()).float()).abs().max() < 60


def test_full_policy_refuses_three_crops_along_the_long_side(wide_tree):
    with pytest.raises(ValueError, match="test_crops"):
        _cfg(wide_tree, crop="full", test_crops=3).validate()


def test_evaluate_uses_the_checkpoints_crop_policy_whatever_the_config_says(wide_tree, tmp_path):
    torch.manual_seed(0)
    mcfg = ModelConfig(width=0.125, num_classes=2, flow_channels=8, iterations=2, flow_after="layer1", dropout=0.0)
    spec = InputSpec(clip_len=4, frame_stride=2, size=(32, 32), resize_short=40, crop="full")
    path = save_checkpoint(Checkpoint(mcfg, CLASSES, spec, ActionNet(mcfg).state_dict()), tmp_path / "full.pt")
    said = []
    cfg = _cfg(wide_tree)  # crop: center in the data config
    metrics = evaluate_checkpoint(path, cfg, clips=1, crops=1, device="cpu",
                                  subset="train", progress=False, write_files=False, log=said.append)
    assert metrics["num_videos"] == 4
    assert any("crop center -> full" in m for m in said), said
