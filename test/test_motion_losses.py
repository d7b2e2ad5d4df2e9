"""Unsupervised motion losses (repflow_core.motion_losses): warping, photometric, census, smoothness."""

import math

import pytest
import torch

from repflow_core import motion_losses as ml


def sinusoid_texture(h, w, shift=(0.0, 0.0), channels=1, seed=0, dtype=torch.float64):
    """A smooth texture given analytically, so a sub-pixel shift is exact: I(p - shift), values in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    xs, ys = xs - shift[0], ys - shift[1]
    image = torch.zeros(channels, h, w, dtype=dtype)
    for c in range(channels):
        for _ in range(6):
            fx, fy = (torch.rand(2, generator=gen, dtype=dtype) - 0.5) * 0.5
            phase = torch.rand(1, generator=gen, dtype=dtype) * 2 * math.pi
            image[c] += torch.cos(fx * xs + fy * ys + phase)
    return (image / 12 + 0.5).unsqueeze(0)


def constant_flow(h, w, d, dtype=torch.float64):
    flow = torch.zeros(1, 2, h, w, dtype=dtype)
    flow[:, 0], flow[:, 1] = d
    return flow


def test_backward_warp_with_the_true_flow_reconstructs_the_first_frame():
    d = (1.5, -0.75)
    i1 = sinusoid_texture(24, 32)
    i2 = sinusoid_texture(24, 32, shift=d)
    warped, valid = ml.backward_warp(i2, constant_flow(24, 32, d))
    inner = valid.bool().expand_as(warped)
    assert valid.sum() < 24 * 32  # the out-of-frame border is masked, not compared
    assert (warped - i1)[inner].abs().max() < 2e-3  # bilinear interpolation error of a smooth texture


def test_out_of_frame_samples_are_masked():
    _, valid = ml.backward_warp(torch.rand(1, 1, 8, 8), constant_flow(8, 8, (3.0, 0.0), dtype=torch.float32))
    assert valid[0, 0, :, :5].all() and not valid[0, 0, :, 5:].any()


@pytest.mark.parametrize("loss", ["photometric_l1", "photometric_charbonnier", "census_loss"])
def test_photometric_losses_are_near_zero_for_the_true_flow_and_not_for_a_wrong_one(loss):
    d = (1.25, 0.5)
    i1 = sinusoid_texture(32, 32, channels=3, seed=1)
    i2 = sinusoid_texture(32, 32, shift=d, channels=3, seed=1)
    fn = getattr(ml, loss)
    right = fn(i1, i2, constant_flow(32, 32, d)).item()
    wrong = fn(i1, i2, constant_flow(32, 32, (-1.0, 1.5))).item()
    zero = fn(i1, i1, constant_flow(32, 32, (0.0, 0.0))).item()
    assert wrong > 5 * right
    assert right < 3 * zero + 0.03  # the floor: Charbonnier eps and bilinear interpolation error


def test_census_transform_ignores_brightness_offsets():
    image = sinusoid_texture(16, 16)
    assert torch.allclose(ml.census_transform(image), ml.census_transform(image + 0.3), atol=1e-12)


def test_edge_aware_smoothness_forgives_flow_edges_on_image_edges():
    image = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    image[..., 8:] = 255.0
    flow_on_edge = torch.zeros(1, 2, 16, 16, dtype=torch.float64)
    flow_on_edge[:, 0, :, 8:] = 2.0
    flow_off_edge = torch.zeros_like(flow_on_edge)
    flow_off_edge[:, 0, :, 4:] = 2.0
    assert ml.smoothness_edge_aware(flow_on_edge, image) < 1e-6
    assert ml.smoothness_edge_aware(flow_off_edge, image) > 0.01


def test_charbonnier_smoothness_is_zero_only_up_to_eps_for_constant_flow():
    flat = ml.smoothness_charbonnier(constant_flow(8, 8, (2.0, 1.0)))
    rough = ml.smoothness_charbonnier(torch.randn(1, 2, 8, 8, dtype=torch.float64))
    assert flat.item() == pytest.approx(4 * (1e-6) ** 0.45, rel=1e-6)
    assert rough > 100 * flat


def test_forward_backward_mask_marks_consistent_pixels_visible():
    fw = constant_flow(12, 12, (2.0, 0.0))
    good = ml.forward_backward_mask(fw, -fw)
    bad = ml.forward_backward_mask(fw, fw)
    assert good[0, 0, :, :10].all() and not good[0, 0, :, 10:].any()  # the last columns leave the frame
    assert not bad.any()


def _random_inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    i1 = torch.rand(1, 2, 7, 9, generator=gen, dtype=torch.float64)
    i2 = torch.rand(1, 2, 7, 9, generator=gen, dtype=torch.float64)
    # non-integer flows keep bilinear sampling away from its kinks at whole pixels
    flow = (torch.rand(1, 2, 7, 9, generator=gen, dtype=torch.float64) - 0.5) * 1.6 + 0.13
    return i1.requires_grad_(), i2.requires_grad_(), flow.requires_grad_()


@pytest.mark.parametrize("name", ["photometric_l1", "photometric_charbonnier", "census_loss"])
def test_photometric_losses_pass_gradcheck(name):
    i1, i2, flow = _random_inputs(3)
    fn = getattr(ml, name)
    kwargs = {"radius": 1} if name == "census_loss" else {}
    assert torch.autograd.gradcheck(lambda a, b, f: fn(a, b, f, **kwargs), (i1, i2, flow), eps=1e-6, atol=1e-5)


def test_smoothness_losses_pass_gradcheck():
    i1, _, flow = _random_inputs(4)
    assert torch.autograd.gradcheck(lambda f, im: ml.smoothness_edge_aware(f, im, 2.0), (flow, i1), atol=1e-5)
    assert torch.autograd.gradcheck(ml.smoothness_charbonnier, (flow,), atol=1e-5)


def test_gradient_descent_on_a_free_flow_field_recovers_a_known_shift():
    d = (1.4, -0.8)
    i1 = sinusoid_texture(32, 32, seed=5, dtype=torch.float32)
    i2 = sinusoid_texture(32, 32, shift=d, seed=5, dtype=torch.float32)
    flow = torch.zeros(1, 2, 32, 32, requires_grad=True)
    optimiser = torch.optim.Adam([flow], lr=0.1)
    # Census is robust and strong on a low-contrast texture; smoothness resolves the aperture problem.
    weights = ml.MotionLossWeights(census=1.0, smoothness=1.0)
    for _ in range(300):
        optimiser.zero_grad()
        sum(ml.motion_loss_terms(i1, i2, flow, weights).values()).backward()
        optimiser.step()
    inner = flow.detach()[0, :, 6:-6, 6:-6]
    epe = torch.sqrt((inner[0] - d[0]) ** 2 + (inner[1] - d[1]) ** 2).mean().item()
    assert epe < 0.2, epe  # 0.11 px measured; the start (zero flow) is 1.61 px


def test_weights_are_validated_and_zero_terms_are_skipped():
    with pytest.raises(ValueError, match="loss.census"):
        ml.MotionLossWeights(census=-1.0)
    i = torch.rand(1, 1, 8, 8)
    assert ml.motion_loss_terms(i, i, torch.zeros(1, 2, 8, 8), ml.MotionLossWeights(smoothness=1.0)).keys() == {
        "smoothness"}
    assert not ml.MotionLossWeights().active


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="flow must be"):
        ml.backward_warp(torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        ml.backward_warp(torch.rand(1, 1, 8, 9), torch.zeros(1, 2, 8, 8))
