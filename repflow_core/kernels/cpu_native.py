"""The native C++ CPU kernel as the custom op ``repflow::tvl1_flow``, and its registry entry ``cpu-native``.

Every (sample, channel, frame pair) image runs all of its TV-L1 iterations (Algorithm 1, Eqs. 2-10) while
its dozen H x W fields stay in the L1/L2 cache, instead of streaming ~20 full (N, C, H, W) tensors through
memory per iteration as the eager layer does. Backward recomputes the forward of one image at a time,
keeping that image's per-iteration states in a per-thread buffer, and sweeps back through the iterations
(hand-written adjoint of Eqs. 2-10, checked against the eager layer's autograd by
``test/test_kernels_cpu.py``). So autograd saves only the layer's input: no per-iteration activations at
all. Parameter gradients are accumulated in double precision, per (sample, channel) task, and summed in
task order: the result does not depend on the thread count. The source is ``tvl1_flow.cpp``; building and
loading it is :mod:`.native_build`.

Why not ``torch.compile`` (inductor C++): prototyped and measured on this project's 2-core machine at B=8,
C'=32, T=16, 28x28, 10 iterations. Compiling the whole unrolled loop cost 139 s (forward) + 228 s
(backward) of compilation for 3.6x forward / 1.9x forward+backward over eager; compiling one iteration and
looping in Python cost 32 s + 91 s for 5.2x / 1.8x. Inductor cannot fuse across iterations (every stencil
needs its input materialised), so it stays memory bound and autograd still saves per-iteration tensors.
The native kernel is 13-19x / 10-15x with no compilation per process (BENCHMARKS.md). As a custom op
(autograd and fake-tensor support) a model holding the layer can still be wrapped in ``torch.compile``;
the op is opaque to inductor.

Limits: no double backward through the fused op (an error says so; the eager layer supports it);
torch.func transforms (vmap, jacrev) need the eager layer (``impl="eager"``).
"""

from __future__ import annotations

import ctypes

import torch

from . import native_build
from .registry import FusedKernel, pack_parameters, standard_shape_problem, uses_sobel_flow_gradient

_N_PARAM_GRADS = 43  # theta, lambda*theta, tau/theta, image kernels 2x9, flow kernels 2x9, divergence 2x2


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _shape(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(x.shape), dtype=torch.int64)


def _coef(coef: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.cat([coef.detach().float().reshape(3), torch.tensor([eps], dtype=torch.float32)])


def _require_lib() -> ctypes.CDLL:
    lib = native_build.native_library()
    if lib is None:
        raise RuntimeError(f"the native flow kernel is unavailable: {native_build.native_error()}")
    return lib


# Defined with the low-level Library API rather than @torch.library.custom_op: the latter wraps the kernel
# so that its first call imports torch._dynamo (1-5 s per process here); this way a process that never
# compiles never pays for it. The schema, fake (meta) kernels and autograd formula are the same. Another
# device's kernel (e.g. CUDA) may add ``_OPS.impl("tvl1_flow", ..., "CUDA")`` and share all of this.
_OPS = torch.library.Library("repflow", "DEF")
_OPS.define("tvl1_flow(Tensor x, Tensor coef, Tensor image_kernels, Tensor flow_kernels, Tensor div_kernels, "
            "int iterations, bool sobel, float eps) -> Tensor")
_OPS.define("tvl1_flow_backward(Tensor grad_out, Tensor x, Tensor coef, Tensor image_kernels, Tensor flow_kernels, "
            "Tensor div_kernels, int iterations, bool sobel, float eps, int need_kernels) "
            "-> (Tensor, Tensor, Tensor, Tensor, Tensor)")


def _tvl1_flow_cpu(
    x: torch.Tensor,
    coef: torch.Tensor,
    image_kernels: torch.Tensor,
    flow_kernels: torch.Tensor,
    div_kernels: torch.Tensor,
    iterations: int,
    sobel: bool,
    eps: float,
) -> torch.Tensor:
    """``repflow::tvl1_flow`` on the CPU: Algorithm 1 on x (B, C, T, H, W) float32 -> (B, 2C, T-1, H, W).

    The arguments are :func:`repflow_core.kernels.pack_parameters`'s (see there); ``sobel`` selects the
    3x3 grad u (Eq. 10) instead of forward differences.
    """
    lib = _require_lib()
    x = x.contiguous()
    b, c, t, h, w = x.shape
    out = x.new_empty((b, 2 * c, t - 1, h, w))
    ig, fg, dv = (k.detach().float().contiguous() for k in (image_kernels, flow_kernels, div_kernels))
    coef_eps, shape = _coef(coef, eps), _shape(x)
    rc = lib.repflow_forward(_ptr(x), _ptr(out), _ptr(shape), iterations, int(sobel), _ptr(coef_eps), _ptr(ig),
                             _ptr(fg), _ptr(dv), torch.get_num_threads())
    if rc != 0:
        raise RuntimeError("native flow kernel failed (forward)")
    return out


def _tvl1_flow_backward_cpu(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    coef: torch.Tensor,
    image_kernels: torch.Tensor,
    flow_kernels: torch.Tensor,
    div_kernels: torch.Tensor,
    iterations: int,
    sobel: bool,
    eps: float,
    need_kernels: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``repflow::tvl1_flow`` w.r.t. (x, coef, image_kernels, flow_kernels, div_kernels).

    need_kernels: bit 1 divergence, bit 2 flow-gradient, bit 4 image-gradient kernel gradients (the others
    are returned as zeros; they cost an extra pass each, and by default only the divergence learns).
    """
    lib = _require_lib()
    x, grad_out = x.contiguous(), grad_out.contiguous().float()
    ig, fg, dv = (k.detach().float().contiguous() for k in (image_kernels, flow_kernels, div_kernels))
    coef_eps, shape = _coef(coef, eps), _shape(x)
    grad_x = torch.empty_like(x)
    grads = torch.zeros(_N_PARAM_GRADS, dtype=torch.float64)
    rc = lib.repflow_backward(_ptr(x), _ptr(grad_out), _ptr(grad_x), _ptr(grads), _ptr(shape), iterations, int(sobel),
                              _ptr(coef_eps), _ptr(ig), _ptr(fg), _ptr(dv), need_kernels, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError("native flow kernel failed (backward)")
    grads = grads.to(coef.dtype)
    return (grad_x, grads[0:3].clone(), grads[3:21].reshape(2, 9).clone(), grads[21:39].reshape(2, 9).clone(),
            grads[39:43].clone())


def _tvl1_flow_fake(x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps):
    b, c, t, h, w = x.shape
    return x.new_empty((b, 2 * c, t - 1, h, w))


def _tvl1_flow_backward_fake(grad_out, x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps,
                             need_kernels):
    return (torch.empty_like(x), coef.new_empty(3), coef.new_empty(2, 9), coef.new_empty(2, 9), coef.new_empty(4))


def _setup_context(ctx, inputs, output):
    x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps = inputs
    ctx.save_for_backward(x, coef, image_kernels, flow_kernels, div_kernels)
    ctx.config = (iterations, sobel, eps)


def _backward(ctx, grad_out):
    x, coef, image_kernels, flow_kernels, div_kernels = ctx.saved_tensors
    needs = ctx.needs_input_grad
    need = (1 if needs[4] else 0) | (2 if needs[3] else 0) | (4 if needs[2] else 0)
    grads = tvl1_flow_backward(grad_out, x, coef, image_kernels, flow_kernels, div_kernels, *ctx.config, need)
    return tuple(g if n else None for g, n in zip(grads, needs[:5])) + (None, None, None)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("double backward through the fused flow kernel (repflow::tvl1_flow) is not supported; "
                       "use RepresentationFlow(impl='eager') for higher-order gradients")


_OPS.impl("tvl1_flow", _tvl1_flow_cpu, "CPU")
_OPS.impl("tvl1_flow_backward", _tvl1_flow_backward_cpu, "CPU")
torch.library.register_fake("repflow::tvl1_flow", _tvl1_flow_fake, lib=_OPS)
torch.library.register_fake("repflow::tvl1_flow_backward", _tvl1_flow_backward_fake, lib=_OPS)
torch.library.register_autograd("repflow::tvl1_flow", _backward, setup_context=_setup_context, lib=_OPS)
torch.library.register_autograd("repflow::tvl1_flow_backward", _no_double_backward, lib=_OPS)
tvl1_flow = torch.ops.repflow.tvl1_flow
tvl1_flow_backward = torch.ops.repflow.tvl1_flow_backward


def _unsupported(layer, x: torch.Tensor) -> str | None:
    if x.device.type != "cpu":
        return f"device {x.device.type}"
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"dtype {x.dtype} (the kernel computes in float32)"
    problem = standard_shape_problem(layer)
    if problem is not None:
        return problem
    if native_build.native_library() is None:
        return f"native kernel unavailable ({native_build.native_error()})"
    return None


def _run(layer, x: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    coef, image, flow, div = pack_parameters(layer)
    out = tvl1_flow(x.float().contiguous(), coef, image, flow, div, layer.iterations, uses_sobel_flow_gradient(layer),
                    float(layer.eps))
    return out if dtype == torch.float32 else out.to(dtype)


CPU_NATIVE = FusedKernel(
    name="cpu-native",
    device_type="cpu",
    description="native C++ kernel (custom op repflow::tvl1_flow), per-image iterations in cache",
    is_available=lambda: native_build.native_library() is not None,
    unsupported=_unsupported,
    run=_run,
)
