"""The representation-flow layer against the paper (Sec. 3.2, Algorithm 1, Eqs. 2-10) and its conventions."""

import math

import pytest
import torch

from repflow_core.flow import (
    FlowBlock,
    FlowConvFlow,
    RepresentationFlow,
    normalise_to_image_range,
    parameter_groups,
)

GRADIENTS = ["sobel", "central", "sobel_fd"]


def smooth_image(height: int, width: int, margin: int = 2) -> torch.Tensor:
    """A smooth [0, 255]-range texture with gradients in every direction, with a margin for shifting."""
    yy, xx = torch.meshgrid(
        torch.arange(height + 2 * margin, dtype=torch.float64),
        torch.arange(width + 2 * margin, dtype=torch.float64),
        indexing="ij",
    )
    return 127.5 + 60 * torch.sin(xx * 0.35) + 50 * torch.cos(yy * 0.3) + 20 * torch.sin((xx + yy) * 0.2)


def shifted_pair(dx: int, dy: int, size: int = 32, margin: int = 2) -> torch.Tensor:
    """(1, 1, 2, H, W) clip whose content moves dx pixels right and dy pixels down between frames."""
    img = smooth_image(size, size, margin)
    f1 = img[margin : margin + size, margin : margin + size]
    f2 = img[margin - dy : margin - dy + size, margin - dx : margin - dx + size]
    return torch.stack([f1, f2]).view(1, 1, 2, size, size)


def interior(flow: torch.Tensor, border: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return flow[0, 0, 0, border:-border, border:-border], flow[0, 1, 0, border:-border, border:-border]


def endpoint_error(layer: RepresentationFlow, dx: int, dy: int) -> float:
    ux, uy = interior(layer(shifted_pair(dx, dy)))
    return torch.sqrt((ux - dx) ** 2 + (uy - dy) ** 2).mean().item()


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_zero_motion_gives_zero_flow(gradient):
    frame = smooth_image(24, 24, 0)
    clip = torch.stack([frame, frame, frame]).view(1, 1, 3, 24, 24)
    out = RepresentationFlow(1, iterations=10, gradient=gradient).double()(clip)
    assert out.abs().max().item() < 1e-9


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("dx,dy", [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_shift_gives_flow_of_the_right_sign(gradient, dx, dy):
    """Positive x = content moving right (increasing column), positive y = moving down."""
    ux, uy = interior(RepresentationFlow(1, iterations=10, gradient=gradient).double()(shifted_pair(dx, dy)))
    if dx:
        assert math.copysign(1, ux.mean().item()) == dx and abs(ux.mean().item()) > 0.5
        assert abs(uy.mean().item()) < 0.2
    if dy:
        assert math.copysign(1, uy.mean().item()) == dy and abs(uy.mean().item()) > 0.5
        assert abs(ux.mean().item()) < 0.2


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_endpoint_error_falls_as_iterations_grow(gradient):
    errors = [endpoint_error(RepresentationFlow(1, iterations=n, gradient=gradient).double(), 1, 1) for n in (1, 5, 10)]
    assert errors[0] > errors[1] > errors[2], errors


def test_central_variant_converges_to_the_true_shift():
    """With the adjoint pair of TVNet the iteration converges: 50 iterations recover a 1-pixel shift."""
    assert endpoint_error(RepresentationFlow(1, iterations=50, gradient="central").double(), 1, 0) < 0.15


def test_output_orders_all_x_flows_then_all_y_flows():
    """Channel c of the output is u_x of input channel c; channel C + c is its u_y."""
    right = shifted_pair(1, 0)
    down = shifted_pair(0, 1)
    clip = torch.cat([right, down], 1)  # channel 0 moves right, channel 1 moves down
    out = RepresentationFlow(2, iterations=10).double()(clip)
    mean = out[0, :, 0, 4:-4, 4:-4].mean(dim=(1, 2))
    assert mean[0] > 0.5 and abs(mean[1]) < 0.2  # u_x of ch0, u_x of ch1
    assert abs(mean[2]) < 0.2 and mean[3] > 0.5  # u_y of ch0, u_y of ch1


def test_channels_are_independent():
    """Per-channel flow: changing one channel's content leaves the other channel's flow unchanged."""
    torch.manual_seed(0)
    clip = torch.rand(1, 2, 3, 16, 16, dtype=torch.float64) * 255
    layer = RepresentationFlow(2, iterations=5).double()
    base = layer(clip)
    clip2 = clip.clone()
    clip2[:, 1] = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 255
    changed = layer(clip2)
    assert torch.equal(base[:, 0], changed[:, 0]) and torch.equal(base[:, 2], changed[:, 2])
    assert not torch.equal(base[:, 1], changed[:, 1])


@pytest.mark.parametrize("frames", [2, 16, 32])
def test_output_shape_pairs_consecutive_frames(frames):
    out = RepresentationFlow(4, iterations=2)(torch.rand(2, 4, frames, 9, 11) * 255)
    assert out.shape == (2, 8, frames - 1, 9, 11)


@pytest.mark.parametrize(
    "name,clip",
    [
        ("zeros", torch.zeros(1, 2, 3, 8, 8)),
        ("constant", torch.full((1, 2, 3, 8, 8), 42.0)),
        ("huge", torch.randn(1, 2, 3, 8, 8) * 1e8),
        ("tiny", torch.randn(1, 2, 3, 8, 8) * 1e-30),
    ],
)
def test_no_nan_or_inf_for_degenerate_inputs(name, clip):
    layer = RepresentationFlow(2, iterations=10)
    clip = clip.clone().requires_grad_(True)
    out = layer(clip)
    out.sum().backward()
    assert torch.isfinite(out).all(), name
    assert torch.isfinite(clip.grad).all(), name
    for p in layer.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_tv_l1_weights_start_at_paper_values_and_stay_positive():
    layer = RepresentationFlow(1)
    assert layer.theta.item() == pytest.approx(0.3, abs=1e-5)
    assert layer.lam.item() == pytest.approx(0.15, abs=1e-5)
    assert layer.tau.item() == pytest.approx(0.25, abs=1e-5)
    with torch.no_grad():
        for raw in (layer.theta_raw, layer.lambda_raw, layer.tau_raw):
            raw.fill_(-1e4)  # what a runaway optimiser could do
    assert layer.theta.item() > 0 and layer.lam.item() > 0 and layer.tau.item() > 0
    out = layer(torch.rand(1, 1, 2, 8, 8) * 255)
    assert torch.isfinite(out).all()


def test_divergence_kernels_start_as_eq9_backward_differences():
    layer = RepresentationFlow(1)
    assert layer.div_x.flatten().tolist() == [-1.0, 1.0]
    assert layer.div_y.flatten().tolist() == [-1.0, 1.0]
    assert layer.div_y.shape[-2:] == (2, 1)  # along H


def test_sobel_kernels_run_along_width_for_x_and_height_for_y():
    layer = RepresentationFlow(1)
    ramp_x = torch.arange(8.0).repeat(8, 1).view(1, 1, 8, 8)  # increases along W
    gx, gy = layer._image_gradient(ramp_x)
    assert torch.allclose(gx[..., 2:-2, 2:-2], torch.ones(1)) and torch.allclose(gy, torch.zeros(1))
    gx, gy = layer._image_gradient(ramp_x.transpose(2, 3))
    assert torch.allclose(gy[..., 2:-2, 2:-2], torch.ones(1)) and torch.allclose(gx, torch.zeros(1))


def test_central_divergence_is_the_negative_adjoint_of_the_forward_gradient():
    """<grad u, p> = -<u, div p> for the TVNet operators (d[0]=p[0], d[i]=p[i]-p[i-1], d[-1]=-p[-2])."""
    torch.manual_seed(0)
    layer = RepresentationFlow(1, gradient="central").double()
    u = torch.randn(1, 1, 7, 9, dtype=torch.float64)
    gx, gy = layer._flow_gradient(u)
    px, py = torch.randn_like(u), torch.randn_like(u)
    px[..., :, -1] = 0  # the dual field's last column/row is 0 under forward differences
    py[..., -1, :] = 0
    lhs = (gx * px + gy * py).sum()
    rhs = -(u * layer._divergence(px, py)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_gradcheck_through_every_learnable_parameter(gradient):
    torch.manual_seed(0)
    layer = RepresentationFlow(2, iterations=3, gradient=gradient, learn_gradient=True).double()
    clip = (torch.rand(1, 2, 3, 6, 7, dtype=torch.float64) * 255).requires_grad_(True)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    assert set(names) == {
        "theta_raw", "lambda_raw", "tau_raw", "div_x", "div_y",
        "image_grad_x", "image_grad_y", "flow_grad_x", "flow_grad_y",
    }
    params = dict(layer.named_parameters())

    def fn(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    inputs = (clip,) + tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_freezing_flags_control_what_learns():
    frozen = RepresentationFlow(1, learn_params=False, learn_divergence=False, learn_gradient=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    default = RepresentationFlow(1)
    learnable = {n for n, p in default.named_parameters() if p.requires_grad}
    assert learnable == {"theta_raw", "lambda_raw", "tau_raw", "div_x", "div_y"}  # Table 2's best


def test_rejects_bad_construction_and_input():
    with pytest.raises(ValueError, match="gradient"):
        RepresentationFlow(1, gradient="prewitt")
    with pytest.raises(ValueError, match="iterations"):
        RepresentationFlow(1, iterations=0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        RepresentationFlow(1)(torch.zeros(1, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        RepresentationFlow(3)(torch.zeros(1, 2, 2, 4, 4))


def test_normalisation_maps_each_sample_and_channel_to_0_255():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6, 6) * torch.tensor([0.01, 1.0, 100.0, 0.0]).view(1, 4, 1, 1, 1)
    out = normalise_to_image_range(x)
    flat = out.flatten(2)
    assert torch.allclose(flat[:, :3].amin(2), torch.zeros(3, 3))
    assert torch.allclose(flat[:, :3].amax(2), torch.full((3, 3), 255.0))
    assert torch.equal(out[:, 3], torch.zeros_like(out[:, 3]))  # constant channel -> 0, no NaN
    # Per-sample statistics: a clip's output does not depend on the rest of the batch.
    assert torch.allclose(normalise_to_image_range(x[1:2]), out[1:2])


def test_flow_block_shapes_and_residual():
    block = FlowBlock(16, flow_channels=8, iterations=2).eval()
    x = torch.rand(2, 16, 5, 7, 7)
    out = block(x)
    assert out.shape == (2, 16, 4, 7, 7)
    assert (out >= 0).all()


def test_flow_conv_flow_removes_two_frames():
    fcf = FlowConvFlow(16, flow_channels=8, iterations=2)
    assert fcf(torch.rand(1, 16, 6, 8, 8)).shape == (1, 16, 4, 8, 8)
    assert sum(isinstance(m, RepresentationFlow) for m in fcf.modules()) == 2


def test_parameter_groups_give_flow_one_percent_of_the_rate():
    block = FlowBlock(8, flow_channels=4)
    groups = parameter_groups(block, base_lr=0.1, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["flow"]["lr"] == pytest.approx(0.001)
    assert by_name["flow"]["weight_decay"] == 0.0
    flow_ids = {id(p) for p in by_name["flow"]["params"]}
    assert flow_ids == {id(p) for p in block.flow.parameters() if p.requires_grad}
    assert not flow_ids & {id(p) for p in by_name["network"]["params"]}
    assert len(flow_ids) + len(by_name["network"]["params"]) == sum(1 for p in block.parameters() if p.requires_grad)


# --- the converging default (issue 16.1) and the pyramid option (issue 16.2) ------------------------------
def quality_epe(layer: RepresentationFlow, motion: str = "mixed", size: int = 48) -> float:
    """EPE of a fixed-parameter layer on a flow-quality pair (smooth texture, known affine motion)."""
    from repflow_core import flow_quality

    img1, img2, truth = flow_quality.known_motion_pair(motion, size)
    clip = torch.from_numpy(flow_quality.np.stack([img1, img2])).double()[None, None]
    with torch.no_grad():
        out = layer.double()(clip)[0, :, 0].numpy()
    return flow_quality.epe(out, truth)


def test_default_gradient_is_sobel_image_gradient_with_an_adjoint_flow_pair():
    layer = RepresentationFlow(1)
    assert layer.gradient == "sobel_fd" and FlowBlock(4).flow.gradient == "sobel_fd"
    assert torch.equal(layer.image_grad_x, RepresentationFlow(1, gradient="sobel").image_grad_x)  # Eq. 8
    torch.manual_seed(0)
    u = torch.randn(1, 1, 7, 9, dtype=torch.float64)
    gx, gy = layer.double()._flow_gradient(u)
    px, py = torch.randn_like(u), torch.randn_like(u)
    px[..., :, -1] = 0
    py[..., -1, :] = 0
    assert (gx * px + gy * py).sum().item() == pytest.approx(-(u * layer._divergence(px, py)).sum().item(), rel=1e-12)


def test_default_epe_does_not_increase_with_iterations():
    """Issue 16: 10 -> 50 -> 200 iterations never make the default worse (the old Sobel pair doubles)."""
    errors = [quality_epe(RepresentationFlow(1, iterations=n)) for n in (10, 50, 200)]
    assert errors[0] > errors[1] >= errors[2], errors
    assert errors[1] < 0.7 * errors[0]
    sobel = [quality_epe(RepresentationFlow(1, iterations=n, gradient="sobel")) for n in (10, 50, 200)]
    assert sobel[2] > 1.3 * sobel[0], sobel  # the non-adjoint pair diverges: why it is no longer the default


def test_one_pyramid_level_is_the_single_scale_layer():
    torch.manual_seed(0)
    clip = torch.rand(1, 2, 3, 12, 10, dtype=torch.float64) * 255
    one = RepresentationFlow(2, iterations=4, pyramid_levels=1).double()
    assert torch.equal(one(clip), one.forward_eager(clip))
    assert "pyramid_levels" not in repr(one)
    with pytest.raises(ValueError, match="pyramid_levels"):
        RepresentationFlow(2, pyramid_levels=0)


@pytest.mark.parametrize("gradient", GRADIENTS[1:])
def test_pyramid_follows_motion_larger_than_a_pixel(gradient):
    single = quality_epe(RepresentationFlow(1, iterations=50, gradient=gradient), "translation", 112)
    pyramid = quality_epe(RepresentationFlow(1, iterations=50, gradient=gradient, pyramid_levels=3), "translation", 112)
    assert pyramid < 0.5 * single and pyramid < 0.2, (single, pyramid)


def test_pyramid_keeps_shapes_and_state_dict_and_is_differentiable():
    torch.manual_seed(0)
    layer = RepresentationFlow(2, iterations=2, pyramid_levels=3, learn_gradient=True).double()
    assert layer.state_dict().keys() == RepresentationFlow(2).state_dict().keys()  # parameters shared by levels
    clip = (torch.rand(1, 2, 3, 17, 11, dtype=torch.float64) * 255).requires_grad_(True)
    out = layer(clip)
    assert out.shape == (1, 4, 2, 17, 11) and torch.isfinite(out).all()
    small = (torch.rand(1, 1, 2, 9, 8, dtype=torch.float64) * 255).requires_grad_(True)
    layer1 = RepresentationFlow(1, iterations=2, pyramid_levels=2).double()
    params = dict(layer1.named_parameters())
    names = [n for n, p in layer1.named_parameters() if p.requires_grad]

    def fn1(x, *values):
        return torch.func.functional_call(layer1, dict(zip(names, values)), (x,))

    inputs = (small,) + tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn1, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_model_config_records_the_gradient_kind_and_old_configs_mean_sobel():
    from repflow_core.model import ModelConfig

    assert ModelConfig().gradient == "sobel_fd" and ModelConfig().pyramid_levels == 1
    old = ModelConfig().to_dict()
    del old["gradient"], old["pyramid_levels"]
    restored = ModelConfig.from_dict(old)
    assert restored.gradient == "sobel" and restored.pyramid_levels == 1
    assert ModelConfig.from_dict(ModelConfig().to_dict()).gradient == "sobel_fd"
