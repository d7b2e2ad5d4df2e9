"""The flow layer's coarse-to-fine options (issue 16): ``pyramid_warps``, ``pyramid_solve``, ``pyramid_interp``.

Their defaults keep the layer exactly as before them; ``total`` solves with bicubic warping and a few warps per
level bring the layer within 2x of OpenCV TV-L1's EPE on the flow-quality pairs (BENCHMARKS.md); every option
runs through the fused CPU kernel as through the eager reference, and stays differentiable.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from repflow_core import flow_quality, kernels
from repflow_core.flow import MIN_PYRAMID_SIDE, RepresentationFlow, upsample_flow, warp_backward

TVL1_STYLE = dict(pyramid_warps=2, pyramid_solve="total", pyramid_interp="bicubic")


def epe_of(layer: RepresentationFlow, motion: str = "mixed", size: int = 112) -> float:
    img1, img2, truth = flow_quality.known_motion_pair(motion, size)
    clip = torch.from_numpy(flow_quality.np.stack([img1, img2]))[None, None]
    with torch.no_grad():
        return flow_quality.epe(layer.eval()(clip)[0, :, 0].numpy(), truth)


def old_coarse_to_fine(layer: RepresentationFlow, x: torch.Tensor) -> torch.Tensor:
    """The coarse-to-fine loop as it was before the options existed (one residual solve per level, bilinear)."""
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2)
    pyramid = [(frames[:, :-1].reshape(-1, c, h, w), frames[:, 1:].reshape(-1, c, h, w))]
    for _ in range(layer.pyramid_levels - 1):
        f1, f2 = pyramid[-1]
        if min(f1.shape[-2:]) < 2 * MIN_PYRAMID_SIDE:
            break
        size = ((f1.shape[-2] + 1) // 2, (f1.shape[-1] + 1) // 2)
        pyramid.append((F.interpolate(f1, size=size, mode="area"), F.interpolate(f2, size=size, mode="area")))
    u = None
    for f1, f2 in reversed(pyramid):
        if u is not None:
            u = upsample_flow(u.flatten(0, 1), f1.shape[-2:]).unflatten(0, (2, -1))
            f2 = warp_backward(f2, u[0], u[1])
            u = u + torch.stack(layer.flow_pairs(f1, f2))
        else:
            u = torch.stack(layer.flow_pairs(f1, f2))
    ux, uy = (v.view(b, t - 1, c, h, w) for v in u)
    return torch.cat([ux, uy], 2).transpose(1, 2).contiguous()


def perturbed(channels: int, iterations: int, gradient: str = "sobel_fd", **kwargs) -> RepresentationFlow:
    torch.manual_seed(0)
    layer = RepresentationFlow(channels, iterations=iterations, gradient=gradient, learn_gradient=True, **kwargs)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return layer


def test_default_options_are_the_coarse_to_fine_of_before_bit_for_bit():
    torch.manual_seed(0)
    clip = torch.rand(1, 2, 3, 20, 17, dtype=torch.float64) * 255
    layer = perturbed(2, 4, pyramid_levels=3).double()
    assert (layer.pyramid_warps, layer.pyramid_solve, layer.pyramid_interp) == (1, "residual", "bilinear")
    assert torch.equal(layer.forward_eager(clip), old_coarse_to_fine(layer, clip))
    for name in ("pyramid_warps", "pyramid_solve", "pyramid_interp"):  # modules pickled before the options
        delattr(layer, name)
    assert torch.equal(layer.forward_eager(clip), old_coarse_to_fine(layer, clip))
    assert "pyramid_warps=1" in repr(layer) and "pyramid" not in repr(RepresentationFlow(1))


def test_options_are_validated_with_their_names():
    for kwargs, name in ((dict(pyramid_warps=0), "pyramid_warps"), (dict(pyramid_solve="full"), "pyramid_solve"),
                         (dict(pyramid_interp="nearest"), "pyramid_interp")):
        with pytest.raises(ValueError, match=name):
            RepresentationFlow(1, pyramid_levels=2, **kwargs)


def test_total_solves_with_bicubic_warps_reach_tvl1_accuracy_where_residual_solves_do_not():
    """The 112x112 mixed pair (mean true flow 1.9 px): TV-L1 0.016 px; within 2x of it = 0.032."""
    residual = epe_of(RepresentationFlow(1, iterations=50, pyramid_levels=3))
    residual_warps = epe_of(RepresentationFlow(1, iterations=50, pyramid_levels=3, pyramid_warps=2))
    one_warp = epe_of(RepresentationFlow(1, iterations=50, pyramid_levels=3, pyramid_solve="total",
                                         pyramid_interp="bicubic"))
    tvl1_style = epe_of(RepresentationFlow(1, iterations=50, pyramid_levels=3, **TVL1_STYLE))
    assert tvl1_style < 0.032 and tvl1_style < 0.4 * residual, (tvl1_style, residual)
    assert tvl1_style < 0.7 * one_warp, (tvl1_style, one_warp)  # re-linearising is what closes the gap
    assert residual_warps > 0.032  # warps alone do not: TV on the increment keeps the coarse levels' errors


def test_total_solves_start_from_the_mean_flow_which_tv_ignores():
    """A pure 1.6 px translation: starting each total solve from the current mean (TV(m + d) = TV(d)) leaves
    Algorithm 1 only the deviations to find; TV-L1 itself gets 0.009 px here."""
    assert epe_of(RepresentationFlow(1, iterations=50, pyramid_levels=3, **TVL1_STYLE), "translation") < 0.015


def test_total_solve_equals_algorithm_1_linearised_at_the_current_flow():
    """``total``'s shifted first frame gives Algorithm 1 the rho_c of Eq. 2 linearised at u0, for u - m with m
    u0's spatial mean (one iteration from m, p = 0: exactly one thresholding step, Eq. 3)."""
    torch.manual_seed(1)
    layer = perturbed(1, 1).double()
    f1 = torch.rand(1, 1, 9, 8, dtype=torch.float64) * 255
    f2 = torch.rand(1, 1, 9, 8, dtype=torch.float64) * 255
    u0 = torch.randn(2, 1, 1, 9, 8, dtype=torch.float64)
    out = layer._warp_and_solve(f1, f2, u0, None, "total", "bicubic")
    f2w = warp_backward(f2, u0[0], u0[1], "bicubic")
    gx, gy = layer._image_gradient(f2w)
    m = u0.mean(dim=(-2, -1), keepdim=True)
    rho = f2w - f1 + gx * (m[0] - u0[0]) + gy * (m[1] - u0[1])  # Eq. 2 linearised at u0, evaluated at u = m
    lam_theta = layer.lam * layer.theta
    grad_sq = gx * gx + gy * gy
    step = torch.where(rho < -lam_theta * grad_sq, lam_theta,
                       torch.where(rho > lam_theta * grad_sq, -lam_theta, -rho / (grad_sq + layer.eps)))
    assert torch.allclose(out, m + torch.stack([step * gx, step * gy]), rtol=1e-12, atol=1e-12)  # Eq. 3


def outputs_and_grads(layer: RepresentationFlow, x: torch.Tensor, grad_out: torch.Tensor, impl: str):
    layer.impl = impl
    xi = x.clone().requires_grad_(True)
    out = layer(xi)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [xi] + [dict(layer.named_parameters())[n] for n in names], grad_out)
    return out.detach(), dict(zip(["input"] + names, grads))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("gradient", ["central", "sobel_fd"])
@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_options_match_between_the_fused_cpu_kernel_and_eager(gradient, interp):
    """Outputs: test_kernels_cpu's bound, 1e-4 relative plus the float32 eager reference's own error against
    float64. Gradients: the same with bilinear warps; with bicubic warps (whose chain through 6 solves amplifies
    the float32 rounding of the fused backward: 1e-4 - 2e-3 measured, against 1e-5 - 4e-4 for float32 eager)
    within 1e-3 + 10x the float32 eager's error of float64 (test_kernels_cpu's pyramid test allows 1e-3).
    Texture frames, as the layer sees images (random noise flips Eq. 3's branches in float32 alone)."""
    if kernels.native_library() is None:
        pytest.skip(f"native CPU flow kernel unavailable: {kernels.native_error()}")
    layer = perturbed(2, 4, gradient, pyramid_levels=3, **(TVL1_STYLE | {"pyramid_interp": interp}))
    img1, img2, _ = flow_quality.known_motion_pair("mixed", 24)
    frames = torch.from_numpy(flow_quality.np.stack([img1, img2, img1]))[:, :20, :17]
    x = torch.stack([frames, 255 - frames])[None].contiguous()  # (1, 2, 3, 20, 17)
    torch.manual_seed(2)
    grad_out = torch.randn(1, 4, 2, 20, 17)
    assert layer.fused_kernel(x) is kernels.CPU_NATIVE
    ref, ref_grads = outputs_and_grads(layer, x, grad_out, "eager")
    out, grads = outputs_and_grads(layer, x, grad_out, "fused")
    ref64, ref64_grads = outputs_and_grads(copy.deepcopy(layer).double(), x.double(), grad_out.double(), "eager")
    assert rel(out, ref) < 1e-4 + rel(ref, ref64), (rel(out, ref), rel(ref, ref64))
    for name, ref_grad in ref_grads.items():
        allowance = rel(ref_grad, ref64_grads[name])
        if interp == "bilinear":
            assert rel(grads[name], ref_grad) < 1e-4 + allowance, (name, rel(grads[name], ref_grad), allowance)
        else:
            assert rel(grads[name], ref64_grads[name]) < 1e-3 + 10 * allowance, (name, allowance)


def test_options_are_differentiable_in_the_input_and_every_parameter():
    layer = perturbed(1, 2, pyramid_levels=2, **TVL1_STYLE).double()
    torch.manual_seed(3)
    small = (torch.rand(1, 1, 2, 9, 8, dtype=torch.float64) * 255).requires_grad_(True)
    params = dict(layer.named_parameters())
    names = [n for n, p in layer.named_parameters() if p.requires_grad]

    def fn(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    inputs = (small,) + tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_model_config_records_the_options_and_old_configs_keep_todays_pyramid():
    from repflow_core.model import ActionNet, ModelConfig

    assert (ModelConfig().pyramid_warps, ModelConfig().pyramid_solve, ModelConfig().pyramid_interp) == \
        (1, "residual", "bilinear")
    old = ModelConfig().to_dict()
    del old["pyramid_warps"], old["pyramid_solve"], old["pyramid_interp"]
    assert ModelConfig.from_dict(old) == ModelConfig.from_dict(ModelConfig().to_dict())
    for field, value in (("pyramid_warps", 0), ("pyramid_warps", 17), ("pyramid_solve", "full"),
                         ("pyramid_interp", "area")):
        with pytest.raises(ValueError, match=field):
            ModelConfig(**{field: value}).validate()
    config = ModelConfig(width=0.25, num_classes=3, flow="fcf", pyramid_levels=2, **TVL1_STYLE).validate()
    layers = [m for m in ActionNet(config).modules() if isinstance(m, RepresentationFlow)]
    assert len(layers) == 2 and all((m.pyramid_warps, m.pyramid_solve, m.pyramid_interp) == (2, "total", "bicubic")
                                    for m in layers)
    assert copy.deepcopy(layers[0]).pyramid_solve == "total"


def test_flow_quality_suite_runs_the_styles_and_times_against_tvl1(tmp_path, capsys):
    import json

    out = tmp_path / "fq.json"
    assert flow_quality.main(["--sizes", "32", "--motions", "translation", "--gradients", "sobel_fd", "--iterations",
                              "3", "--levels", "2", "--pyramid", "1:residual:bilinear", "2:total:bicubic",
                              "--repeats", "1", "--uftsn-steps", "0", "--out", str(out)]) == 0
    methods = {r["method"] for r in json.loads(out.read_text())}
    assert {"layer sobel_fd, 3 it., 2 levels", "layer sobel_fd, 3 it., 2 levels x 2 warps, total, bicubic"} <= methods
    capsys.readouterr()
    with pytest.raises(SystemExit):
        flow_quality.main(["--pyramid", "2:full:bicubic", "--out", str(out)])
    assert "pyramid style '2:full:bicubic'" in capsys.readouterr().err
    # the ratio column: every method's median time over TV-L1's, timed in the same round robin
    fake = {"OpenCV TV-L1": flow_quality.farneback, "DIS": flow_quality.dis_medium}
    rows = {r.method: r for r in flow_quality.measure_interleaved(fake, 32, "translation", repeats=3)}
    assert rows["OpenCV TV-L1"].time_vs_tvl1 == 1.0
    assert rows["DIS"].time_vs_tvl1 == pytest.approx(rows["DIS"].ms_per_pair / rows["OpenCV TV-L1"].ms_per_pair)
    assert flow_quality.measure_interleaved({"DIS": flow_quality.dis_medium}, 32, "translation", 1)[0].time_vs_tvl1 \
        is None
