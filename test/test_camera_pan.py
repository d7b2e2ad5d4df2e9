"""Global camera motion (issue 9, part 3): ModelConfig.flow_global_motion ("median" subtracts each flow channel's
spatial median after every representation-flow layer), old checkpoints unchanged, ONNX export of the option, and
the camera_pan experiment's command line."""

import copy
import csv
import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, InputSpec, load_checkpoint, load_checkpoint_dict, save_checkpoint
from repflow_core.experiments import camera_pan
from repflow_core.export import export_checkpoint
from repflow_core.flow import iter_flow_layers
from repflow_core.model import GLOBAL_MOTIONS, ActionNet, ModelConfig, subtract_global_motion
from repflow_core.recognizer import default_checkpoint

TINY = dict(width=0.125, num_classes=3, flow_channels=4, iterations=3, flow_after="stem", dropout=0.0)


def panning_clip(t: int = 5, size: int = 32, speed: int = 2, seed: int = 0) -> torch.Tensor:
    """(1, 3, T, H, W): a random texture moving ``speed`` px per frame to the right, nothing else moving."""
    g = torch.Generator().manual_seed(seed)
    scene = torch.rand(3, size, size + speed * t, generator=g)
    scene = torch.nn.functional.avg_pool2d(scene[None], 3, 1, 1)[0]  # smooth: a texture the flow can follow
    frames = [scene[:, :, speed * (t - 1 - i) : speed * (t - 1 - i) + size] for i in range(t)]
    return torch.stack(frames, 1)[None]


def tiny_pair(**extra) -> tuple[ActionNet, ActionNet]:
    torch.manual_seed(0)
    plain = ActionNet(ModelConfig(**TINY, **extra)).eval()
    median = ActionNet(ModelConfig(**TINY, **extra, flow_global_motion="median")).eval()
    median.load_state_dict(plain.state_dict())
    return plain, median


def test_median_removes_a_constant_flow_exactly_and_keeps_local_motion():
    b, c, t, h, w = 2, 3, 4, 20, 24
    local = torch.zeros(b, 2 * c, t, h, w)
    local[:, :, :, 5:13, 8:16] = torch.randn(b, 2 * c, t, 1, 1) * 3  # a "person": 64 of 480 pixels, moving
    shift = torch.randn(b, 2 * c, t, 1, 1) * 5  # a pan: the same displacement at every pixel, per channel / pair
    out = subtract_global_motion(local + shift)
    assert torch.allclose(out, local, atol=1e-5)  # the pan is gone, the person's flow is exactly kept
    assert torch.equal(subtract_global_motion(local), local)  # still camera (median 0): nothing changes
    # torch.median's value, written with topk (ONNX has no median)
    ref = (local + shift).flatten(3)
    assert torch.equal(out.flatten(3), ref - ref.median(dim=-1, keepdim=True).values)


def test_median_option_changes_logits_under_a_pan_and_none_changes_nothing():
    plain, median = tiny_pair()
    clip = panning_clip()
    torch.manual_seed(0)
    again = ActionNet(ModelConfig(**TINY, flow_global_motion="none")).eval()
    again.load_state_dict(plain.state_dict())
    with torch.no_grad():
        ref = plain(clip)
        assert torch.equal(again(clip), ref)  # "none" is the model without the option, bit for bit
        flows = []
        handle = next(iter_flow_layers(median)).register_forward_hook(lambda m, i, o: flows.append(o))
        got = median(clip)
        handle.remove()
    assert not torch.allclose(got, ref, atol=1e-4)
    # what the rest of the network saw: every channel's median is zero after the subtraction
    assert flows[0].flatten(3).median(dim=-1).values.abs().max() < 1e-6
    assert plain.state_dict().keys() == median.state_dict().keys()  # same weights, same checkpoint keys


def test_every_flow_layer_is_compensated_with_fcf_and_after_deepcopy():
    _, median = tiny_pair(flow="fcf")
    layers = list(iter_flow_layers(median))
    assert len(layers) == 2 and all(len(layer._forward_hooks) == 1 for layer in layers)
    ema = copy.deepcopy(median)  # the EMA copy: the hook is a module-level function, still working
    with torch.no_grad():
        assert torch.equal(ema(panning_clip(t=6)), median(panning_clip(t=6)))


def test_fused_and_eager_flow_give_the_same_compensated_logits():
    _, median = tiny_pair()
    clip = panning_clip()
    with torch.no_grad():
        outs = {}
        for impl in ("eager", "fused"):
            for layer in iter_flow_layers(median):
                layer.impl = impl
            outs[impl] = median(clip)
    assert torch.allclose(outs["eager"], outs["fused"], rtol=1e-4, atol=1e-4)


def test_old_checkpoint_loads_as_none_with_identical_logits(tmp_path):
    raw = load_checkpoint_dict(default_checkpoint())
    del raw["model_config"]["flow_global_motion"]  # as a file written before the option existed
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    ckpt = load_checkpoint(old)
    assert ckpt.model_config.flow_global_motion == "none"
    model = ckpt.build_model().eval()
    assert not any(layer._forward_hooks for layer in iter_flow_layers(model))
    explicit = ActionNet(ModelConfig(**{**raw["model_config"], "flow_global_motion": "none"})).eval()
    explicit.load_state_dict(ckpt.state_dict)
    torch.manual_seed(1)
    clip = torch.randn(1, 3, ckpt.input_spec.clip_len, *ckpt.input_spec.size)
    with torch.no_grad():
        assert torch.equal(model(clip), explicit(clip))


def test_bad_values_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"flow_global_motion 'mean'.*'none', 'median'"):
        ModelConfig(flow_global_motion="mean").validate()
    with pytest.raises(ValueError, match="flow_global_motion 'median' acts on representation-flow layers"):
        ModelConfig(flow="none", flow_global_motion="median").validate()
    with pytest.raises(ValueError, match="flow_global_motion"):
        ModelConfig.from_dict({"flow_global_motion": "Median"})
    assert GLOBAL_MOTIONS == ("none", "median")


def test_median_model_exports_to_onnx_and_matches(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY, flow_global_motion="median")
    spec = InputSpec(clip_len=5, size=(32, 32), resize_short=36)
    path = save_checkpoint(Checkpoint(cfg, ["a", "b", "c"], spec, ActionNet(cfg).state_dict()), tmp_path / "m.pt")
    out = export_checkpoint(path, tmp_path / "m.onnx", "onnx")  # verified against the Recognizer to 1e-3
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "TopK" in ops


def test_camera_pan_cli_writes_csv_json_png(tmp_path):
    out = tmp_path / "pan_run"
    assert camera_pan.main(["--out", str(out), "--clips-per-class", "1", "--windows", "1",
                            "--conditions", "still", "shifted"]) == 0
    rows = list(csv.DictReader(open(out / "camera_pan.csv")))
    assert [r["condition"] for r in rows] == ["still", "shifted"]
    assert all(int(r["clips"]) == 10 and 0 <= float(r["median_share"]) <= 1 for r in rows)
    assert all(0 <= float(r[f"top1_{v}"]) <= 1 for r in rows for v in ("none", "median"))
    assert len(list(csv.DictReader(open(out / "camera_pan_clips.csv")))) == 20
    assert json.loads((out / "camera_pan.json").read_text())["settings"]["conditions"] == ["still", "shifted"]
    assert (out / "camera_pan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shift_clip_is_a_pure_horizontal_translation():
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (1, 24, 40, 3), dtype=np.uint8), 5, 0)
    moved = camera_pan.shift_clip(frames, pan=2 / 40)  # 2 px per frame
    # frame t+1 is frame t moved right by 2 px (away from the reflected border)
    assert np.array_equal(moved[1][:, 12:30], moved[0][:, 10:28])
    assert dataclasses.asdict(camera_pan.synth_config("pan", 0.004).camera)["tilt_speed"] == (0.0, 0.0)


def test_global_motion_subtraction_and_the_joint_loss_are_refused_together():
    from repflow_core.config import TrainConfig

    cfg = TrainConfig()
    cfg.model.flow_global_motion = "median"
    cfg.loss.photometric = 1.0
    with pytest.raises(ValueError, match="flow_global_motion 'median' cannot be combined with the joint loss"):
        cfg.validate()
    cfg.loss.photometric = 0.0
    cfg.validate()
