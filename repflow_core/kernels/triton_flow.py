"""The Triton kernel of the flow iterations (CUDA; on a CPU only under ``TRITON_INTERPRET=1``).

Registered in :mod:`repflow_core.kernels.registry` as the ``"cuda"`` kernel named ``"triton"`` when this
module is imported (the registry imports it lazily: on CUDA, or for ``RepresentationFlow(impl="triton")``).
The kernels themselves (``_triton_kernels.py``, Algorithm 1 / Eqs. 2-10 forward and hand-written backward,
by recomputation so that autograd saves only the input) are imported on first use, so importing this
module never fails: without triton the kernel reports itself unavailable, with the reason.

The op is ``repflow_triton::tvl1_flow`` (own namespace, CPU and CUDA keys, fake kernels for
``torch.compile``, autograd formula) with the same arguments as the native CPU op: x (B, C, T, H, W) float32,
coef = [theta, lambda*theta, tau/theta], image kernels (2, 9), flow kernels (2, 9), divergence (4,).
Float16/bfloat16 inputs are computed in float32 and cast back. Limits: H * W <= :data:`MAX_PIXELS`
(one program holds a whole image in registers), no double backward.

Memory: forward keeps 6 * next_pow2(H*W) floats of scratch per program; backward 9 * next_pow2(H*W) floats of
scratch and K * 6 * H * W floats of iteration states per program (transient). Programs are capped so the
backward scratch stays under ``REPFLOW_TRITON_SCRATCH_MB`` (default 1024), whatever the batch.
"""

from __future__ import annotations

import os

import torch

from .registry import FusedKernel, pack_parameters, register, standard_shape_problem, uses_sobel_flow_gradient

MAX_PIXELS = 128 * 128
ENV_SCRATCH_MB = "REPFLOW_TRITON_SCRATCH_MB"
_STATE: dict[str, object] = {}


def interpreter_active() -> bool:
    """Whether Triton runs its interpreter (kernels on CPU tensors): ``TRITON_INTERPRET=1`` in the environment
    when the kernels are first imported."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def kernels():
    """The compiled-on-demand kernels module, or None (the reason in :func:`import_error`)."""
    if "module" not in _STATE:
        try:
            from . import _triton_kernels

            _STATE["module"] = _triton_kernels
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken triton install
            _STATE["module"] = None
            _STATE["error"] = f"triton cannot be imported: {type(exc).__name__}: {exc}"
    return _STATE["module"]


def import_error() -> str | None:
    kernels()
    return _STATE.get("error")  # type: ignore[return-value]


def is_available() -> bool:
    """Triton imports and has somewhere to run: a CUDA device, or the interpreter."""
    return kernels() is not None and (torch.cuda.is_available() or interpreter_active())


def unsupported(layer, x: torch.Tensor) -> str | None:
    if kernels() is None:
        return import_error()
    if x.device.type == "cpu":
        if not interpreter_active():
            return "a CPU tensor needs TRITON_INTERPRET=1 (Triton's interpreter) set before the first use"
    elif x.device.type != "cuda":
        return f"device {x.device.type}"
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"dtype {x.dtype} (the kernel computes in float32)"
    if x.shape[-2] * x.shape[-1] > MAX_PIXELS:
        return f"{x.shape[-2]}x{x.shape[-1]} feature maps (at most {MAX_PIXELS} pixels per image)"
    return standard_shape_problem(layer)


def run(layer, x: torch.Tensor) -> torch.Tensor:
    """RepresentationFlow's single-level forward through the Triton op (differentiable like the eager one)."""
    dtype = x.dtype
    coef, image, flow, div = pack_parameters(layer)
    out = tvl1_flow(x.float().contiguous(), coef, image.to(x.device), flow.to(x.device), div.to(x.device),
                    int(layer.iterations), uses_sobel_flow_gradient(layer), float(layer.eps))
    return out if dtype == torch.float32 else out.to(dtype)


# --- launch configuration --------------------------------------------------------------------------------
def _block(h: int, w: int) -> int:
    return max(16, 1 << (h * w - 1).bit_length())


# (kernel, BLOCK) -> num_warps, overriding :func:`_num_warps` (gpu_check's in-run sweep; tests).
_WARPS_OVERRIDE: dict[tuple[str, int], int] = {}


def _num_warps(block: int, kernel: str) -> int:
    """Warps per program. A program holds BLOCK * fields floats in registers and an SM has 64K registers, so a
    thread's cap falls as warps rise (255 up to 8 warps, 128 at 16, 64 at 32); what matters is the elements per
    thread times the live fields staying under that cap. Forward (~13 fields): 8-16 elements per thread, 8 warps
    at 56x56 (measured 9-11x eager on an H200). Backward (~17 fields in the reverse sweep, more code): 4-8
    elements per thread, 4 warps at <= 32x32, 8 at 2048 pixels, 16 at 56x56, 32 beyond."""
    override = _WARPS_OVERRIDE.get((kernel, block))
    if override:
        return override
    if kernel == "forward":
        return max(4, min(16, block // 512))
    return max(4, min(32, block // 256))


def _launch_options(block: int, kernel: str) -> dict:
    """num_warps, and on CUDA ``maxnreg`` = the whole register file for one program (255 up to 8 warps, 128 at
    16, 64 at 32). Without it ptxas picked 32 registers at 8 warps and 64 at 16 for the 56x56 backward (ptxas
    13.4 -v, sm_90a) and spilled the rest; the interpreter takes no such option."""
    warps = _num_warps(block, kernel)
    if interpreter_active() or not _has_maxnreg():
        return {"num_warps": warps}
    return {"num_warps": warps, "maxnreg": min(255, 65536 // (32 * warps))}


def _has_maxnreg() -> bool:
    """Whether this Triton's CUDA backend takes ``maxnreg`` (Triton >= 3.0; an unknown launch option raises)."""
    if "maxnreg" not in _STATE:
        try:
            from triton.backends.nvidia.compiler import CUDAOptions

            _STATE["maxnreg"] = "maxnreg" in CUDAOptions.__dataclass_fields__
        except Exception:  # noqa: BLE001 - another backend layout: launch without it
            _STATE["maxnreg"] = False
    return bool(_STATE["maxnreg"])


def _programs(n: int, per_program_floats: int, device: torch.device, override: int | None = None) -> int:
    """Grid size of the persistent kernels: enough programs to fill the GPU, few enough that their scratch
    stays under the budget; small on the interpreter (it runs programs one after another)."""
    if override:
        return max(1, min(n, override))
    if device.type != "cuda":
        return max(1, min(n, 4))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    budget = int(os.environ.get(ENV_SCRATCH_MB, "1024")) * 2**20
    fit = max(1, budget // max(1, 4 * per_program_floats))
    return max(1, min(n, 8 * sms, fit))


_GRID_OVERRIDE: dict[str, int | None] = {"programs": None}  # tests: exercise the persistent loop


def _launch_args(x: torch.Tensor):
    b, c, t, h, w = x.shape
    return b * c * (t - 1), _block(h, w)


def _forward(x, coef, image_kernels, flow_kernels, div_kernels, iterations: int, sobel: bool, eps: float):
    mod = _require()
    x = x.contiguous()
    b, c, t, h, w = x.shape
    out = x.new_empty((b, 2 * c, t - 1, h, w))
    n, block = _launch_args(x)
    if n == 0:
        return out
    nprog = _programs(n, 6 * block, x.device, _GRID_OVERRIDE["programs"])
    scratch = x.new_empty(nprog * 6 * block)
    ig, fg, dv = (k.detach().float().contiguous() for k in (image_kernels, flow_kernels, div_kernels))
    mod.tvl1_forward_kernel[(nprog,)](x, out, scratch, coef.detach().float().contiguous(), ig, fg, dv, n, c, t, h, w,
                                      iterations, eps, nprog, SOBEL=bool(sobel), BLOCK=block,
                                      **_launch_options(block, "forward"))
    return out


def _backward(grad_out, x, coef, image_kernels, flow_kernels, div_kernels, iterations: int, sobel: bool, eps: float,
              need_kernels: int):
    mod = _require()
    x, grad_out = x.contiguous(), grad_out.contiguous().float()
    b, c, t, h, w = x.shape
    n, block = _launch_args(x)
    nprog = _programs(n, iterations * 6 * h * w + 9 * block, x.device, _GRID_OVERRIDE["programs"])
    states = x.new_empty(nprog * iterations * 6 * h * w)
    scratch = x.new_empty(nprog * 9 * block)
    gf1 = x.new_empty((b, c, t - 1, h, w))
    gf2 = x.new_empty((b, c, t - 1, h, w))
    gpar = torch.zeros((nprog, mod.G_SLOTS), dtype=torch.float64, device=x.device)
    ig, fg, dv = (k.detach().float().contiguous() for k in (image_kernels, flow_kernels, div_kernels))
    if n:
        coef32 = coef.detach().float().contiguous()
        mod.tvl1_backward_kernel[(nprog,)](x, grad_out, gf1, gf2, gpar, states, scratch, coef32, ig, fg, dv,
                                           n, c, t, h, w, iterations, eps, nprog, 0, SOBEL=bool(sobel),
                                           NEED_FG=bool(need_kernels & 2), NEED_IG=bool(need_kernels & 4), BLOCK=block,
                                           **_launch_options(block, "backward"))
    grad_x = torch.zeros_like(x)
    grad_x[:, :, :-1] += gf1
    grad_x[:, :, 1:] += gf2
    g = gpar.sum(0).to(coef.dtype)
    if not need_kernels & 1:
        g[mod.G_DV:mod.G_N] = 0
    return (grad_x, g[0:3].clone(), g[mod.G_IG:mod.G_FG].reshape(2, 9).clone(),
            g[mod.G_FG:mod.G_DV].reshape(2, 9).clone(), g[mod.G_DV:mod.G_N].clone())


def _require():
    mod = kernels()
    if mod is None:
        raise RuntimeError(f"the Triton flow kernel is unavailable: {import_error()}")
    return mod


# --- the op: schema, fake kernels (torch.compile), autograd ------------------------------------------------
_OPS = torch.library.Library("repflow_triton", "DEF")
_OPS.define("tvl1_flow(Tensor x, Tensor coef, Tensor image_kernels, Tensor flow_kernels, Tensor div_kernels, "
            "int iterations, bool sobel, float eps) -> Tensor")
_OPS.define("tvl1_flow_backward(Tensor grad_out, Tensor x, Tensor coef, Tensor image_kernels, Tensor flow_kernels, "
            "Tensor div_kernels, int iterations, bool sobel, float eps, int need_kernels) "
            "-> (Tensor, Tensor, Tensor, Tensor, Tensor)")


def _fake(x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps):
    b, c, t, h, w = x.shape
    return x.new_empty((b, 2 * c, t - 1, h, w))


def _fake_backward(grad_out, x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps, need_kernels):
    return (torch.empty_like(x), coef.new_empty(3), coef.new_empty(2, 9), coef.new_empty(2, 9), coef.new_empty(4))


def _setup_context(ctx, inputs, output):
    x, coef, image_kernels, flow_kernels, div_kernels, iterations, sobel, eps = inputs
    ctx.save_for_backward(x, coef, image_kernels, flow_kernels, div_kernels)  # only the input: no activations
    ctx.config = (iterations, sobel, eps)


def _autograd_backward(ctx, grad_out):
    x, coef, image_kernels, flow_kernels, div_kernels = ctx.saved_tensors
    needs = ctx.needs_input_grad
    need = (1 if needs[4] else 0) | (2 if needs[3] else 0) | (4 if needs[2] else 0)
    grads = tvl1_flow_backward(grad_out, x, coef, image_kernels, flow_kernels, div_kernels, *ctx.config, need)
    return tuple(g if n else None for g, n in zip(grads, needs[:5])) + (None, None, None)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("double backward through the Triton flow kernel is not supported; "
                       "use RepresentationFlow(impl='eager') for higher-order gradients")


for _key in ("CPU", "CUDA"):
    _OPS.impl("tvl1_flow", _forward, _key)
    _OPS.impl("tvl1_flow_backward", _backward, _key)
torch.library.register_fake("repflow_triton::tvl1_flow", _fake, lib=_OPS)
torch.library.register_fake("repflow_triton::tvl1_flow_backward", _fake_backward, lib=_OPS)
torch.library.register_autograd("repflow_triton::tvl1_flow", _autograd_backward, setup_context=_setup_context,
                                lib=_OPS)
torch.library.register_autograd("repflow_triton::tvl1_flow_backward", _no_double_backward, lib=_OPS)
tvl1_flow = torch.ops.repflow_triton.tvl1_flow
tvl1_flow_backward = torch.ops.repflow_triton.tvl1_flow_backward

TRITON_KERNEL = register(FusedKernel(
    name="triton",
    device_type="cuda",
    description="Triton kernel (repflow_triton::tvl1_flow): one program per image, fields in registers, "
                "backward by recomputation",
    is_available=is_available,
    unsupported=unsupported,
    run=run,
))
