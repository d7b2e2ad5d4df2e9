"""UF-TSN (repflow_core.uftsn): cost volume, coarse-to-fine estimator, stages, two-stream output."""

import pytest
import torch
from test_motion_losses import sinusoid_texture

from repflow_core import motion_losses as ml
from repflow_core.uftsn import UFTSN, FlowEstimator, cost_volume, pyramid_loss


def test_cost_volume_peaks_at_the_true_displacement():
    torch.manual_seed(0)
    q1 = torch.randn(1, 8, 10, 10)
    q2 = torch.roll(q1, shifts=(1, 2), dims=(2, 3))  # content moves 2 right, 1 down
    volume = cost_volume(q1, q2, max_displacement=3)
    assert volume.shape == (1, 49, 10, 10)
    best = volume[0, :, 4:6, 4:6].mean((1, 2)).argmax().item()
    assert divmod(best, 7) == (3 + 1, 3 + 2)  # (dy, dx) index in the 7 x 7 grid
    assert volume[0, 24, 5, 5] == pytest.approx((q1[0, :, 5, 5] * q2[0, :, 5, 5]).sum().item() / 8, rel=1e-5)


def test_estimator_returns_one_flow_per_level_finest_first():
    est = FlowEstimator(channels=(8, 12, 16))
    flows = est(torch.randn(3, 3, 32, 48), torch.randn(3, 3, 32, 48))
    assert [tuple(f.shape) for f in flows] == [(3, 2, 16, 24), (3, 2, 8, 12), (3, 2, 4, 6)]


def test_unsupervised_training_teaches_the_estimator_the_motion_of_its_pairs():
    """No flow labels: photometric + census + edge-aware smoothness alone pull the estimate to the true shift."""
    torch.manual_seed(0)
    est = FlowEstimator(channels=(8, 16), max_displacement=2, decoder_channels=16)
    opt = torch.optim.Adam(est.parameters(), lr=1e-2)
    weights = ml.MotionLossWeights(photometric=1.0, census=0.1, smoothness=0.2, edge_aware=True, edge_weight=10.0)
    shifts = torch.tensor([[1.0, 0.0], [-1.0, 0.5], [0.5, -1.0], [0.0, 1.0]]) * 2
    i1 = torch.cat([sinusoid_texture(32, 32, channels=3, seed=k, dtype=torch.float32) for k in range(4)])
    i2 = torch.cat([sinusoid_texture(32, 32, shift=tuple(s.tolist()), channels=3, seed=k, dtype=torch.float32)
                    for k, s in enumerate(shifts)])
    i1, i2 = (i1 - 0.5) / 0.23, (i2 - 0.5) / 0.23
    truth = (shifts / 2).view(4, 2, 1, 1)  # the finest flow is at half the input size

    def epe():
        with torch.no_grad():
            return (est(i1, i2)[0][..., 3:-3, 3:-3] - truth).norm(dim=1).mean().item()

    before = epe()
    for _ in range(60):
        opt.zero_grad()
        sum(pyramid_loss(i1, i2, est(i1, i2), weights).values()).backward()
        opt.step()
    after = epe()
    assert after < 0.5 * before, (before, after)  # measured 1.06 -> 0.34 px after 40 steps


def test_stages_choose_what_learns_and_which_losses_are_computed():
    model = UFTSN(num_classes=4, width=0.125, estimator=FlowEstimator(channels=(8, 8), decoder_channels=8))
    clip = torch.randn(2, 3, 4, 32, 32)
    model.train()
    assert model(clip).shape == (2, 4)
    assert set(model.extra_losses) == {"photometric", "census", "smoothness"}
    model.set_stage("classifier")
    model(clip)
    assert model.extra_losses == {}
    assert not any(p.requires_grad for p in model.estimator.parameters())
    model.set_stage("flow")
    assert not any(p.requires_grad for p in model.spatial.parameters())
    with pytest.raises(ValueError, match="unknown UF-TSN stage"):
        model.set_stage("everything")


def test_end_to_end_gradients_reach_both_streams_and_the_estimator():
    model = UFTSN(num_classes=3, width=0.125, estimator=FlowEstimator(channels=(8, 8), decoder_channels=8))
    model.train()
    logits = model(torch.randn(2, 3, 3, 32, 32))
    (torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])) + sum(model.extra_losses.values())).backward()
    for part in (model.spatial, model.temporal, model.estimator):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_video_backbones_are_refused():
    with pytest.raises(ValueError, match="2D backbone"):
        UFTSN(num_classes=3, backbone="r2plus1d_18", width=0.125)


def test_a_uftsn_checkpoint_loads_into_the_recognizer_and_predicts(tmp_path):
    import numpy as np

    from repflow_core.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
    from repflow_core.model import ModelConfig
    from repflow_core.recognizer import Recognizer
    from repflow_core.uftsn import build_any_model

    config = ModelConfig(backbone="resnet18", width=0.125, num_classes=3, motion="uftsn")
    model = build_any_model(config)
    assert isinstance(model, UFTSN)
    spec = InputSpec(clip_len=4, size=(32, 32), resize_short=32)
    path = save_checkpoint(Checkpoint(model_config=config, labels=["a", "b", "c"], input_spec=spec,
                                      state_dict=model.state_dict()), tmp_path / "uftsn.pt")
    rec = Recognizer(load_checkpoint(path), device="cpu", log=lambda _m: None)
    frames = np.stack([rec.preprocess(np.full((48, 64, 3), 40 * k, np.uint8)) for k in range(4)])
    probs = rec.predict(frames)
    assert probs.shape[-1] == 3 and np.isfinite(probs).all() and abs(float(probs.sum()) - 1) < 1e-4
