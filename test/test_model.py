"""ActionNet: flow block placement, per-frame logits averaged over time, training, torchvision weights."""

import pytest
import torch

from repflow_core.backbones import load_backbone_weights
from repflow_core.flow import RepresentationFlow, parameter_groups
from repflow_core.model import ActionNet, ModelConfig

TINY = dict(width=0.125, num_classes=4, flow_channels=8, iterations=2, dropout=0.0)


def tiny(**overrides) -> ActionNet:
    torch.manual_seed(0)
    return ActionNet(ModelConfig(**{**TINY, **overrides}))


@pytest.mark.parametrize("flow", ["none", "single", "fcf"])
def test_logits_shape_for_each_flow_kind(flow):
    model = tiny(flow=flow).eval()
    assert model(torch.randn(2, 3, 6, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("stage", ["input", "stem", "layer1", "layer2", "layer3", "layer4"])
def test_flow_block_can_follow_any_stage(stage):
    model = tiny(flow_after=stage).eval()
    assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 4)


def test_per_frame_logits_are_averaged_over_time():
    model = tiny(flow="fcf").eval()
    clip = torch.randn(2, 3, 6, 32, 32)
    frames = model.frame_logits(clip)
    assert frames.shape == (2, 4, 4)  # FcF consumes two frames: 6 -> 4 per-frame predictions
    assert torch.allclose(model(clip), frames.mean(dim=1))


def test_r2plus1d_backbone_hosts_the_flow_block():
    model = tiny(backbone="r2plus1d_18").eval()
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 4)


@pytest.mark.parametrize("stage", ["input", "layer1", "layer2"])
def test_r3d_18_backbone_hosts_the_flow_block(stage):
    """Table 6: flow on the input, after block 1 and after block 3 of a 3D ResNet-18."""
    model = tiny(backbone="r3d_18", flow_after=stage).eval()
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 4)


def test_resnet50_with_fcf_builds_and_runs():
    model = tiny(backbone="resnet50", flow="fcf", flow_after="layer2").eval()
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 4)


def test_too_few_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 frames"):
        tiny(flow="fcf")(torch.randn(1, 3, 2, 32, 32))


def test_bad_config_values_name_the_field():
    for field, value in [("backbone", "vgg"), ("flow", "double"), ("flow_after", "layer9"), ("dropout", 1.5)]:
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({"backbone": "resnet18", "colour": "red"})


def test_a_few_training_steps_reduce_the_loss():
    """The whole model, flow layer included, learns a tiny batch (loss falls within a few steps)."""
    model = tiny(flow="single", flow_after="layer1")
    torch.manual_seed(1)
    clips = torch.randn(4, 3, 4, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(parameter_groups(model, base_lr=0.05, flow_lr_scale=0.01), momentum=0.9)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    flow = next(m for m in model.modules() if isinstance(m, RepresentationFlow))
    assert flow.theta_raw.grad is not None and flow.div_x.grad.abs().sum() > 0


def test_torchvision_named_backbone_weights_round_trip(tmp_path):
    """A torchvision-style state_dict (conv1, bn1, layer1.0.conv1, ..., fc) loads into ActionNet's backbone."""
    source = tiny(num_classes=7)
    file = tmp_path / "resnet18_torchvision_style.pth"
    torch.save(source.backbone.state_dict(), file)
    assert "layer1.0.conv1.weight" in source.backbone.state_dict()
    target = tiny(num_classes=4)
    with torch.no_grad():
        for p in target.backbone.parameters():
            p.zero_()
    report = load_backbone_weights(target, file, prefix="backbone.")
    assert set(report.mismatched) == {"backbone.fc.weight", "backbone.fc.bias"}
    assert not report.unexpected
    assert torch.equal(target.backbone.layer1[0].conv1.weight, source.backbone.layer1[0].conv1.weight)
    assert torch.equal(target.backbone.bn1.running_mean, source.backbone.bn1.running_mean)
