"""The Triton flow kernel (repflow_core.kernels.triton_flow) against the eager reference, on the CPU.

Triton's interpreter (``TRITON_INTERPRET=1``, read when the kernels are first imported, so it is set here
before that) runs the same kernels on CPU tensors; only their speed needs a GPU (tools/gpu_check.sh checks
them on CUDA). The interpreter is slow (~0.1-0.3 s per image-iteration on 2 shared cores), so shapes are tiny;
they still cover odd sizes, 1-row/1-column images, 1-5 iterations, every gradient kind, every learnable
tensor, several images per program (the persistent loop) and degenerate inputs. Gradients are held to the
same bound as the native kernel's (test_flow_fused.py): 1e-4 relative plus the float32 reference's own error
against float64. Skips only where triton cannot be installed (it ships for x86_64/aarch64 Linux).
"""

import copy

import pytest
import torch
from triton_helpers import rel, require_triton_interpreter  # noqa: E402 (sets TRITON_INTERPRET first)

from repflow_core import kernels  # noqa: E402
from repflow_core.flow import RepresentationFlow  # noqa: E402

triton_flow = require_triton_interpreter()


def make_layer(channels, iterations, gradient, seed, learn_gradient=True):
    """A layer with every tap learnable and moved off its symmetric default, so every gradient matters."""
    torch.manual_seed(seed)
    layer = RepresentationFlow(channels, iterations=iterations, gradient=gradient, learn_gradient=learn_gradient)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return layer


def outputs_and_grads(layer, x, grad_out, forward):
    xi = x.detach().clone().requires_grad_(True)
    out = forward(layer, xi)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    params = dict(layer.named_parameters())
    grads = torch.autograd.grad(out, [xi] + [params[n] for n in names], grad_out, allow_unused=True)
    return out.detach(), dict(zip(["input"] + names, grads))


def eager(layer, x):
    return layer.forward_eager(x)


def check_against_eager(layer, x, programs=None):
    out_ref = eager(layer, x)
    grad_out = torch.randn_like(out_ref)
    ref, ref_grads = outputs_and_grads(layer, x, grad_out, eager)
    ref64_grads = outputs_and_grads(copy.deepcopy(layer).double(), x.double(), grad_out.double(), eager)[1]
    triton_flow._GRID_OVERRIDE["programs"] = programs
    try:
        out, grads = outputs_and_grads(layer, x, grad_out, triton_flow.run)
    finally:
        triton_flow._GRID_OVERRIDE["programs"] = None
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert rel(out, ref) < 1e-4 + rel(ref, eager(copy.deepcopy(layer).double(), x.double())), rel(out, ref)
    assert grads.keys() == ref_grads.keys()
    assert len(grads) == 1 + 9  # input, theta/lambda/tau raw, 2 divergence, 4 gradient kernels
    for name, ref_grad in ref_grads.items():
        if ref_grad is None:  # unused by the eager graph (tau with 1 iteration: the last p is never read)
            assert grads[name] is None or not grads[name].any(), name
            continue
        assert grads[name] is not None, name
        allowance = rel(ref_grad, ref64_grads[name])
        assert rel(grads[name], ref_grad) < 1e-4 + allowance, (name, rel(grads[name], ref_grad), allowance)


# (gradient kind, (B, C, T, H, W), iterations, programs): odd sizes, a single row / column, 1-5 iterations,
# programs < images so that one program runs several images (the persistent loop, scratch reuse).
CASES = [
    ("sobel", (1, 1, 2, 5, 7), 1, None),
    ("sobel", (1, 2, 2, 3, 3), 3, 1),
    ("sobel", (1, 1, 2, 1, 5), 2, None),
    ("central", (1, 1, 3, 6, 5), 4, None),
    ("central", (2, 1, 2, 3, 3), 2, 1),
    ("sobel_fd", (1, 1, 2, 4, 7), 5, None),
    ("sobel_fd", (1, 1, 2, 5, 2), 2, None),
]


@pytest.mark.parametrize("gradient,shape,iterations,programs", CASES)
def test_matches_eager(gradient, shape, iterations, programs):
    layer = make_layer(shape[1], iterations, gradient, seed=len(shape) * iterations + shape[-1])
    torch.manual_seed(shape[-1] * 7 + iterations)
    x = torch.rand(shape) * 255.0
    check_against_eager(layer, x, programs)


@pytest.mark.parametrize("gradient,fill", [("sobel", 0.0), ("central", 77.0), ("sobel_fd", 255.0)])
def test_degenerate_inputs(gradient, fill):
    """Zero and constant features: no image gradient anywhere (every eps guard is hit), finite and equal."""
    layer = make_layer(1, 2, gradient, seed=3)
    x = torch.full((1, 1, 2, 4, 3), fill)
    out = triton_flow.run(layer, x)
    assert torch.isfinite(out).all()
    check_against_eager(layer, x)


def test_low_precision_inputs_are_computed_in_float32():
    layer = make_layer(1, 2, "sobel", seed=5, learn_gradient=False)
    x = torch.rand(1, 1, 2, 4, 4) * 255.0
    out = triton_flow.run(layer, x.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = layer.forward_eager(x.bfloat16().float())
    assert rel(out.float(), ref) < 1e-2  # bfloat16 output rounding only


def test_autograd_saves_only_the_input():
    """Backward by recomputation: nothing per iteration is kept for backward, only x and the packed parameters."""
    layer = make_layer(1, 3, "sobel", seed=1)
    x = (torch.rand(1, 1, 2, 3, 3) * 255.0).requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = tvl1_only(layer, x)
    op_saved = sum(saved)
    assert op_saved <= x.numel() + 3 + 9 + 9 + 4 + 64, saved  # input, coef, kernels (+ pack_parameters' scalars)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def tvl1_only(layer, x):
    coef, image, flow, div = kernels.pack_parameters(layer)
    return triton_flow.tvl1_flow(x, coef, image, flow, div, layer.iterations, True, float(layer.eps))


def test_registered_and_forced_by_name():
    kernel = kernels.find("triton")
    assert kernel is triton_flow.TRITON_KERNEL and kernel.device_type == "cuda"
    layer = make_layer(1, 2, "central", seed=2)
    layer.impl = "triton"
    x = torch.rand(1, 1, 2, 3, 4) * 255.0
    assert layer.fused_kernel(x) is kernel
    assert rel(layer(x).detach(), layer.forward_eager(x).detach()) < 1e-5


def test_unsupported_calls_say_why(monkeypatch):
    layer = make_layer(1, 1, "sobel", seed=0)
    x = torch.zeros(1, 1, 2, 3, 3)
    assert triton_flow.unsupported(layer, x) is None
    assert "dtype" in triton_flow.unsupported(layer, x.double())
    big = torch.zeros(1, 1, 2, 129, 128)
    assert "pixels" in triton_flow.unsupported(layer, big)
    monkeypatch.setattr(triton_flow, "interpreter_active", lambda: False)
    assert "TRITON_INTERPRET" in triton_flow.unsupported(layer, x)
    layer.impl = "triton"
    with pytest.raises(RuntimeError, match="triton"):  # forcing a kernel that cannot run never falls back
        layer(x)


def test_num_warps_follow_the_block_and_the_override():
    """Warps grow with the image so that a thread's share of the live fields fits its registers (the backward
    keeps more fields, so it gets more warps); gpu_check's sweep overrides per (kernel, BLOCK)."""
    assert [triton_flow._num_warps(b, "forward") for b in (16, 1024, 2048, 4096, 16384)] == [4, 4, 4, 8, 16]
    assert [triton_flow._num_warps(b, "backward") for b in (16, 1024, 2048, 4096, 16384)] == [4, 4, 8, 16, 32]
    triton_flow._WARPS_OVERRIDE[("backward", 4096)] = 8
    try:
        assert triton_flow._num_warps(4096, "backward") == 8 and triton_flow._num_warps(4096, "forward") == 8
        assert triton_flow._num_warps(2048, "backward") == 8
    finally:
        triton_flow._WARPS_OVERRIDE.clear()
    assert triton_flow._launch_options(4096, "backward") == {"num_warps": 16}  # the interpreter takes no maxnreg


def test_cuda_launches_give_one_program_the_whole_register_file(monkeypatch):
    monkeypatch.setattr(triton_flow, "interpreter_active", lambda: False)
    monkeypatch.setattr(triton_flow, "_has_maxnreg", lambda: True)
    assert triton_flow._launch_options(1024, "backward") == {"num_warps": 4, "maxnreg": 255}
    assert triton_flow._launch_options(4096, "backward") == {"num_warps": 16, "maxnreg": 128}
    assert triton_flow._launch_options(4096, "forward") == {"num_warps": 8, "maxnreg": 255}
    assert triton_flow._launch_options(16384, "backward") == {"num_warps": 32, "maxnreg": 64}
    monkeypatch.setattr(triton_flow, "_has_maxnreg", lambda: False)  # an older Triton: launch without it
    assert triton_flow._launch_options(4096, "backward") == {"num_warps": 16}


def test_double_backward_is_refused():
    layer = make_layer(1, 1, "sobel", seed=0)
    x = (torch.rand(1, 1, 2, 3, 3) * 255.0).requires_grad_(True)
    (g,) = torch.autograd.grad(triton_flow.run(layer, x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_capture_graph_replays_the_window_shape():
    """Recognizer's CUDA-graph path (capture once, copy in, replay, copy out) with the CPU stand-in graph."""
    from repflow_core.recognizer import Recognizer, RecognizerError, capture_graph, default_checkpoint

    rec = Recognizer.from_checkpoint(default_checkpoint(), device="cpu", cuda_graphs=True)
    assert rec.cuda_graphs is False  # CUDA only: ignored (and logged) on the CPU
    torch.manual_seed(0)
    x = torch.randn(1, 3, rec.clip_len, *rec.input_size)
    with torch.inference_mode():
        replay = capture_graph(rec.model, x, stand_in=True)
        for _ in range(2):  # new inputs go through the same static buffers
            y = torch.randn_like(x)
            out = replay(y)
            assert torch.allclose(out, rec.model(y), rtol=1e-5, atol=1e-6)
        first = replay(x)
        replay(torch.randn_like(x))
        assert torch.allclose(first, rec.model(x), rtol=1e-5, atol=1e-6)  # outputs are copies, not the buffer
        with pytest.raises(RecognizerError, match="captured for"):
            replay(x[:, :, :-1])
