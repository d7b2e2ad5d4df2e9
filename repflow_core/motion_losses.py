"""Unsupervised motion losses: warping, photometric (L1, Charbonnier, census) and smoothness terms.

These are the losses of the two related papers in ``shared/papers``:

- *Learning Optical Flow for Action Classification* (service robots): the joint loss
  ``L_G = a1 L_C + a2 L_P + a3 L_S`` (its Eq. 3) with the Charbonnier photometric loss after warping
  ``L_P = rho(W(I_k, O_k) - I_{k-1})`` (Eq. 1) and the Charbonnier smoothness
  ``L_S = rho(d_x O_x) + rho(d_y O_x) + rho(d_x O_y) + rho(d_y O_y)`` (Eq. 2), ``rho(x) = (x^2 + eps^2)^alpha``.
- *UF-TSN* (poster): photometric L1 ``L_diff``, census ``L_census`` (soft Hamming distance of census
  transforms, after UnFlow) and the edge-aware smoothness
  ``L_smooth = sum_d |d_d U| exp(-|d_d I|_1)``, combined as ``(l1 L_diff + l2 L_census + l3 L_smooth) / M``.

Conventions, shared with :class:`repflow_core.flow.RepresentationFlow`: a flow field is (N, 2, H, W) in pixels,
channel 0 along W (x, right positive), channel 1 along H (y, down positive); the flow of a pair (I1, I2) maps a
pixel of I1 to where its content is in I2, so *backward warping* ``warp(I2, flow)(p) = I2(p + flow(p))``
reconstructs I1. Every loss is a mean over the pixels that the mask keeps (so its scale does not depend on the
image size) and is differentiable with respect to the flow and the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "MotionLossWeights",
    "backward_warp",
    "census_loss",
    "census_transform",
    "charbonnier",
    "forward_backward_mask",
    "image_gradients",
    "masked_mean",
    "motion_loss_terms",
    "photometric_charbonnier",
    "photometric_l1",
    "smoothness_charbonnier",
    "smoothness_edge_aware",
]


def _check_flow(flow: torch.Tensor, image: torch.Tensor | None = None) -> None:
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (N, 2, H, W), got shape {tuple(flow.shape)}")
    if image is not None:
        if image.dim() != 4:
            raise ValueError(f"image must be (N, C, H, W), got shape {tuple(image.shape)}")
        if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in batch or size")


def charbonnier(x: torch.Tensor, eps: float = 1e-3, alpha: float = 0.45) -> torch.Tensor:
    """The generalised Charbonnier penalty ``rho(x) = (x^2 + eps^2)^alpha`` (service-robot paper, Eqs. 1-2).

    ``alpha = 0.5`` is the classic Charbonnier (a differentiable L1); 0.45 is the robust choice of the
    unsupervised-flow literature (Sun et al.; UnFlow), slightly sub-linear so outliers weigh less.
    """
    return (x * x + eps * eps) ** alpha


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the pixels where ``mask`` (broadcastable, in [0, 1]) is set; plain mean without."""
    if mask is None:
        return values.mean()
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` at ``p + flow(p)`` (bilinear, differentiable; the warping function W of Eq. 1).

    Returns ``(warped, valid)``: ``valid`` is (N, 1, H, W), 1 where the sampling point lies inside the image
    and 0 where it falls out of frame (those pixels have no counterpart and must not count in a loss).
    """
    _check_flow(flow, image)
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype, device=flow.device),
        torch.arange(w, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    # align_corners=True: -1 and +1 are the centres of the first and last pixels, so pixel i is 2i/(size-1) - 1.
    grid = torch.stack([2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0], dim=-1)
    warped = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return warped, inside.unsqueeze(1).to(image.dtype)


def photometric_l1(i1: torch.Tensor, i2: torch.Tensor, flow: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """UF-TSN's ``L_diff``: mean |I1 - warp(I2, flow)| over in-frame (and ``mask``ed) pixels."""
    warped, valid = backward_warp(i2, flow)
    keep = valid if mask is None else valid * mask
    return masked_mean((i1 - warped).abs(), keep)


def photometric_charbonnier(i1: torch.Tensor, i2: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None,
                            eps: float = 1e-3, alpha: float = 0.45) -> torch.Tensor:
    """Eq. 1 of the service-robot paper: ``rho(W(I2, flow) - I1)`` averaged over in-frame pixels."""
    warped, valid = backward_warp(i2, flow)
    keep = valid if mask is None else valid * mask
    return masked_mean(charbonnier(warped - i1, eps, alpha), keep)


def _grey(image: torch.Tensor) -> torch.Tensor:
    if image.shape[1] == 3:
        weights = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (image * weights).sum(1, keepdim=True)
    return image.mean(1, keepdim=True)


def census_transform(image: torch.Tensor, radius: int = 3, scale: float = 255.0) -> torch.Tensor:
    """Soft census transform (UnFlow): for each of the (2r+1)^2 neighbours, ``d / sqrt(0.81 + d^2)`` with
    ``d`` the neighbour minus the centre of the grey image in 0-255 units (``scale`` brings the image there:
    255 for images in [0, 1], 1 for images or normalised features already in [0, 255]).
    Returns (N, (2r+1)^2, H, W); borders replicate."""
    if radius < 1:
        raise ValueError(f"census radius must be >= 1, got {radius}")
    grey = _grey(image) * scale
    size = 2 * radius + 1
    patches = F.unfold(F.pad(grey, (radius,) * 4, mode="replicate"), size)  # (N, size^2, H*W)
    patches = patches.view(grey.shape[0], size * size, *grey.shape[-2:])
    diff = patches - grey
    return diff / torch.sqrt(0.81 + diff * diff)


def census_loss(i1: torch.Tensor, i2: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None,
                radius: int = 3, scale: float = 255.0) -> torch.Tensor:
    """UF-TSN's ``L_census``: soft Hamming distance ``sum d^2 / (0.1 + d^2)`` between the census transforms of
    I1 and of warp(I2, flow), through a Charbonnier penalty, averaged over the pixels whose whole census patch
    is in frame (in both images: the valid mask eroded by ``radius``, and away from the image border)."""
    warped, valid = backward_warp(i2, flow)
    t1, t2 = census_transform(i1, radius, scale), census_transform(warped, radius, scale)
    d = t1 - t2
    hamming = (d * d / (0.1 + d * d)).sum(1, keepdim=True)
    # A patch that reaches an out-of-frame sample compares against the zero padding: erode the mask.
    complete = -F.max_pool2d(-valid, 2 * radius + 1, stride=1, padding=radius)
    complete[..., :radius, :] = 0
    complete[..., -radius:, :] = 0
    complete[..., :, :radius] = 0
    complete[..., :, -radius:] = 0
    keep = complete if mask is None else complete * mask
    return masked_mean(charbonnier(hamming, 1e-2, 0.45), keep)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along W and H: (N, C, H, W-1) and (N, C, H-1, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def smoothness_edge_aware(flow: torch.Tensor, image: torch.Tensor, edge_weight: float = 1.0) -> torch.Tensor:
    """UF-TSN's ``L_smooth = sum_d |d_d U|_1 exp(-edge_weight |d_d I|_1)``: flow may change where the image has
    an edge. ``|d_d I|_1`` is the mean over the image's channels; ``edge_weight`` sets the scale at which an
    image step counts as an edge (1 for images in [0, 255]; about 10-150 for images in [0, 1])."""
    _check_flow(flow, image)
    fx, fy = image_gradients(flow)
    ix, iy = image_gradients(image)
    wx = torch.exp(-edge_weight * ix.abs().mean(1, keepdim=True))
    wy = torch.exp(-edge_weight * iy.abs().mean(1, keepdim=True))
    return (fx.abs() * wx).mean() + (fy.abs() * wy).mean()


def smoothness_charbonnier(flow: torch.Tensor, eps: float = 1e-3, alpha: float = 0.45) -> torch.Tensor:
    """Eq. 2 of the service-robot paper: rho(d_x O_x) + rho(d_y O_x) + rho(d_x O_y) + rho(d_y O_y)."""
    _check_flow(flow)
    fx, fy = image_gradients(flow)
    return charbonnier(fx, eps, alpha).mean() * 2 + charbonnier(fy, eps, alpha).mean() * 2


def forward_backward_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor, alpha1: float = 0.01,
                          alpha2: float = 0.5) -> torch.Tensor:
    """Non-occlusion mask of UnFlow: a pixel is visible in both frames when the forward flow and the backward
    flow sampled at its target cancel, ``|f + b(p + f)|^2 < alpha1 (|f|^2 + |b(p + f)|^2) + alpha2``.
    Returns (N, 1, H, W) in {0, 1}, without gradient (a mask, not a loss)."""
    with torch.no_grad():
        bw_at_target, valid = backward_warp(flow_bw, flow_fw)
        mismatch = (flow_fw + bw_at_target).pow(2).sum(1, keepdim=True)
        bound = alpha1 * (flow_fw.pow(2).sum(1, keepdim=True) + bw_at_target.pow(2).sum(1, keepdim=True)) + alpha2
        return (mismatch < bound).to(flow_fw.dtype) * valid


@dataclass
class MotionLossWeights:
    """Weights of the unsupervised terms beside the cross-entropy (0 = off), e.g. ``loss.photometric``.

    photometric: Charbonnier photometric loss (service-robot Eq. 1; UF-TSN's L1 when ``photometric_l1``).
    census: UF-TSN's census term. smoothness: Charbonnier smoothness (Eq. 2), or the edge-aware one
    (UF-TSN) when ``edge_aware``.
    """

    photometric: float = 0.0
    census: float = 0.0
    smoothness: float = 0.0
    photometric_l1: bool = False
    edge_aware: bool = False
    edge_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("photometric", "census", "smoothness", "edge_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"loss.{name} must be a number >= 0, got {value!r}")

    @property
    def active(self) -> bool:
        return self.photometric > 0 or self.census > 0 or self.smoothness > 0


def motion_loss_terms(i1: torch.Tensor, i2: torch.Tensor, flow: torch.Tensor, weights: MotionLossWeights,
                      mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The weighted unsupervised terms for frames (N, C, H, W) and their flow (N, 2, H, W); only the terms
    with a non-zero weight are computed. Keys: ``photometric``, ``census``, ``smoothness`` (already
    multiplied by their weights, so the joint loss of Eq. 3 is ``ce + sum(terms.values())``)."""
    terms: dict[str, torch.Tensor] = {}
    if weights.photometric > 0:
        photometric = photometric_l1 if weights.photometric_l1 else photometric_charbonnier
        terms["photometric"] = weights.photometric * photometric(i1, i2, flow, mask)
    if weights.census > 0:
        terms["census"] = weights.census * census_loss(i1, i2, flow, mask)
    if weights.smoothness > 0:
        if weights.edge_aware:
            terms["smoothness"] = weights.smoothness * smoothness_edge_aware(flow, i1, weights.edge_weight)
        else:
            terms["smoothness"] = weights.smoothness * smoothness_charbonnier(flow)
    return terms
