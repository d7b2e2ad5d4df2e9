"""Tests for repflow_core.backbones: shapes, the stage interface, torchvision naming, weight loading.

Full-width models are only ever built on the "meta" device (no memory, no init cost); anything that
runs a forward pass uses width 0.25 or less and tiny inputs so the file stays fast on a 2-core CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from repflow_core.backbones import (
    BACKBONES,
    LoadReport,
    StagedBackbone,
    build_backbone,
    load_backbone_weights,
    r2plus1d_18,
    r3d_18,
    resnet18,
    resnet34,
    resnet50,
    scaled_channels,
)

SMALL_WIDTH = 0.25
FRAME_INPUT = (2, 3, 64, 64)
CLIP_INPUT = (1, 3, 8, 32, 32)

# Documented in torchvision's weight metadata ("num_params") for ResNet18/34/50_Weights.IMAGENET1K_V1 and
# R2Plus1D_18_Weights.KINETICS400_V1.
TORCHVISION_NUM_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "r2plus1d_18": 31_505_325,
    "r3d_18": 33_371_472,  # R3D_18_Weights.KINETICS400_V1
}

TORCHVISION_KEYS = {
    "resnet18": [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.conv2.weight",
        "layer1.0.bn2.bias",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "layer4.1.bn2.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ],
    "resnet34": ["layer3.5.conv2.weight", "layer4.2.bn2.running_var", "layer2.0.downsample.0.weight"],
    "resnet50": [
        "layer1.0.conv3.weight",
        "layer1.0.bn3.running_mean",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "fc.weight",
    ],
    "r2plus1d_18": [
        "stem.0.weight",
        "stem.1.running_mean",
        "stem.3.weight",
        "stem.4.num_batches_tracked",
        "layer1.0.conv1.0.0.weight",
        "layer1.0.conv1.0.1.running_var",
        "layer1.0.conv1.0.3.weight",
        "layer1.0.conv1.1.weight",
        "layer1.0.conv2.0.0.weight",
        "layer1.0.conv2.1.bias",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
        "fc.weight",
        "fc.bias",
    ],
}


# torchvision/models/video/resnet.py: r3d_18 = VideoResNet(BasicBlock, [Conv3DSimple] * 4, [2, 2, 2, 2], BasicStem).
# Every 3D convolution (Conv3DSimple is an nn.Conv3d, so no extra index), with its shape at 400 classes:
R3D_18_CONVS = [
    ('stem.0.weight', (64, 3, 3, 7, 7)),
    ('layer1.0.conv1.0.weight', (64, 64, 3, 3, 3)),
    ('layer1.0.conv2.0.weight', (64, 64, 3, 3, 3)),
    ('layer1.1.conv1.0.weight', (64, 64, 3, 3, 3)),
    ('layer1.1.conv2.0.weight', (64, 64, 3, 3, 3)),
    ('layer2.0.conv1.0.weight', (128, 64, 3, 3, 3)),
    ('layer2.0.conv2.0.weight', (128, 128, 3, 3, 3)),
    ('layer2.0.downsample.0.weight', (128, 64, 1, 1, 1)),
    ('layer2.1.conv1.0.weight', (128, 128, 3, 3, 3)),
    ('layer2.1.conv2.0.weight', (128, 128, 3, 3, 3)),
    ('layer3.0.conv1.0.weight', (256, 128, 3, 3, 3)),
    ('layer3.0.conv2.0.weight', (256, 256, 3, 3, 3)),
    ('layer3.0.downsample.0.weight', (256, 128, 1, 1, 1)),
    ('layer3.1.conv1.0.weight', (256, 256, 3, 3, 3)),
    ('layer3.1.conv2.0.weight', (256, 256, 3, 3, 3)),
    ('layer4.0.conv1.0.weight', (512, 256, 3, 3, 3)),
    ('layer4.0.conv2.0.weight', (512, 512, 3, 3, 3)),
    ('layer4.0.downsample.0.weight', (512, 256, 1, 1, 1)),
    ('layer4.1.conv1.0.weight', (512, 512, 3, 3, 3)),
    ('layer4.1.conv2.0.weight', (512, 512, 3, 3, 3)),
]
# Every BatchNorm3d (weight, bias, running_mean, running_var, num_batches_tracked):
R3D_18_BATCHNORMS = [
    'stem.1',
    'layer1.0.conv1.1',
    'layer1.0.conv2.1',
    'layer1.1.conv1.1',
    'layer1.1.conv2.1',
    'layer2.0.conv1.1',
    'layer2.0.conv2.1',
    'layer2.0.downsample.1',
    'layer2.1.conv1.1',
    'layer2.1.conv2.1',
    'layer3.0.conv1.1',
    'layer3.0.conv2.1',
    'layer3.0.downsample.1',
    'layer3.1.conv1.1',
    'layer3.1.conv2.1',
    'layer4.0.conv1.1',
    'layer4.0.conv2.1',
    'layer4.0.downsample.1',
    'layer4.1.conv1.1',
    'layer4.1.conv2.1',
]


def _meta_model(name: str, width: float = 1.0) -> StagedBackbone:
    """Build on the meta device: full-width models without allocating or initialising weights."""
    with torch.device("meta"):
        return build_backbone(name, width=width)


def _small_model(name: str, seed: int = 0, num_classes: int = 10) -> StagedBackbone:
    torch.manual_seed(seed)
    return build_backbone(name, width=SMALL_WIDTH, num_classes=num_classes).eval()


def _input_for(model: StagedBackbone, seed: int = 123) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(CLIP_INPUT if model.is_video else FRAME_INPUT, generator=generator)


def _mark_exploited() -> None:
    _EXPLOITED.append(True)


_EXPLOITED: list[bool] = []


class _CodeRunningPayload:
    """Unpickling this would call _mark_exploited: a stand-in for a malicious checkpoint."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_mark_exploited, ())


# ------------------------------------------------------------------------------------------------
# Shapes and the stage interface
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", [resnet18, resnet34, resnet50])
def test_2d_builders_give_logits_per_frame(builder) -> None:
    model = builder(width=SMALL_WIDTH, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(FRAME_INPUT))
    assert out.shape == (FRAME_INPUT[0], 7)
    assert model.is_video is False


def test_r2plus1d_18_gives_logits_per_clip() -> None:
    model = r2plus1d_18(width=SMALL_WIDTH, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(CLIP_INPUT))
    assert out.shape == (CLIP_INPUT[0], 5)
    assert model.is_video is True


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stage_channels_match_forward_stage_outputs(name: str) -> None:
    model = _small_model(name)
    x = _input_for(model)
    assert model.stage_names == ("stem", "layer1", "layer2", "layer3", "layer4")
    with torch.no_grad():
        for stage in model.stage_names:
            x = model.forward_stage(stage, x)
            assert x.dim() == model.input_ndim
            assert x.shape[1] == model.stage_channels[stage], stage
    assert model.feature_dim == model.stage_channels["layer4"] == model.fc.in_features


def test_2d_stages_downsample_by_4_then_2_each() -> None:
    model = _small_model("resnet18")
    x = _input_for(model)
    sizes = []
    with torch.no_grad():
        for stage in model.stage_names:
            x = model.forward_stage(stage, x)
            sizes.append(x.shape[-1])
    assert sizes == [16, 16, 8, 4, 2]


def test_r2plus1d_stages_halve_time_from_layer2_on() -> None:
    model = _small_model("r2plus1d_18")
    x = _input_for(model)
    shapes = []
    with torch.no_grad():
        for stage in model.stage_names:
            x = model.forward_stage(stage, x)
            shapes.append(tuple(x.shape[2:]))
    assert shapes == [(8, 16, 16), (8, 16, 16), (4, 8, 8), (2, 4, 4), (1, 2, 2)]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_forward_is_fc_of_pooled_features(name: str) -> None:
    model = _small_model(name)
    x = _input_for(model)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (x.shape[0], model.feature_dim)
    torch.testing.assert_close(logits, model.fc(features))


def test_forward_stage_rejects_unknown_stage_name() -> None:
    model = _small_model("resnet18")
    with pytest.raises(ValueError, match="layer5.*stem, layer1, layer2, layer3, layer4"):
        model.forward_stage("layer5", torch.randn(FRAME_INPUT))


@pytest.mark.parametrize(("name", "shape"), [("resnet18", CLIP_INPUT), ("r2plus1d_18", FRAME_INPUT)])
def test_input_of_wrong_rank_is_rejected(name: str, shape: tuple[int, ...]) -> None:
    model = _small_model(name)
    with pytest.raises(ValueError, match="expects a"):
        model(torch.randn(shape))


# ------------------------------------------------------------------------------------------------
# Width multiplier
# ------------------------------------------------------------------------------------------------


def test_width_scales_channels_with_floor_of_8() -> None:
    assert scaled_channels(64, 1.0) == 64
    assert scaled_channels(45, 0.5) == 22
    assert scaled_channels(64, 0.25) == 16
    assert scaled_channels(64, 0.01) == 8
    model = _meta_model("resnet50", width=0.01)
    assert all(c >= 8 for c in model.stage_channels.values())


def test_width_scales_r2plus1d_stem_and_midplanes() -> None:
    state = _meta_model("r2plus1d_18", width=0.5).state_dict()
    assert state["stem.0.weight"].shape[0] == 22  # round(45 * 0.5)
    # midplanes from the scaled widths: (32 * 32 * 27) // (32 * 9 + 3 * 32) == 72
    assert state["layer1.0.conv1.0.0.weight"].shape[:2] == (72, 32)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_width_keeps_key_names(name: str) -> None:
    full = _meta_model(name).state_dict().keys()
    narrow = _meta_model(name, width=SMALL_WIDTH).state_dict().keys()
    assert list(full) == list(narrow)


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), float("inf")])
def test_invalid_width_is_rejected(width: float) -> None:
    with pytest.raises(ValueError, match="width"):
        resnet18(width=width)


# ------------------------------------------------------------------------------------------------
# torchvision compatibility at width 1
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_torchvision_key_names_present(name: str) -> None:
    keys = set(_meta_model(name).state_dict())
    missing = [k for k in TORCHVISION_KEYS[name] if k not in keys]
    assert not missing


@pytest.mark.parametrize("name", sorted(TORCHVISION_NUM_PARAMS))
def test_parameter_count_equals_torchvision(name: str) -> None:
    model = _meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NUM_PARAMS[name]


def test_r2plus1d_shapes_follow_torchvision_midplanes() -> None:
    state = _meta_model("r2plus1d_18").state_dict()
    assert state["stem.0.weight"].shape == (45, 3, 1, 7, 7)
    assert state["stem.3.weight"].shape == (64, 45, 3, 1, 1)
    assert state["layer1.0.conv1.0.0.weight"].shape == (144, 64, 1, 3, 3)
    # The first block of a stage uses midplanes from its input width for both convolutions.
    assert state["layer2.0.conv1.0.0.weight"].shape == (230, 64, 1, 3, 3)
    assert state["layer2.0.conv2.0.0.weight"].shape == (230, 128, 1, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)


def test_default_class_counts_match_torchvision() -> None:
    assert _meta_model("resnet18").fc.out_features == 1000
    assert _meta_model("r2plus1d_18").fc.out_features == 400


def test_init_follows_torchvision() -> None:
    torch.manual_seed(0)
    model = r2plus1d_18(width=SMALL_WIDTH)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    conv = model.layer3[0].conv1[0][0]  # kaiming_normal_(mode="fan_out"): std = sqrt(2 / fan_out)
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)
    assert torch.all(model.fc.bias == 0)


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_build_backbone_builds_named_architecture(name: str) -> None:
    model = build_backbone(name, width=SMALL_WIDTH, num_classes=3)
    assert isinstance(model, StagedBackbone)
    assert model.fc.out_features == 3
    assert model.is_video == (name in ("r2plus1d_18", "r3d_18"))


def test_build_backbone_unknown_name_lists_valid_choices() -> None:
    with pytest.raises(ValueError, match="resnet99") as info:
        build_backbone("resnet99")
    for name in BACKBONES:
        assert name in str(info.value)


# ------------------------------------------------------------------------------------------------
# load_backbone_weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "r2plus1d_18"])
def test_round_trip_restores_identical_outputs(name: str, tmp_path: Path) -> None:
    source = _small_model(name, seed=1)
    # Non-default BN statistics, so the buffers are checked too.
    for m in source.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    target = _small_model(name, seed=2)
    x = _input_for(source)
    with torch.no_grad():
        assert not torch.allclose(source(x), target(x))
        report = load_backbone_weights(target, path)
        assert report == LoadReport()
        assert report.loaded_all
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_fc_of_other_class_count_is_mismatched_and_rest_loads(tmp_path: Path) -> None:
    source = _small_model("resnet18", seed=1, num_classes=10)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    target = _small_model("resnet18", seed=2, num_classes=4)
    fc_before = target.fc.weight.clone()
    report = load_backbone_weights(target, path)

    assert sorted(report.mismatched) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == []
    assert not report.loaded_all
    torch.testing.assert_close(target.fc.weight, fc_before)
    x = _input_for(target)
    with torch.no_grad():
        torch.testing.assert_close(target.forward_features(x), source.forward_features(x))


def test_mismatch_raises_when_skipping_is_disabled(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_small_model("resnet18", num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match=r"fc\.weight"):
        load_backbone_weights(_small_model("resnet18", num_classes=4), path, skip_mismatched_fc=False)


def test_width_mismatch_is_reported_and_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "weights.pt"
    torch.save(build_backbone("resnet18", width=0.125, num_classes=10).state_dict(), path)
    target = _small_model("resnet18")
    with caplog.at_level(logging.WARNING, logger="repflow_core.backbones"):
        report = load_backbone_weights(target, path)
    assert "conv1.weight" in report.mismatched
    assert "shape differs" in caplog.text


def test_ddp_module_prefix_is_stripped(tmp_path: Path) -> None:
    source = _small_model("resnet18", seed=1)
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    target = _small_model("resnet18", seed=2)
    report = load_backbone_weights(target, path)
    assert report.loaded_all and report.unexpected == []
    torch.testing.assert_close(target.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize("container_key", ["state_dict", "model"])
def test_state_dict_nested_in_checkpoint_dict_loads(container_key: str, tmp_path: Path) -> None:
    source = _small_model("resnet18", seed=1)
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "best_acc": 0.5, container_key: source.state_dict()}, path)
    target = _small_model("resnet18", seed=2)
    report = load_backbone_weights(target, path)
    assert report.loaded_all and report.unexpected == []
    torch.testing.assert_close(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_prefix_targets_backbone_inside_host_model(tmp_path: Path) -> None:
    source = _small_model("resnet18", seed=1)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    host = nn.Module()
    host.backbone = build_backbone("resnet18", width=SMALL_WIDTH, num_classes=10)
    host.head = nn.Linear(4, 2)
    head_before = host.head.weight.clone()

    report = load_backbone_weights(host, path, prefix="backbone.")
    assert report == LoadReport()
    torch.testing.assert_close(host.backbone.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(host.head.weight, head_before)


def test_partial_file_reports_missing_and_unexpected(tmp_path: Path) -> None:
    state = _small_model("resnet18", seed=1).state_dict()
    del state["layer4.1.conv2.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    report = load_backbone_weights(_small_model("resnet18", seed=2), path)
    assert report.missing == ["layer4.1.conv2.weight"]
    assert report.unexpected == ["extra.weight"]
    assert report.mismatched == []


def test_missing_num_batches_tracked_is_not_reported(tmp_path: Path) -> None:
    # Older torchvision checkpoints predate BatchNorm's num_batches_tracked buffer.
    state = {k: v for k, v in _small_model("resnet18").state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    assert load_backbone_weights(_small_model("resnet18", seed=2), path).missing == []


def test_missing_file_raises_file_not_found_with_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_backbone_weights(_small_model("resnet18"), path)


def test_file_without_tensors_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    torch.save({"epoch": 3, "note": "no weights here"}, path)
    with pytest.raises(ValueError, match="no tensors"):
        load_backbone_weights(_small_model("resnet18"), path)


def test_code_running_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hostile.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _CodeRunningPayload()}, path)
    _EXPLOITED.clear()
    with pytest.raises(ValueError, match="weights_only=True") as info:
        load_backbone_weights(_small_model("resnet18"), path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None  # torch's own explanation stays attached
    assert _EXPLOITED == []


def test_non_checkpoint_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_backbone_weights(_small_model("resnet18"), path)


# ------------------------------------------------------------------------------------------------
# r3d_18 (the paper's Table 6 backbone)
# ------------------------------------------------------------------------------------------------


def test_r3d_18_state_dict_is_torchvisions_key_for_key() -> None:
    state = _meta_model("r3d_18").state_dict()
    bn_fields = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {key for key, _ in R3D_18_CONVS} | {"fc.weight", "fc.bias"}
    expected |= {f"{bn}.{field}" for bn in R3D_18_BATCHNORMS for field in bn_fields}
    assert set(state) == expected
    for key, shape in R3D_18_CONVS:
        assert tuple(state[key].shape) == shape, key
    for bn in R3D_18_BATCHNORMS:  # each BN follows the conv at index 0 of the same Sequential
        assert state[f"{bn}.weight"].shape == (state[bn[:-1] + "0.weight"].shape[0],), bn
    assert state["fc.weight"].shape == (400, 512)


def test_r3d_18_uses_full_3d_convolutions_and_halves_time_from_layer2_on() -> None:
    model = _small_model("r3d_18")
    assert isinstance(model.layer1[0].conv1[0], nn.Conv3d) and model.layer1[0].conv1[0].kernel_size == (3, 3, 3)
    x = _input_for(model)
    shapes = []
    with torch.no_grad():
        for stage in model.stage_names:
            x = model.forward_stage(stage, x)
            shapes.append(tuple(x.shape[2:]))
    assert shapes == [(8, 16, 16), (8, 16, 16), (4, 8, 8), (2, 4, 4), (1, 2, 2)]
    assert r3d_18(width=SMALL_WIDTH, num_classes=5).eval()(torch.randn(CLIP_INPUT)).shape == (1, 5)
