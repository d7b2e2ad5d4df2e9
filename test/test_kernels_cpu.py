"""The fused flow kernels (repflow_core.kernels: the native CPU kernel) against the eager reference, and the
selection policy.

The eager layer (RepresentationFlow.forward_eager, i.e. flow_pairs) is the reference transcription of
Algorithm 1; every fused kernel must give the same output and the same gradient for the input and for every
learnable parameter, to 1e-4 relative in float32, and the layer must fall back to eager when no fused kernel
can run. The scalar parameters' gradients are sums over every pixel and iteration with much cancellation:
there the eager float32 reference is itself only good to ~1e-4 (measured against float64), so the check is
``|fused - eager| <= 1e-4 + |eager - eager_float64|`` (norm-wise relative), which is 1e-4 where the
reference is exact. The native CPU kernel is built once per machine (a few seconds) and cached; these tests skip, with
the reason, where it cannot be built (no C++ compiler).
"""

import copy
import logging
from pathlib import Path

import pytest
import torch

from repflow_core import flow, kernels
from repflow_core.flow import FlowBlock, RepresentationFlow
from repflow_core.kernels import native_build

GRADIENTS = ["sobel", "central", "sobel_fd"]
PARAMS = ["theta_raw", "lambda_raw", "tau_raw", "div_x", "div_y",
          "image_grad_x", "image_grad_y", "flow_grad_x", "flow_grad_y"]


@pytest.fixture(scope="module")
def native():
    lib = kernels.native_library()
    if lib is None:
        pytest.skip(f"native CPU flow kernel unavailable: {kernels.native_error()}")
    return lib


@pytest.fixture
def restore_native():
    """Tests that simulate an unavailable kernel put the real one back afterwards."""
    yield
    native_build.reset_for_tests()  # the next use loads it again (after monkeypatch has undone)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative difference (a 0 reference counts as absolute)."""
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def perturbed_layer(channels, iterations, gradient, seed=0, **kwargs):
    """A layer whose parameters are moved off their symmetric defaults, so every tap matters."""
    torch.manual_seed(seed)
    layer = RepresentationFlow(channels, iterations=iterations, gradient=gradient, **kwargs)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return layer


def run(layer, x, grad_out, impl):
    """Output and gradients (input, then every learnable parameter by name) of one implementation."""
    layer.impl = impl
    xi = x.detach().clone().requires_grad_(True)
    out = layer(xi)
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    params = dict(layer.named_parameters())
    grads = torch.autograd.grad(out, [xi] + [params[n] for n in names], grad_out, allow_unused=True)
    return out.detach(), dict(zip(["input"] + names, grads))


def eager_and_fused(layer, x, grad_out):
    return run(layer, x, grad_out, "eager"), run(layer, x, grad_out, "fused")


def assert_same_gradients(layer, x, grad_out, ref_grads, grads):
    ref64 = run(copy.deepcopy(layer).double(), x.double(), grad_out.double(), "eager")[1]
    assert grads.keys() == ref_grads.keys() == ref64.keys()
    for name, ref_grad in ref_grads.items():
        assert ref_grad is not None and grads[name] is not None, name
        allowance = rel(ref_grad.double(), ref64[name])  # the float32 reference's own error
        assert rel(grads[name], ref_grad) < 1e-4 + allowance, (name, rel(grads[name], ref_grad), allowance)


CASES = [  # (B, C, T, H, W), iterations
    ((2, 3, 4, 9, 11), 3),
    ((1, 4, 3, 16, 12), 10),
    ((3, 2, 2, 6, 5), 20),
]


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("shape,iterations", CASES)
def test_fused_matches_eager_output_and_every_gradient(native, gradient, shape, iterations):
    layer = perturbed_layer(shape[1], iterations, gradient, learn_gradient=True)
    torch.manual_seed(1)
    x = torch.rand(*shape) * 255
    grad_out = torch.randn(shape[0], 2 * shape[1], shape[2] - 1, *shape[3:])
    (ref, ref_grads), (out, grads) = eager_and_fused(layer, x, grad_out)
    assert layer.fused_kernel(x) is kernels.CPU_NATIVE
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert rel(out, ref) < 1e-4
    assert set(ref_grads) == {"input", *PARAMS}
    assert_same_gradients(layer, x, grad_out, ref_grads, grads)


@pytest.mark.parametrize("shape", [(1, 2, 3, 1, 7), (2, 1, 2, 6, 1), (1, 1, 2, 1, 1)])
def test_fused_matches_eager_on_one_pixel_wide_images(native, shape):
    """Borders everywhere: replicate padding on both sides of a single row/column (Sobel; the eager
    central-difference layer needs at least 2 pixels per side)."""
    layer = perturbed_layer(shape[1], 4, "sobel", learn_gradient=True)
    x = torch.rand(*shape) * 255
    grad_out = torch.randn(shape[0], 2 * shape[1], shape[2] - 1, *shape[3:])
    (ref, ref_grads), (out, grads) = eager_and_fused(layer, x, grad_out)
    assert rel(out, ref) < 1e-4
    assert_same_gradients(layer, x, grad_out, ref_grads, grads)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_default_layer_learns_the_same_parameters_fused(native, gradient):
    """With Table 2's defaults (gradient kernels frozen) both paths return the same set of gradients."""
    layer = perturbed_layer(3, 5, gradient)
    x = torch.rand(2, 3, 3, 8, 8) * 255
    grad_out = torch.randn(2, 6, 2, 8, 8)
    (ref, ref_grads), (out, grads) = eager_and_fused(layer, x, grad_out)
    assert set(grads) == set(ref_grads) == {"input", "theta_raw", "lambda_raw", "tau_raw", "div_x", "div_y"}
    assert rel(out, ref) < 1e-4
    assert_same_gradients(layer, x, grad_out, ref_grads, grads)


def test_fused_layer_inside_a_flow_block_trains_like_eager(native):
    """End to end through FlowBlock (1x1 conv, normalisation, flow, 3x3 conv, BN): same loss gradients."""
    torch.manual_seed(0)
    block = FlowBlock(8, flow_channels=4, iterations=5)
    x = torch.randn(2, 8, 4, 10, 10)
    grads = {}
    for impl in ("eager", "fused"):
        block.flow.impl = impl
        block.zero_grad()
        block(x).square().mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in block.named_parameters() if p.grad is not None}
    assert grads["eager"].keys() == grads["fused"].keys()
    for name in grads["eager"]:
        assert rel(grads["fused"][name], grads["eager"][name]) < 1e-4, name


def test_fused_gradients_do_not_depend_on_the_thread_count(native):
    layer = perturbed_layer(4, 4, "sobel", learn_gradient=True)
    layer.impl = "fused"
    x = torch.rand(2, 4, 3, 9, 9) * 255
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            xi = x.clone().requires_grad_(True)
            layer.zero_grad()
            out = layer(xi)
            out.square().sum().backward()
            results.append([out.detach(), xi.grad] + [p.grad for p in layer.parameters()])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("fill", ["zeros", "constant", "huge", "tiny"])
def test_fused_stays_finite_on_degenerate_inputs(native, fill):
    torch.manual_seed(0)
    clip = {"zeros": torch.zeros(1, 2, 3, 8, 8), "constant": torch.full((1, 2, 3, 8, 8), 42.0),
            "huge": torch.randn(1, 2, 3, 8, 8) * 1e8, "tiny": torch.randn(1, 2, 3, 8, 8) * 1e-30}[fill]
    layer = RepresentationFlow(2, iterations=10, impl="fused")
    clip = clip.requires_grad_(True)
    out = layer(clip)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(clip.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
    assert rel(out.detach(), layer.forward_eager(clip).detach()) < 1e-4 or out.abs().max() < 1e-6


def test_double_backward_is_refused_not_silently_wrong(native):
    layer = RepresentationFlow(2, iterations=2, impl="fused")
    x = (torch.rand(1, 2, 3, 5, 5) * 255).requires_grad_(True)
    (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_reduced_precision_input_is_computed_in_float32(native):
    """bf16 features (CPU autocast) run the kernel in float32 and come back as bf16."""
    layer = RepresentationFlow(3, iterations=5)
    x = torch.rand(1, 3, 3, 8, 8) * 255
    out = layer(x.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = layer.forward_eager(x.bfloat16().float())
    assert rel(out.float(), ref) < 1e-2


# --- selection policy ------------------------------------------------------------------------------------
def test_auto_selects_the_fused_kernel_on_cpu_float32_only(native):
    layer = RepresentationFlow(2, iterations=2)
    assert layer.impl == "auto" and flow.default_impl() == "auto"
    assert layer.fused_kernel(torch.zeros(1, 2, 2, 4, 4)) is kernels.CPU_NATIVE
    assert layer.fused_kernel(torch.zeros(1, 2, 2, 4, 4, dtype=torch.float64)) is None  # reference dtype
    assert RepresentationFlow(2, impl="eager").fused_kernel(torch.zeros(1, 2, 2, 4, 4)) is None
    assert kernels.available_impls("cpu") == ["fused"]
    assert "cpu" in kernels.REGISTRY and "cuda" in kernels.REGISTRY  # the seam for a GPU kernel


def test_default_impl_can_be_changed_for_the_process(native):
    layer = RepresentationFlow(2, iterations=2)
    x = torch.zeros(1, 2, 2, 4, 4)
    previous = flow.set_default_impl("eager")
    try:
        assert layer.fused_kernel(x) is None
        assert RepresentationFlow(2, impl="fused").fused_kernel(x) is kernels.CPU_NATIVE  # explicit wins
    finally:
        flow.set_default_impl(previous)
    assert layer.fused_kernel(x) is kernels.CPU_NATIVE
    with pytest.raises(ValueError, match="impl"):
        flow.set_default_impl("cuda-graphs")
    with pytest.raises(ValueError, match="impl"):
        RepresentationFlow(2, impl="compiled")


@pytest.mark.parametrize("value,expected", [("eager", "eager"), ("FUSED", "fused"), ("", "auto"), ("auto", "auto")])
def test_environment_variable_sets_the_default(monkeypatch, value, expected):
    monkeypatch.setenv(flow.ENV_IMPL, value)
    assert flow._impl_from_env() == expected


def test_unknown_environment_value_warns_and_means_auto(monkeypatch, caplog):
    monkeypatch.setenv(flow.ENV_IMPL, "cuda-graphs")
    with caplog.at_level(logging.WARNING, logger="repflow_core.flow"):
        assert flow._impl_from_env() == "auto"
    assert "REPFLOW_FLOW_IMPL" in caplog.text


def test_impl_is_not_part_of_the_checkpoint():
    eager, fused = RepresentationFlow(2, impl="eager"), RepresentationFlow(2, impl="fused")
    assert eager.state_dict().keys() == fused.state_dict().keys()
    fused.load_state_dict(eager.state_dict())
    assert "impl='fused'" in repr(fused)


# --- fallback ----------------------------------------------------------------------------------------------
def test_unavailable_kernel_falls_back_to_eager(native, restore_native, caplog):
    torch.manual_seed(0)
    x = torch.rand(1, 2, 3, 8, 8) * 255
    auto, forced = RepresentationFlow(2, iterations=3), RepresentationFlow(2, iterations=3, impl="fused")
    expected = auto.forward_eager(x)
    native_build.reset_for_tests("simulated: no compiler")
    with caplog.at_level(logging.WARNING, logger="repflow_core.kernels"):
        assert auto.fused_kernel(x) is None and torch.equal(auto(x), expected)
        assert not caplog.records  # auto falls back silently (the library warning was already given)
        assert torch.equal(forced(x), expected)
        assert torch.equal(forced(x), expected)
    warnings = [r for r in caplog.records if "falls back to the eager layer" in r.getMessage()]
    assert len(warnings) == 1 and "simulated" in warnings[0].getMessage()  # once, with the reason
    assert kernels.available_impls("cpu") == []


def test_a_failed_build_is_reported_once_and_not_fatal(monkeypatch, restore_native, caplog):
    monkeypatch.setattr(native_build, "find_built", lambda: None)
    monkeypatch.setattr(native_build, "compiler", lambda: None)
    native_build.reset_for_tests()
    with caplog.at_level(logging.WARNING, logger="repflow_core.kernels"):
        assert kernels.native_library() is None
        assert kernels.native_library() is None
        out = RepresentationFlow(2, iterations=2)(torch.rand(1, 2, 2, 6, 6))
    assert out.shape == (1, 4, 1, 6, 6)
    assert [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()] == [
        "native CPU flow kernel unavailable, using the eager layer: no C++ compiler found (set CXX or install g++)"
    ]
    with pytest.raises(kernels.BuildError, match="no C\\+\\+ compiler"):
        kernels.build()


def test_no_fused_kernel_for_a_device_means_eager(native, monkeypatch):
    monkeypatch.setitem(kernels.REGISTRY, "cpu", [])
    layer = RepresentationFlow(2, iterations=2)
    assert layer.fused_kernel(torch.zeros(1, 2, 2, 4, 4)) is None
    assert kernels.available_impls("cpu") == []


def test_build_from_scratch_into_a_directory(native, tmp_path):
    """What install time does: a fresh build (compiler + flags) that loads with the expected ABI."""
    if kernels.compiler() is None:
        pytest.skip("no C++ compiler")
    path = kernels.build(tmp_path, force=True)
    assert path.parent == tmp_path and path.name.endswith(".so")
    assert native_build.load(path).repflow_abi_version() == native_build.ABI_VERSION
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


# --- the Recognizer's inference paths ----------------------------------------------------------------------
def tiny_recognizer(tmp_path, **kwargs):
    from repflow_core.checkpoint import Checkpoint, InputSpec
    from repflow_core.model import ActionNet, ModelConfig
    from repflow_core.recognizer import Recognizer

    torch.manual_seed(0)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=3, flow_after="layer1", dropout=0.0)
    ckpt = Checkpoint(cfg, ["a", "b", "c"], InputSpec(clip_len=6, size=(32, 32), resize_short=40),
                      ActionNet(cfg).state_dict())
    torch.save(ckpt.to_dict(), tmp_path / "m.pt")
    return Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu", **kwargs)


def window(seed=0):
    return torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_recognizer_runs_the_fused_flow_and_channels_last_within_1e5_of_eager(native, tmp_path):
    rec = tiny_recognizer(tmp_path)
    assert rec.channels_last and not rec.compile and rec.compiled_shape is None
    layers = list(flow.iter_flow_layers(rec.model))
    assert layers and all(layer.fused_kernel(torch.zeros(1, 8, 2, 4, 4)) is kernels.CPU_NATIVE for layer in layers)
    fast = rec.predict(window())
    kernels.make_fused(rec.model, "eager")
    for module in rec.model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous()
    assert abs(fast - rec.predict(window())).max() < 1e-5


def test_recognizer_compile_option_compiles_the_window_shape(native, tmp_path):
    """compile=True: torch.compile at warm-up for (1, 3, T, H, W); same probabilities within 1e-4."""
    eager = tiny_recognizer(tmp_path)
    rec = tiny_recognizer(tmp_path, compile=True)
    rec.warmup(1)
    assert rec.compiled_shape == (1, 3, 6, 32, 32)
    for seed in (1, 2):
        assert abs(rec.predict(window(seed)) - eager.predict(window(seed))).max() < 1e-4
    batch = torch.stack([window(3), window(4)])  # another shape: the eager model, no recompilation
    assert abs(rec.predict(batch) - eager.predict(batch)).max() < 1e-5


def test_recognizer_compile_failure_warns_and_stays_eager(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated: no working compiler")

    monkeypatch.setattr(torch, "compile", broken)
    rec = tiny_recognizer(tmp_path, compile=True)
    with caplog.at_level(logging.WARNING, logger="repflow_core.recognizer"):
        rec.warmup(2)
        probs = rec.predict(window())
    assert rec.compiled_shape is None
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile of the model failed, using the eager model: RuntimeError: simulated: no working compiler"
    ]
    assert abs(probs - tiny_recognizer(tmp_path).predict(window())).max() < 1e-6


# --- the registry, the named impls and the package layout ---------------------------------------------------
def test_forcing_an_unregistered_named_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(kernels.registry, "REGISTRY", {"cpu": [kernels.CPU_NATIVE], "cuda": []})
    layer = RepresentationFlow(2, iterations=2, impl="triton")
    with pytest.raises(RuntimeError, match="no fused kernel named 'triton' is registered"):
        layer(torch.rand(1, 2, 2, 4, 4))


def test_register_replaces_by_name_and_first_takes_precedence(native, monkeypatch):
    monkeypatch.setattr(kernels.registry, "REGISTRY", {"cpu": [kernels.CPU_NATIVE], "cuda": []})
    calls = []

    def run(layer, x):
        calls.append(x.shape)
        return kernels.CPU_NATIVE.run(layer, x)

    fake = kernels.FusedKernel("triton", "cpu", "test double", lambda: True, lambda layer, x: None, run)
    kernels.register(fake, first=True)
    kernels.register(fake, first=True)
    assert [k.name for k in kernels.registry.REGISTRY["cpu"]] == ["triton", "cpu-native"]
    layer = RepresentationFlow(2, iterations=2)
    x = torch.rand(1, 2, 2, 4, 4) * 255
    assert layer.fused_kernel(x) is fake  # "auto" takes the preferred kernel
    layer.impl = "triton"
    assert layer.fused_kernel(x) is fake
    assert rel(layer(x), layer.forward_eager(x)) < 1e-4
    assert calls and kernels.available_impls("cpu") == ["fused", "triton"]
    unavailable = kernels.FusedKernel("triton", "cpu", "test double", lambda: False, lambda layer, x: None, run)
    kernels.register(unavailable)
    with pytest.raises(RuntimeError, match="unavailable"):
        layer.fused_kernel(x)


def test_old_module_name_is_an_alias():
    from repflow_core import flow_fused

    assert flow_fused.REGISTRY is kernels.REGISTRY and flow_fused.select is kernels.select


MODULES = ["repflow_core.kernels", "repflow_core.kernels.registry", "repflow_core.kernels.native_build",
           "repflow_core.kernels.cpu_native", "repflow_core.flow", "repflow_core.flow_fused"]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_fresh_and_kernels_never_import_flow(module):
    """No import cycle: each module imports on its own in a fresh interpreter, and importing the kernels
    does not pull in repflow_core.flow."""
    import subprocess
    import sys

    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "print('repflow_core.flow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if module.startswith("repflow_core.kernels"):
        assert proc.stdout.strip() == "False"


def test_kernels_cli_reports_the_registry(native):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "repflow_core.kernels", "info"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cpu: registered [cpu-native" in proc.stdout


def test_the_cpp_source_is_package_data():
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"repflow_core.kernels": ["*.cpp"]' in setup
    assert native_build.SOURCE_PATH.is_file() and "repflow_forward" in native_build.cpp_source()


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_pyramid_levels_run_the_fused_kernel_per_level_and_match_eager(native, gradient):
    layer = perturbed_layer(2, 5, gradient, pyramid_levels=3)
    torch.manual_seed(2)
    x = torch.rand(1, 2, 3, 20, 17) * 255
    grad_out = torch.randn(1, 4, 2, 20, 17)
    (ref, ref_grads), (out, grads) = eager_and_fused(layer, x, grad_out)
    assert layer.fused_kernel(x) is kernels.CPU_NATIVE
    assert rel(out, ref) < 1e-4
    for name, ref_grad in ref_grads.items():
        assert rel(grads[name], ref_grad) < 1e-3, name
