"""The coarse-to-fine options (``pyramid_warps`` / ``_solve`` / ``_interp``, issue 16) through the Triton kernel.

The layer's Python loop calls the kernel once per warp and level, so the options need nothing of the kernel; this
runs them under Triton's interpreter (``TRITON_INTERPRET=1``, set before the kernels are first imported, as in
test_kernels_triton.py) on tiny shapes (the interpreter takes ~0.1-0.3 s per image-iteration here) and holds
the result to the eager reference with test_kernels_triton's bound.
"""

import copy

import torch
from triton_helpers import rel, require_triton_interpreter  # noqa: E402 (sets TRITON_INTERPRET first)

from repflow_core import flow_quality  # noqa: E402
from repflow_core.flow import RepresentationFlow  # noqa: E402

triton_flow = require_triton_interpreter()


def test_total_bicubic_warps_through_triton_match_eager():
    torch.manual_seed(0)
    layer = RepresentationFlow(1, iterations=2, gradient="central", pyramid_levels=2, pyramid_warps=2,
                               pyramid_solve="total", pyramid_interp="bicubic")
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    img1, img2, _ = flow_quality.known_motion_pair("translation", 16)
    x = torch.from_numpy(flow_quality.np.stack([img1, img2]))[None, None, :, :10, :9].contiguous()
    grad_out = torch.randn(1, 2, 1, 10, 9)
    results = {}
    for impl in ("triton", "eager"):
        layer.impl = impl
        if impl == "triton":
            assert layer.fused_kernel(x) is triton_flow.TRITON_KERNEL
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        results[impl] = (out.detach(), torch.autograd.grad(out, [xi, layer.theta_raw], grad_out))
    ref64 = copy.deepcopy(layer).double()
    xi = x.double().requires_grad_(True)
    out64 = ref64(xi)
    grads64 = torch.autograd.grad(out64, [xi, ref64.theta_raw], grad_out.double())
    (out, grads), (ref, ref_grads) = results["triton"], results["eager"]
    assert rel(out, ref) < 1e-4 + rel(ref, out64), rel(out, ref)
    for got, want, want64 in zip(grads, ref_grads, grads64):
        assert rel(got, want) < 1e-4 + rel(want, want64), rel(got, want)
