"""Coarse to fine for the representation-flow layer (``RepresentationFlow(pyramid_levels > 1)``, issue 16).

Algorithm 1 (Eqs. 2-10) runs unchanged at each level and warp, through whichever kernel the layer chose (eager,
fused CPU, Triton): this module only builds the image pyramid, upsamples and warps, and chooses what each solve is
handed. The options and the measurements behind them are in ``RepresentationFlow``'s docstring and BENCHMARKS.md.
Functions take the layer as an argument; nothing here imports :mod:`repflow_core.flow` (no import cycle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_PYRAMID_SIDE = 4  # no pyramid level smaller than this (pixels)


def upsample_flow(u: torch.Tensor, size) -> torch.Tensor:
    """(2N, C, h, w) flow [x-components then y-components] -> size (H, W), bilinear, values rescaled."""
    h, w = u.shape[-2:]
    up = F.interpolate(u, size=tuple(size), mode="bilinear", align_corners=False)
    n = u.shape[0] // 2
    scale = torch.tensor([size[1] / w] * n + [size[0] / h] * n, dtype=u.dtype, device=u.device)
    return up * scale.view(-1, 1, 1, 1)


def warp_backward(img: torch.Tensor, ux: torch.Tensor, uy: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``img(x + u(x))`` per channel (``mode`` bilinear or bicubic, border values outside): frame t+1 moved back
    onto frame t.

    img, ux, uy: (N, C, H, W). Differentiable in the image and the flow (grid_sample)."""
    n, c, h, w = img.shape
    ys = torch.arange(h, dtype=img.dtype, device=img.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=img.dtype, device=img.device).view(1, 1, 1, w)
    gx = (xs + ux) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + uy) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], -1).reshape(n * c, h, w, 2)
    out = F.grid_sample(img.reshape(n * c, 1, h, w), grid, mode=mode, padding_mode="border", align_corners=True)
    return out.view(n, c, h, w)


def coarse_to_fine(layer, x: torch.Tensor, kernel) -> torch.Tensor:
    """``layer.pyramid_levels`` levels of Algorithm 1 with warping between them (RepresentationFlow's docstring).

    (B, C, T, H, W) -> (B, 2C, T-1, H, W) like the layer; ``kernel``: a fused kernel or None (eager).
    """
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2)
    pyramid = [(frames[:, :-1].reshape(-1, c, h, w), frames[:, 1:].reshape(-1, c, h, w))]
    for _ in range(layer.pyramid_levels - 1):
        f1, f2 = pyramid[-1]
        if min(f1.shape[-2:]) < 2 * MIN_PYRAMID_SIDE:  # stop before the forward differences degenerate
            break
        size = ((f1.shape[-2] + 1) // 2, (f1.shape[-1] + 1) // 2)
        pyramid.append((F.interpolate(f1, size=size, mode="area"), F.interpolate(f2, size=size, mode="area")))
    warps, solve, interp = layer._pyramid_options()
    u = None
    for f1, f2 in reversed(pyramid):
        if u is not None:
            u = upsample_flow(u.flatten(0, 1), f1.shape[-2:]).unflatten(0, (2, -1))
        for _ in range(warps):
            u = warp_and_solve(layer, f1, f2, u, kernel, solve, interp)
    ux, uy = (v.view(b, t - 1, c, h, w) for v in u)
    return torch.cat([ux, uy], 2).transpose(1, 2).contiguous()


def warp_and_solve(layer, f1: torch.Tensor, f2: torch.Tensor, u: torch.Tensor | None, kernel, solve: str,
                   interp: str) -> torch.Tensor:
    """One linearisation: warp f2 back by the flow so far ``u`` (2, N, C, H, W; None = zero) and solve.

    ``residual``: Algorithm 1 from u = 0 on (f1, warped f2) estimates the increment, added to u.
    ``total``: Algorithm 1 on (f1 + grad f2w . (u - m), f2w), m = u's spatial mean per pair, channel and
    component, has rho_c = f2w - f1 - grad f2w . (u - m): Eq. 2 linearised at u for the total flow minus m.
    Its solution plus m replaces u; TV acts on the total flow (a constant m does not change TV).
    """
    if u is None:  # the coarsest level's first solve: nothing to warp by, both modes agree
        return layer._solve_pairs(f1, f2, kernel)
    f2w = warp_backward(f2, u[0], u[1], interp)
    if solve == "residual":
        return u + layer._solve_pairs(f1, f2w, kernel)
    gx, gy = layer._image_gradient(f2w)  # the very kernel Algorithm 1 applies to its second frame (Eq. 8)
    # Start from u's spatial mean m instead of 0: TV(m + d) = TV(d) for a constant m, so solving for d = u - m
    # (rho_c shifted by grad f2w . (u - m)) is the same problem, but Algorithm 1, whose data step moves at
    # most lambda*theta*|grad F2| per iteration, starts near the answer (measured: 0.021 -> 0.012 px on a
    # 1.6 px translation at 112x112; unchanged on rotation/zoom, whose mean is ~0).
    mean = u.mean(dim=(-2, -1), keepdim=True)
    d = u - mean
    return mean + layer._solve_pairs(f1 + gx * d[0] + gy * d[1], f2w, kernel)
