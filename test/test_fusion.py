"""The paper's remaining variants: flow on the RGB input (Table 1), RGB + flow fusion (Fig. 2, Table 4), r3d_18
(Table 6) hosting the flow layer, and their checkpoints. Tiny sizes throughout, so the file stays fast."""

import math

import numpy as np
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, InputSpec, load_checkpoint
from repflow_core.flow import RepresentationFlow, parameter_groups
from repflow_core.fusion import FUSIONS, InputFlow, StreamFusion, late_fusion
from repflow_core.model import LOCATIONS, ActionNet, ModelConfig
from repflow_core.recognizer import Recognizer

TINY = dict(width=0.125, num_classes=3, flow_channels=4, iterations=1, dropout=0.0)


def tiny(**overrides) -> ActionNet:
    torch.manual_seed(0)
    return ActionNet(ModelConfig(**{**TINY, **overrides}))


def grad_norm(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_at_every_location_has_shapes_and_gradients(fusion, location):
    model = tiny(flow="single", flow_after=location, fusion=fusion)
    clip = torch.randn(2, 3, 3, 32, 32)
    frames = model.frame_logits(clip)
    assert frames.shape == (2, 2, 3)  # one flow layer: T - 1 per-frame predictions
    model(clip).sum().backward()
    assert grad_norm(model.flow) > 0
    assert all(p.grad is not None for p in model.backbone.parameters())
    if fusion in ("none",):
        assert model.rgb_backbone is None and model.fuse is None
    if model.rgb_backbone is not None:  # the RGB stream learns too, and has no unused parameters
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rgb_backbone.parameters())
    if model.fuse is not None:
        assert all(p.grad is not None for p in model.fuse.parameters())


@pytest.mark.parametrize("backbone", ["resnet34", "r2plus1d_18", "r3d_18"])
@pytest.mark.parametrize(("flow", "fusion", "location"),
                         [("fcf", "layer_multiply", "layer1"), ("fcf", "concat", "input"), ("single", "late", "stem")])
def test_fusion_composes_with_fcf_and_every_backbone(backbone, flow, fusion, location):
    model = tiny(backbone=backbone, flow=flow, flow_after=location, fusion=fusion).eval()
    out = model(torch.randn(1, 3, 4, 32, 32))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_fusion_point_can_follow_the_flow_layer():
    """Flow after the stem, streams fused after layer2: the RGB stream holds exactly stem..layer2."""
    model = tiny(flow_after="stem", fusion="add", fusion_after="layer2")
    keys = {k.split(".")[1] for k in model.state_dict() if k.startswith("rgb_backbone.")}
    assert keys == {"conv1", "bn1", "layer1", "layer2"}
    assert model(torch.randn(1, 3, 3, 32, 32)).shape == (1, 3)


def test_input_flow_sees_motion_only_and_keeps_three_channels():
    torch.manual_seed(0)
    block = InputFlow(3, 0, iterations=2).eval()
    assert block.reduce is None  # flow of the 3 colour channels themselves (no 1x1 conv)
    static = torch.randn(1, 3, 1, 16, 16).repeat(1, 1, 4, 1, 1)
    out = block(static)
    assert out.shape == (1, 3, 3, 16, 16)
    # No residual with the RGB input: a still clip has zero flow, so every frame maps to the same constant.
    assert torch.allclose(out, out[..., :1, :1].expand_as(out), atol=1e-5)
    assert InputFlow(3, 8).reduce.out_channels == 8  # configured reduction (model.input_flow_channels)


def test_streams_are_aligned_by_dropping_the_last_rgb_frame():
    rgb, flow = torch.randn(1, 2, 4, 3, 3), torch.randn(1, 2, 3, 3, 3)
    assert torch.equal(StreamFusion("add", 2)(rgb, flow), rgb[:, :, :3] + flow)
    assert torch.equal(StreamFusion("multiply", 2)(rgb, flow), rgb[:, :, :3] * flow)
    assert StreamFusion("concat", 2)(rgb, flow).shape == (1, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="spatial size"):
        StreamFusion("add", 2)(rgb, torch.randn(1, 2, 3, 4, 4))


def test_late_fusion_averages_the_two_networks_probabilities():
    a, b = torch.randn(2, 5, 4), torch.randn(2, 4, 4)
    fused = late_fusion(a, b)
    assert fused.shape == (2, 4, 4)
    expected = (torch.softmax(a[:, :4], -1) + torch.softmax(b, -1)) / 2
    assert torch.allclose(torch.softmax(fused, -1), expected, atol=1e-6)
    assert torch.allclose(fused.exp().sum(-1), torch.ones(2, 4), atol=1e-5) and math.isfinite(float(fused.sum()))


def test_bad_fusion_configs_name_the_culprit():
    with pytest.raises(ValueError, match="fusion 'add'.*flow is 'none'"):
        ModelConfig(flow="none", fusion="add").validate()
    with pytest.raises(ValueError, match="fusion_after 'stem' comes before flow_after 'layer2'"):
        ModelConfig(flow_after="layer2", fusion="add", fusion_after="stem").validate()
    for field, value in [("fusion", "average"), ("fusion_after", "layer7"), ("flow_after", "output"),
                         ("input_flow_channels", -1)]:
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: value}).validate()


def test_no_fusion_keeps_the_plain_models_state_dict_keys():
    keys = tiny(fusion="none").state_dict().keys()
    assert not any(k.startswith(("rgb_backbone.", "fuse.")) for k in keys)


def test_a_checkpoint_without_fusion_fields_loads_as_no_fusion():
    cfg = ModelConfig(**TINY).to_dict()
    for field in ("fusion", "fusion_after", "input_flow_channels"):
        cfg.pop(field)
    assert ModelConfig.from_dict(cfg).fusion == "none"


@pytest.mark.parametrize(("fusion", "location"), [("layer_multiply", "layer1"), ("late", "input")])
def test_checkpoint_records_the_fusion_and_the_recognizer_rebuilds_it(tmp_path, fusion, location):
    labels = ["a", "b", "c"]
    model = tiny(flow_after=location, fusion=fusion).eval()
    ckpt = Checkpoint(model.config, labels, InputSpec(clip_len=4, size=(32, 32), resize_short=40), model.state_dict())
    torch.save(ckpt.to_dict(), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert (loaded.model_config.fusion, loaded.model_config.flow_after) == (fusion, location)
    clip = torch.randn(1, 3, 4, 32, 32)
    assert torch.allclose(loaded.build_model().eval()(clip), model(clip), atol=1e-6)
    rec = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu")
    probs = rec.predict(np.random.RandomState(0).randint(0, 255, (4, 32, 32, 3), np.uint8))
    assert probs.shape == (3,) and abs(float(probs.sum()) - 1) < 1e-5


LEARNING_VARIANTS = [
    dict(flow_after="input"),
    dict(flow="fcf", flow_after="input"),
    dict(flow_after="input", fusion="late"),
    dict(flow_after="input", fusion="add"),
    dict(flow_after="input", fusion="multiply"),
    dict(flow_after="layer1", fusion="layer_multiply"),
    dict(flow_after="input", fusion="concat"),
    dict(backbone="r3d_18", flow_after="layer1"),
]


@pytest.mark.parametrize("overrides", LEARNING_VARIANTS, ids=lambda o: "-".join(map(str, o.values())))
def test_each_new_variant_learns_a_tiny_batch(overrides):
    """Loss on a tiny fixed batch falls within a few SGD steps (flow parameters at 0.01 x lr, appendix A)."""
    model = tiny(**overrides)
    torch.manual_seed(1)
    clips, labels = torch.randn(3, 3, 4, 32, 32), torch.tensor([0, 1, 2])
    opt = torch.optim.SGD(parameter_groups(model, base_lr=0.05, flow_lr_scale=0.01), momentum=0.9)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert next(m for m in model.modules() if isinstance(m, RepresentationFlow)).div_x.grad is not None


def test_a_fusion_checkpoint_exports_to_onnx_unchanged(tmp_path):
    """export.py needs nothing new: onnxruntime reproduces a late-fusion and a layer + multiply model."""
    pytest.importorskip("onnxruntime")
    from repflow_core.checkpoint import save_checkpoint
    from repflow_core.export import export_checkpoint, verify_export

    for fusion, location in [("late", "input"), ("layer_multiply", "layer1")]:
        model = tiny(flow_after=location, fusion=fusion)
        ckpt = Checkpoint(model.config, ["a", "b", "c"], InputSpec(clip_len=4, size=(32, 32), resize_short=40),
                          model.state_dict())
        path = save_checkpoint(ckpt, tmp_path / f"{fusion}.pt")
        out = export_checkpoint(path, tmp_path / f"{fusion}.onnx", "onnx")
        assert verify_export(load_checkpoint(path), out, "onnx") < 1e-4
