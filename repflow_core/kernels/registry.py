"""The registry of fused flow kernels and the selection policy (re-exported by ``repflow_core.kernels``).

Kept apart from the package's ``__init__`` so that kernel modules import it (``from .registry import ...``)
without importing the package that imports them: the import graph has no cycle. Imports nothing from
``repflow_core.flow``; a layer is only used through its attributes (duck typing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG = logging.getLogger("repflow_core.kernels")

# The kernel shapes each gradient kind uses; a fused kernel supports exactly these (the packed interface
# below pads them into 3x3 image kernels, 2-tap or 3x3 flow kernels and 2-tap divergence kernels).
STANDARD_SHAPES = {
    "sobel": {"image_grad_x": (3, 3), "image_grad_y": (3, 3), "flow_grad_x": (3, 3), "flow_grad_y": (3, 3)},
    "central": {"image_grad_x": (1, 3), "image_grad_y": (3, 1), "flow_grad_x": (1, 2), "flow_grad_y": (2, 1)},
    "sobel_fd": {"image_grad_x": (3, 3), "image_grad_y": (3, 3), "flow_grad_x": (1, 2), "flow_grad_y": (2, 1)},
}
# Gradient kinds whose grad u is the 3x3 replicate-padded stencil (the packed interface's ``sobel=True``);
# the others use forward differences (0 at the far edge) with the divergence as their negative adjoint.
SOBEL_FLOW_GRADIENT = ("sobel",)
# Kernels that a layer can force by name (``RepresentationFlow(impl="triton")``); the others are reached
# through "auto" / "fused" only.
NAMED_IMPLS = ("triton",)

_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _WARNED:
        _WARNED.add(key)
        LOG.warning(message)


def forget_warning(key: str) -> None:
    _WARNED.discard(key)


@dataclass(frozen=True)
class FusedKernel:
    """A fused implementation of ``RepresentationFlow.forward_single`` for one device type.

    ``is_available()`` says whether the kernel can run at all here (it may build or load it the first
    time); ``unsupported(layer, x)`` returns None when ``run(layer, x)`` can handle the call, else a short
    reason. ``run(layer, x)`` maps x (B, C, T, H, W) to what the eager single-level layer returns
    (B, 2C, T-1, H, W) (same shape and dtype, within 1e-4 relative in float32) and is differentiable like it.
    Pyramid levels (``layer.pyramid_levels``) are handled by the layer, which calls ``run`` once per level.
    """

    name: str
    device_type: str
    description: str
    is_available: Callable[[], bool]
    unsupported: Callable[[object, torch.Tensor], str | None]
    run: Callable[[object, torch.Tensor], torch.Tensor]


# Device type -> fused kernels in order of preference.
REGISTRY: dict[str, list[FusedKernel]] = {"cpu": [], "cuda": []}


def register(kernel: FusedKernel, first: bool = False) -> FusedKernel:
    """Add ``kernel`` to :data:`REGISTRY` for its device type (replacing one of the same name); with
    ``first`` it becomes the preferred kernel of that device type. Returns the kernel."""
    kernels = [k for k in REGISTRY.setdefault(kernel.device_type, []) if k.name != kernel.name]
    REGISTRY[kernel.device_type] = [kernel] + kernels if first else kernels + [kernel]
    return kernel


def find(name: str) -> FusedKernel | None:
    """The registered kernel called ``name`` (any device type), or None."""
    for kernels in REGISTRY.values():
        for kernel in kernels:
            if kernel.name == name:
                return kernel
    return None


def select(layer, x: torch.Tensor, impl: str) -> FusedKernel | None:
    """The fused kernel for this call, or None for the eager layer.

    ``impl`` is the layer's effective implementation (``"auto"`` already resolved through the process
    default by the caller, or left as ``"auto"``):
    - ``"auto"``: the first kernel of ``x``'s device type that supports the call, else None silently
      (float64 reference runs, devices without a kernel).
    - ``"fused"``: the same, but falling back to eager is reported by one warning per reason.
    - ``"eager"``: None.
    - any other name (``"triton"``): that kernel, or a RuntimeError saying why it cannot run this call
      (not registered, unavailable, or unsupported): forcing a named kernel never silently runs another.
    """
    if impl == "eager":
        return None
    if impl in ("auto", "fused"):
        reasons = []
        for kernel in REGISTRY.get(x.device.type, []):
            reason = kernel.unsupported(layer, x)
            if reason is None:
                return kernel
            reasons.append(f"{kernel.name}: {reason}")
        if impl == "fused":
            why = "; ".join(reasons) or f"no fused kernel for device type {x.device.type!r}"
            warn_once(f"select:{why}", f"RepresentationFlow impl='fused' falls back to the eager layer ({why})")
        return None
    kernel = find(impl)
    if kernel is None:
        known = sorted(k.name for kernels in REGISTRY.values() for k in kernels)
        raise RuntimeError(f"RepresentationFlow impl={impl!r}: no fused kernel named {impl!r} is registered "
                           f"(registered: {known}; is its package installed?)")
    if not kernel.is_available():
        raise RuntimeError(f"RepresentationFlow impl={impl!r}: the {impl} kernel is unavailable here")
    reason = kernel.unsupported(layer, x)
    if reason is not None:
        raise RuntimeError(f"RepresentationFlow impl={impl!r} cannot run this call: {reason}")
    return kernel


def available_impls(device: str | torch.device) -> list[str]:
    """Fused implementations usable on ``device`` (names for bench tables): ``"fused"`` when one of the
    device's kernels is available, plus each available kernel that can be forced by name (:data:`NAMED_IMPLS`)."""
    kernels = [k for k in REGISTRY.get(torch.device(device).type, []) if k.is_available()]
    return (["fused"] + [k.name for k in kernels if k.name in NAMED_IMPLS]) if kernels else []


def make_fused(module, impl: str = "fused"):
    """Every flow layer inside ``module`` switched to implementation ``impl``; returns ``module``.

    Flow layers are recognised by duck type (an ``impl`` attribute and a ``fused_kernel`` method), so this
    module needs no import of ``repflow_core.flow``.
    """
    for sub in module.modules():
        if hasattr(sub, "fused_kernel") and hasattr(sub, "impl"):
            sub.impl = impl
    return module


def _as_3x3(kernel: torch.Tensor) -> torch.Tensor:
    """(1, 1, kh, kw) odd-sized kernel -> (9,) centred in a 3x3 (zero taps add exactly nothing)."""
    kh, kw = kernel.shape[-2:]
    return F.pad(kernel.reshape(kh, kw), ((3 - kw) // 2, (3 - kw) // 2, (3 - kh) // 2, (3 - kh) // 2)).reshape(9)


def uses_sobel_flow_gradient(layer) -> bool:
    """The packed interface's ``sobel`` flag: True for a 3x3 grad u, False for forward differences."""
    return layer.gradient in SOBEL_FLOW_GRADIENT


def standard_shape_problem(layer) -> str | None:
    """None if the layer's kernels have the standard shapes of its gradient kind, else the reason."""
    shapes = STANDARD_SHAPES.get(layer.gradient)
    if shapes is None:
        return f"gradient {layer.gradient!r}"
    for name, shape in shapes.items():
        if tuple(getattr(layer, name).shape) != (1, 1) + shape:
            return f"{name} of shape {tuple(getattr(layer, name).shape)}"
    if tuple(layer.div_x.shape) != (1, 1, 1, 2) or tuple(layer.div_y.shape) != (1, 1, 2, 1):
        return "divergence kernels of a non-standard shape"
    return None


def pack_parameters(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused kernels' (coef, image_kernels, flow_kernels, div_kernels), shared by every kernel.

    coef = [theta, lambda * theta, tau / theta] (3,); image_kernels (2, 9): the x and y image-gradient
    kernels of Eq. 8 as 3x3 (replicate padding); flow_kernels (2, 9): the 3x3 grad u of Eq. 10 when
    :func:`uses_sobel_flow_gradient`, else the forward-difference taps (u[j], u[j+1]) in the first two
    slots; div_kernels (4,): [w_x, w_y] of Eq. 9. Built with differentiable torch ops, so autograd maps a
    kernel's parameter gradients back onto theta_raw, lambda_raw, tau_raw and the kernels.
    """
    theta, lam, tau = layer.theta.float(), layer.lam.float(), layer.tau.float()
    coef = torch.stack([theta, lam * theta, tau / theta])
    image = torch.stack([_as_3x3(layer.image_grad_x), _as_3x3(layer.image_grad_y)]).float()
    if uses_sobel_flow_gradient(layer):
        flow = torch.stack([layer.flow_grad_x.reshape(9), layer.flow_grad_y.reshape(9)])
    else:
        flow = torch.stack([F.pad(layer.flow_grad_x.reshape(2), (0, 7)), F.pad(layer.flow_grad_y.reshape(2), (0, 7))])
    div = torch.cat([layer.div_x.reshape(2), layer.div_y.reshape(2)])
    return coef, image, flow.float(), div.float()
