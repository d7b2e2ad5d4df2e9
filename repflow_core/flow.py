"""The representation-flow layer (Piergiovanni & Ryoo, ICLR/CVPR 2019, Sec. 3.2, Algorithm 1, Eqs. 2-10).

The layer runs a fixed number of TV-L1 iterations (Zach et al. 2007) on every channel of a CNN feature map,
for every pair of consecutive frames, and returns the x and y flow of each channel. All of its parameters
(theta, lambda, tau, the divergence kernels and optionally the gradient kernels) are learnable.

Conventions (pinned by tests):
- Input ``(B, C, T, H, W)``; frames ``t`` and ``t + 1`` are paired for ``t = 0 .. T-2``.
- Output ``(B, 2C, T-1, H, W)`` = ``torch.cat([u_x, u_y], 1)``: all x-flows, then all y-flows.
- x runs along W (columns), y along H (rows). ``u`` is the displacement of content from frame t to t+1:
  positive x means content moving to the right (increasing column), positive y means moving down.
- Flow is computed per channel: the same small kernels are applied to every channel separately, as a
  grouped (depthwise) convolution with ``groups=C``. (Folding channels into the batch and running a
  1-channel convolution is the same operation but 2.4x slower on the CPU here.)

Choices where the paper is silent or ambiguous (documented here because they change numbers):
- Gradient kernels are applied as cross-correlations oriented so they give the *true* derivative
  (``F[x+1] - F[x-1]`` for x). Eq. 8 writes the Sobel kernel as a convolution; the authors' public code
  applies that array as a cross-correlation, which negates the gradient and hence the flow.
- The Sobel kernel is scaled by 1/8 so that it measures intensity per pixel. Then ``u`` is in pixels and
  the TV-L1 defaults theta=0.3, lambda=0.15, tau=0.25 keep their usual meaning for [0, 255] images
  (the unscaled kernel would shrink ``u`` eightfold and move the thresholds of Eq. 3).
- The dual step (Eq. 5) uses ``tau / theta`` as in TV-L1 (Zach et al.), TVNet and the authors' code:
  ``p = (p + tau/theta * grad u) / (1 + tau/theta * |grad u|)``.
- Image gradients use replicate padding: zero padding would create a strong artificial edge along the
  border of a [0, 255] image, and with it spurious border flow.

Implementations (``RepresentationFlow(impl=...)``): this module's ``flow_pairs`` is the eager reference,
a direct transcription of Algorithm 1; ``repflow_core.kernels`` holds fused kernels in a registry keyed by
device (on the CPU a native C++ kernel, 13-19x faster forward and 10-15x forward+backward, see
BENCHMARKS.md; on CUDA a Triton kernel where installed) that must match it to 1e-4 relative
(test/test_kernels_cpu.py). ``impl="auto"`` (the default) uses a fused kernel wherever one supports the
call (CPU float32/bfloat16/float16) and is available, else the eager layer; ``"eager"`` and ``"fused"``
force a choice (``"fused"`` falls back to eager with one warning if it cannot run); ``"triton"`` forces the
Triton kernel (an error if it cannot run). ``REPFLOW_FLOW_IMPL=eager|fused|auto|triton`` or
:func:`set_default_impl` replace what ``"auto"`` means for the whole process. The policy and the reasons for
it are in ``repflow_core.kernels``'s docstring.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import flow_pyramid, kernels  # neither imports this module: no import cycle
from .flow_pyramid import MIN_PYRAMID_SIDE, upsample_flow, warp_backward  # noqa: F401 (public here since issue 16)

GRADIENT_KINDS = ("sobel", "central", "sobel_fd")
PYRAMID_SOLVES = ("residual", "total")  # what each coarse-to-fine solve estimates (class docstring)
PYRAMID_INTERPS = ("bilinear", "bicubic")  # how the second frame is warped between solves
NORMALISED_MAX = 255.0  # Sec. 3.2: features are normalised to the range of standard images.
IMPLS = ("auto", "eager", "fused") + kernels.NAMED_IMPLS
ENV_IMPL = "REPFLOW_FLOW_IMPL"
LOG = logging.getLogger("repflow_core.flow")


def _impl_from_env() -> str:
    value = os.environ.get(ENV_IMPL, "auto").strip().lower() or "auto"
    if value not in IMPLS:
        LOG.warning("%s=%r is not one of %s; using 'auto'", ENV_IMPL, value, IMPLS)
        return "auto"
    return value


_default_impl = _impl_from_env()


def default_impl() -> str:
    """What ``impl="auto"`` layers do in this process: ``auto`` (fused where supported), ``eager`` or
    ``fused``. Read from ``REPFLOW_FLOW_IMPL`` at import; changed by :func:`set_default_impl`."""
    return _default_impl


def set_default_impl(impl: str) -> str:
    """Set what ``impl="auto"`` layers do in this process; returns the previous setting."""
    global _default_impl
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    previous, _default_impl = _default_impl, impl
    return previous


def _inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


def _sobel_x() -> torch.Tensor:
    """Eq. 8 Sobel x-kernel, as a cross-correlation giving +d/dx, scaled to unit gain (1/8)."""
    return torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


class RepresentationFlow(nn.Module):
    """Algorithm 1: learnable TV-L1 flow of every channel of a feature map between consecutive frames.

    Args:
        channels: number of feature channels C (each gets its own flow; kernels are shared).
        iterations: number of TV-L1 iterations (paper: 10, or 20 for the large models).
        gradient: ``"sobel_fd"`` (default): Sobel for the image gradient (Eq. 8), forward differences for
            grad u (0 at the last row/column), whose negative adjoint is exactly Eq. 9's divergence with
            w = [-1, 1] (backward differences). Gradient and divergence being an adjoint pair is what makes
            the primal-dual iteration converge: EPE on known motion falls from 10 to 50 iterations and stays
            (BENCHMARKS.md, flow quality). ``"sobel"`` follows Eqs. 8 and 10 literally (Sobel for the image
            gradient and for grad u): not adjoint to Eq. 9, it gets *worse* past ~10 iterations (EPE doubles
            by 50); it was the default before, and checkpoints that do not name a kind use it.
            ``"central"`` follows TVNet and the authors' code: central differences [-0.5, 0, 0.5] for the
            image gradient, forward differences for grad u (0 at the last row/column) and the divergence
            as their negative adjoint (backward differences, Eq. 6).
        learn_params: learn theta, lambda, tau (Table 2: learning them helps).
        learn_divergence: learn the divergence kernels w_x, w_y of Eq. 9 (Table 2: helps).
        learn_gradient: learn the gradient kernels (Table 2: hurts; off by default).
        eps: guard added to every denominator and under every square root.
        theta, lam, tau: initial values of the TV-L1 weights (the paper's 0.3, 0.15, 0.25).
        impl: ``"auto"`` (fused kernel where supported, else this eager reference), ``"eager"``,
            ``"fused"`` or ``"triton"``; see the module docstring. Not part of the state dict: checkpoints do not depend
            on it, and it can be changed at any time (``layer.impl = "eager"``).
        pyramid_levels: 1 (default) is Algorithm 1 at one scale. More runs it coarse to fine (as TV-L1
            implementations do, Zach et al. Sec. 4): each level halves H and W (area averaging), and from the
            coarsest up the flow so far is upsampled x2 (bilinear, values doubled), the second frame is
            backward-warped by it (bilinear ``grid_sample``) and ``iterations`` iterations of Algorithm 1
            estimate the remaining flow, which is added. Differentiable; the parameters are shared by all
            levels; the fused kernel, where it runs, runs each level. Follows motions of ~2^(levels-1) px.
        pyramid_warps: linearisations per level (default 1). Each warp re-warps the second frame by the flow
            so far and runs ``iterations`` iterations of Algorithm 1 again (as TV-L1's warps, Zach et al.).
        pyramid_solve: ``"residual"`` (default, the behaviour before these options): each solve estimates the
            flow *increment* from zero, so the TV term regularises the increment. ``"total"``: each solve
            estimates the *total* flow linearised at the current flow u0 (TV-L1 proper: TV acts on the whole
            flow). Eq. 2 at u0 is ``rho(u) = F2w - F1 + grad F2w . (u - u0)``; handing Algorithm 1 the first
            frame ``F1 + grad F2w . (u0 - m)`` gives exactly that ``rho_c`` for ``u - m`` starting at 0
            (m = u0's spatial mean, a constant TV ignores), so every kernel (eager, fused CPU, Triton) runs
            unchanged. Needs ~50 iterations per solve (each starts from m, not from u0).
        pyramid_interp: how the second frame is warped, ``"bilinear"`` (default) or ``"bicubic"`` (as OpenCV's
            TV-L1; bilinear's blur biases the linearisation at sub-pixel shifts: 0.042 -> 0.022 px measured).
            ``pyramid_levels=3, pyramid_warps=2, pyramid_solve="total", pyramid_interp="bicubic"`` with 50
            iterations: EPE within 2x of OpenCV TV-L1's at < 1/10 of its time (BENCHMARKS.md).
    """

    def __init__(
        self,
        channels: int,
        iterations: int = 10,
        gradient: str = "sobel_fd",
        learn_params: bool = True,
        learn_divergence: bool = True,
        learn_gradient: bool = False,
        eps: float = 1e-6,
        theta: float = 0.3,
        lam: float = 0.15,
        tau: float = 0.25,
        impl: str = "auto",
        pyramid_levels: int = 1,
        pyramid_warps: int = 1,
        pyramid_solve: str = "residual",
        pyramid_interp: str = "bilinear",
    ) -> None:
        super().__init__()
        if pyramid_levels < 1:
            raise ValueError(f"pyramid_levels must be >= 1, got {pyramid_levels}")
        if pyramid_warps < 1:
            raise ValueError(f"pyramid_warps must be >= 1, got {pyramid_warps}")
        if pyramid_solve not in PYRAMID_SOLVES:
            raise ValueError(f"pyramid_solve must be one of {PYRAMID_SOLVES}, got {pyramid_solve!r}")
        if pyramid_interp not in PYRAMID_INTERPS:
            raise ValueError(f"pyramid_interp must be one of {PYRAMID_INTERPS}, got {pyramid_interp!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if gradient not in GRADIENT_KINDS:
            raise ValueError(f"gradient must be one of {GRADIENT_KINDS}, got {gradient!r}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        for name, value in (("theta", theta), ("lam", lam), ("tau", tau)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.channels = channels
        self.iterations = iterations
        self.gradient = gradient
        self.eps = eps
        self.impl = impl
        self.pyramid_levels = pyramid_levels
        self.pyramid_warps = pyramid_warps
        self.pyramid_solve = pyramid_solve
        self.pyramid_interp = pyramid_interp

        # theta, lambda, tau are stored as softplus pre-activations: whatever the optimiser does to the
        # raw value, the effective weight stays strictly positive and the iteration stays well defined.
        def scalar(value: float) -> nn.Parameter:
            return nn.Parameter(torch.tensor(_inverse_softplus(value)), requires_grad=learn_params)

        self.theta_raw = scalar(theta)
        self.lambda_raw = scalar(lam)
        self.tau_raw = scalar(tau)

        # Eq. 9: divergence kernels w_x = [-1, 1] (along W) and w_y = [-1, 1]^T (along H), applied to p
        # zero-padded on its first column / row: d[i] = p[i] - p[i-1], d[0] = p[0].
        self.div_x = nn.Parameter(torch.tensor([[[[-1.0, 1.0]]]]), requires_grad=learn_divergence)
        self.div_y = nn.Parameter(torch.tensor([[[[-1.0], [1.0]]]]), requires_grad=learn_divergence)

        if gradient == "sobel":
            image_x = _sobel_x().view(1, 1, 3, 3)
            flow_x = image_x.clone()  # Eq. 10: grad u with the same Sobel kernel.
        elif gradient == "sobel_fd":
            image_x = _sobel_x().view(1, 1, 3, 3)  # Eq. 8
            flow_x = torch.tensor([[[[-1.0, 1.0]]]])  # forward difference: the adjoint of Eq. 9's [-1, 1]
        else:
            image_x = torch.tensor([[[[-0.5, 0.0, 0.5]]]])
            flow_x = torch.tensor([[[[-1.0, 1.0]]]])  # forward difference u[i+1] - u[i]
        self.image_grad_x = nn.Parameter(image_x, requires_grad=learn_gradient)
        self.image_grad_y = nn.Parameter(image_x.transpose(2, 3).clone(), requires_grad=learn_gradient)
        self.flow_grad_x = nn.Parameter(flow_x, requires_grad=learn_gradient)
        self.flow_grad_y = nn.Parameter(flow_x.transpose(2, 3).clone(), requires_grad=learn_gradient)

    # --- effective TV-L1 weights -------------------------------------------------------------------
    @property
    def theta(self) -> torch.Tensor:
        return F.softplus(self.theta_raw) + self.eps

    @property
    def lam(self) -> torch.Tensor:
        return F.softplus(self.lambda_raw) + self.eps

    @property
    def tau(self) -> torch.Tensor:
        return F.softplus(self.tau_raw) + self.eps

    def extra_repr(self) -> str:
        levels = getattr(self, "pyramid_levels", 1)
        pyramid = ""
        if levels > 1:
            warps, solve, interp = self._pyramid_options()
            pyramid = f", pyramid_levels={levels}, pyramid_warps={warps}, pyramid_solve={solve!r}, " \
                      f"pyramid_interp={interp!r}"
        return (f"channels={self.channels}, iterations={self.iterations}, gradient={self.gradient!r}, "
                f"impl={self.impl!r}" + pyramid)

    def _pyramid_options(self) -> tuple[int, str, str]:
        """(warps, solve, interp); modules pickled before these options existed get today's defaults."""
        return (getattr(self, "pyramid_warps", 1), getattr(self, "pyramid_solve", "residual"),
                getattr(self, "pyramid_interp", "bilinear"))

    # --- spatial operators on (N, C, H, W): one shared kernel applied to each channel ----------------
    @staticmethod
    def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, kernel.expand(channels, 1, -1, -1), groups=channels)

    def _image_gradient(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 8 (or central differences): gradient of F2 with replicate padding."""
        kh, kw = self.image_grad_x.shape[-2:]
        gx = self._depthwise(F.pad(img, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate"), self.image_grad_x)
        kh, kw = self.image_grad_y.shape[-2:]
        gy = self._depthwise(F.pad(img, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate"), self.image_grad_y)
        return gx, gy

    def _flow_gradient(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 10 (Sobel) or forward differences with 0 at the last column/row (central mode)."""
        if self.gradient in kernels.SOBEL_FLOW_GRADIENT:
            padded = F.pad(u, (1, 1, 1, 1), mode="replicate")
            return self._depthwise(padded, self.flow_grad_x), self._depthwise(padded, self.flow_grad_y)
        # Padding the far side with zeros would give -u[last]; the forward difference is defined as 0
        # there (Neumann boundary), which is what makes the divergence its exact negative adjoint.
        ux = F.pad(self._depthwise(u, self.flow_grad_x), (0, 1, 0, 0))
        uy = F.pad(self._depthwise(u, self.flow_grad_y), (0, 0, 0, 1))
        return ux, uy

    def _divergence(self, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """Eq. 9: divergence(p) = p_x * w_x + p_y * w_y, p zero-padded on the first column / row.

        In ``central`` mode the last column of p_x (last row of p_y) is always 0, because the forward
        difference of u is 0 there, so this also equals the adjoint form with d[-1] = -p[-2].
        """
        return (self._depthwise(F.pad(px, (1, 0, 0, 0)), self.div_x)
                + self._depthwise(F.pad(py, (0, 0, 1, 0)), self.div_y))

    # --- Algorithm 1 --------------------------------------------------------------------------------
    def flow_pairs(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run Algorithm 1 on feature pairs ``f1, f2`` of shape (N, C, H, W); returns (u_x, u_y)."""
        eps = self.eps
        theta, lam, tau = self.theta, self.lam, self.tau
        lam_theta = lam * theta
        tau_over_theta = tau / theta

        gx, gy = self._image_gradient(f2)
        grad_sq = gx * gx + gy * gy
        threshold = lam_theta * grad_sq
        neg_threshold = -threshold
        neg_inv_grad_sq = -1.0 / (grad_sq + eps)
        rho_c = f2 - f1  # Algorithm 1 with u0 = 0
        g = torch.stack([gx, gy])  # (2, N, C, H, W)

        # u and the dual fields hold both flow components on a leading axis: u = [u_x, u_y], so one
        # broadcast expression updates both; the depthwise convolutions see them as a batch of 2N.
        shape = g.shape
        u = f1.new_zeros(shape)
        px = torch.zeros_like(u)
        py = torch.zeros_like(u)
        for _ in range(self.iterations):
            rho = rho_c + gx * u[0] + gy * u[1]  # Eq. 2
            # Eq. 3 as one multiplier of grad F2: +lambda*theta, -lambda*theta or -rho / |grad F2|^2.
            step = torch.where(
                rho < neg_threshold,
                lam_theta,
                torch.where(rho > threshold, -lam_theta, rho * neg_inv_grad_sq),
            )
            v = u + step * g
            u = v + theta * self._divergence(px.flatten(0, 1), py.flatten(0, 1)).view(shape)  # Eq. 4
            dux, duy = self._flow_gradient(u.flatten(0, 1))  # Eq. 10
            dux, duy = dux.view(shape), duy.view(shape)
            norm = torch.sqrt(dux * dux + duy * duy + eps)
            denom = 1.0 + tau_over_theta * norm  # Eq. 5
            px = (px + tau_over_theta * dux) / denom
            py = (py + tau_over_theta * duy) / denom
        return u[0], u[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, 2C, T-1, H, W), x-flows of all channels then y-flows."""
        if x.dim() != 5:
            raise ValueError(f"RepresentationFlow expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"RepresentationFlow built for {self.channels} channels, got {c}")
        if t < 2:
            raise ValueError(f"RepresentationFlow needs at least 2 frames, got T={t}")
        kernel = self.fused_kernel(x)
        if getattr(self, "pyramid_levels", 1) > 1:
            return self._coarse_to_fine(x, kernel)
        if kernel is not None:
            return kernel.run(self, x)
        return self.forward_eager(x)

    def fused_kernel(self, x: torch.Tensor):
        """The fused kernel that :meth:`forward` uses for ``x``, or None for the eager reference."""
        impl = getattr(self, "impl", "auto")  # modules pickled before impl existed
        impl = _default_impl if impl == "auto" else impl
        return kernels.select(self, x, impl)

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """The eager reference of :meth:`forward` (Algorithm 1 via :meth:`flow_pairs`), whatever ``impl``."""
        if getattr(self, "pyramid_levels", 1) > 1:
            return self._coarse_to_fine(x, None)
        b, c, t, h, w = x.shape
        # (B, C, T, H, W) -> (B, T, C, H, W) -> (B*(T-1), C, H, W): one row per frame pair.
        frames = x.transpose(1, 2)
        f1 = frames[:, :-1].reshape(-1, c, h, w)
        f2 = frames[:, 1:].reshape(-1, c, h, w)
        ux, uy = self.flow_pairs(f1, f2)
        ux = ux.view(b, t - 1, c, h, w)
        uy = uy.view(b, t - 1, c, h, w)
        return torch.cat([ux, uy], 2).transpose(1, 2).contiguous()


    # --- coarse to fine (pyramid_levels > 1) ----------------------------------------------------------
    def _solve_pairs(self, f1: torch.Tensor, f2: torch.Tensor, kernel) -> torch.Tensor:
        """Algorithm 1 on pairs (N, C, H, W) -> u (2, N, C, H, W), with the fused kernel or eagerly."""
        if kernel is None:
            return torch.stack(self.flow_pairs(f1, f2))
        out = kernel.run(self, torch.stack([f1, f2], 2))  # (N, 2C, 1, H, W)
        return out[:, :, 0].unflatten(1, (2, f1.shape[1])).transpose(0, 1)

    def _coarse_to_fine(self, x: torch.Tensor, kernel) -> torch.Tensor:
        """``pyramid_levels`` levels of Algorithm 1 with warping between them (see the class docstring)."""
        return flow_pyramid.coarse_to_fine(self, x, kernel)

    def _warp_and_solve(self, f1: torch.Tensor, f2: torch.Tensor, u: torch.Tensor | None, kernel, solve: str,
                        interp: str) -> torch.Tensor:
        """One linearisation of the coarse-to-fine loop: :func:`repflow_core.flow_pyramid.warp_and_solve`."""
        return flow_pyramid.warp_and_solve(self, f1, f2, u, kernel, solve, interp)


def normalise_to_image_range(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sec. 3.2: map each (sample, channel) of (B, C, T, H, W) features to [0, 255].

    Statistics are taken per sample, so a prediction never depends on the other clips in the batch, and
    per channel, because the flow treats every channel as an image of its own. A constant channel
    (max == min) maps to 0 instead of dividing by zero.
    """
    flat = x.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    scale = NORMALISED_MAX / torch.clamp(hi - lo, min=eps)
    scale = torch.where(hi - lo > eps, scale, torch.zeros_like(scale))
    return ((flat - lo) * scale).view_as(x)


class FlowBlock(nn.Module):
    """Representation flow inside a CNN (Sec. 3.2, Fig. 1, appendix A).

    1x1x1 conv C -> C' (default 32), normalise to [0, 255], flow (2C' channels), 1x3x3 conv 2C' -> C
    (appendix A: a 3x3 conv), batch norm, residual with the input's frames 0..T-2, ReLU.
    Input (B, C, T, H, W), output (B, C, T-1, H, W).
    """

    def __init__(
        self,
        channels: int,
        flow_channels: int = 32,
        iterations: int = 10,
        gradient: str = "sobel_fd",
        learn_params: bool = True,
        learn_divergence: bool = True,
        learn_gradient: bool = False,
        pyramid_levels: int = 1,
        pyramid_warps: int = 1,
        pyramid_solve: str = "residual",
        pyramid_interp: str = "bilinear",
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(channels, flow_channels, kernel_size=1, bias=False)
        self.flow = RepresentationFlow(
            flow_channels,
            iterations=iterations,
            gradient=gradient,
            learn_params=learn_params,
            learn_divergence=learn_divergence,
            learn_gradient=learn_gradient,
            pyramid_levels=pyramid_levels,
            pyramid_warps=pyramid_warps,
            pyramid_solve=pyramid_solve,
            pyramid_interp=pyramid_interp,
        )
        self.project = nn.Conv3d(2 * flow_channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = normalise_to_image_range(self.reduce(x))
        flow = self.flow(features)
        return F.relu(x[:, :, :-1] + self.bn(per_frame_conv(self.project, flow)))


def per_frame_conv(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a Conv3d with a (1, kh, kw) kernel, run as the 2-D convolution of every frame.

    Same weights and result (up to float rounding); PyTorch has no fast CPU path for such a Conv3d
    (it runs ``slow_conv3d``), while the 2-D one uses mkldnn: 2.7x faster for FlowBlock.project.
    """
    if (conv.kernel_size[0], conv.stride[0], conv.dilation[0]) != (1, 1, 1) or conv.padding_mode != "zeros" \
            or not isinstance(conv.padding, tuple) or conv.padding[0] != 0:
        return conv(x)
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    y = F.conv2d(frames, conv.weight.squeeze(2), conv.bias, conv.stride[1:], conv.padding[1:], conv.dilation[1:],
                 conv.groups)
    return y.view(b, t, *y.shape[1:]).transpose(1, 2)


class FlowConvFlow(nn.Module):
    """Flow-of-flow as Flow-Conv-Flow (FcF, Sec. 3.2, Table 5): flow block, conv + BN + ReLU, flow block.

    The conv between the two flow layers lets the network turn flow into a representation whose own flow
    is consistent (Table 5: FcF 62.3 vs. flow-of-flow directly 47.2). Output has T-2 frames.
    """

    def __init__(self, channels: int, **flow_kwargs) -> None:
        super().__init__()
        self.flow1 = FlowBlock(channels, **flow_kwargs)
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(channels)
        self.flow2 = FlowBlock(channels, **flow_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flow1(x)
        x = F.relu(self.bn(self.conv(x)))
        return self.flow2(x)


def flow_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of every RepresentationFlow inside ``module`` (theta, lambda, tau, kernels)."""
    params: list[nn.Parameter] = []
    for sub in module.modules():
        if isinstance(sub, RepresentationFlow):
            params.extend(sub.parameters())
    return params


def parameter_groups(
    module: nn.Module,
    base_lr: float,
    weight_decay: float = 0.0,
    flow_lr_scale: float = 0.01,
) -> list[dict]:
    """Optimiser groups with the flow parameters at ``flow_lr_scale`` x the base rate (appendix A).

    The paper found the flow parameters need 0.01 x lr, "likely due to the accumulation of gradients
    from the many iterations". They also get no weight decay: decaying the raw softplus values of
    theta/lambda/tau or the divergence kernels towards 0 would pull the layer away from TV-L1.
    Only trainable parameters are returned; BN and bias parameters keep the base weight decay.
    """
    flow_ids = {id(p) for p in flow_parameters(module)}
    flow = [p for p in module.parameters() if id(p) in flow_ids and p.requires_grad]
    rest = [p for p in module.parameters() if id(p) not in flow_ids and p.requires_grad]
    groups = [{"params": rest, "lr": base_lr, "weight_decay": weight_decay, "name": "network"}]
    if flow:
        groups.append({"params": flow, "lr": base_lr * flow_lr_scale, "weight_decay": 0.0, "name": "flow"})
    return groups


def count_flow_layers(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, RepresentationFlow))


def iter_flow_layers(module: nn.Module) -> Iterable[RepresentationFlow]:
    return (m for m in module.modules() if isinstance(m, RepresentationFlow))
