"""One-shot GPU check (issue 12): CUDA correctness, a short bf16 training run, and one table of speed ratios.

    python -m repflow_core.gpu_check                 # on a CUDA machine (tools/gpu_check.sh wraps this)
    TRITON_INTERPRET=1 python -m repflow_core.gpu_check --cpu-dry-run   # same code paths, tiny sizes, CPU

Every section runs in its own try/except: a failure is printed with its traceback's last line and the
check goes on. Results are printed and, when ``$OUT`` is set, also written to ``$OUT/gpu_check.txt``.
Needs torch (2.11+) and triton; no ROS (the node's end-to-end latency needs rclpy, so the Recognizer's
end-to-end time on 640x480 frames, preprocess + predict, is measured instead and labelled as such).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn, device: torch.device, reps: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in ms (synchronised), after warm-up runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_mb(fn, device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def flow_layer(channels: int, iterations: int, gradient: str, learn_gradient: bool, device, seed: int = 0):
    from .flow import RepresentationFlow

    torch.manual_seed(seed)
    layer = RepresentationFlow(channels, iterations=iterations, gradient=gradient, learn_gradient=learn_gradient)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return layer.to(device)


def grads_of(layer, x, grad_out, impl: str):
    layer.impl = impl
    xi = x.detach().clone().requires_grad_(True)
    out = layer(xi)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [xi] + params, grad_out, allow_unused=True)
    return out.detach(), grads


# --- sections ---------------------------------------------------------------------------------------------
def section_environment(device: torch.device, dry: bool) -> None:
    import platform

    say(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}")
    try:
        import triton

        say(f"triton {triton.__version__}  interpreter={os.environ.get('TRITON_INTERPRET', '')!r}")
    except Exception as exc:  # noqa: BLE001
        say(f"triton: not importable ({exc})")
    if device.type == "cuda":
        say(f"device {torch.cuda.get_device_name(device)}")
    else:
        say("device cpu (dry run: tiny sizes, timings meaningless)" if dry else "device cpu")


def section_triton_vs_eager(device: torch.device, dry: bool) -> None:
    """Triton vs eager on this device: output and every gradient to 1e-4 relative (+ the float32 eager's own
    error against float64, as in the CPU tests). One shape per gradient kind (odd sizes; one case with fewer
    programs than images: the persistent loop) plus the largest supported size; every compiled variant costs
    seconds, so no more: the 112x112 case is the flow table's variant (sobel_fd, kernels fixed; N, C, T, K are
    not specialised), which the table then reuses; every learnable tensor's gradient is checked on the small
    shapes.
    Cases: (gradient kind, (B, C, T, H, W), programs or None for the automatic grid, learnable kernels)."""
    from .kernels import triton_flow

    if dry:
        cases = [("sobel", (1, 1, 2, 5, 7), None, True), ("central", (1, 1, 3, 4, 3), 1, True),
                 ("sobel_fd", (1, 1, 2, 3, 5), None, False)]
    else:
        cases = [("sobel", (1, 3, 4, 27, 33), None, True), ("central", (2, 4, 3, 28, 28), 3, True),
                 ("sobel_fd", (2, 3, 3, 28, 31), None, True), ("sobel_fd", (1, 2, 2, 112, 112), None, False)]
    iterations = 2 if dry else 3
    worst = 0.0
    for gradient, shape, programs, learn in cases:
        layer = flow_layer(shape[1], iterations, gradient, learn, device)
        torch.manual_seed(1)
        x = torch.rand(shape, device=device) * 255
        grad_out = torch.randn((shape[0], 2 * shape[1], shape[2] - 1) + shape[3:], device=device)
        ref, ref_g = grads_of(layer, x, grad_out, "eager")
        _, ref64 = grads_of(copy.deepcopy(layer).double(), x.double(), grad_out.double(), "eager")
        triton_flow._GRID_OVERRIDE["programs"] = programs
        try:
            out, tri_g = grads_of(layer, x, grad_out, "triton")
        finally:
            triton_flow._GRID_OVERRIDE["programs"] = None
        errors = [rel(out, ref)]
        for a, b, c in zip(tri_g, ref_g, ref64):
            if b is None:
                continue
            errors.append(rel(a, b) - rel(b, c))  # beyond the float32 reference's own error
        err = max(errors)
        worst = max(worst, err)
        grid = (f" programs={programs}" if programs else "") + ("" if learn else " kernels fixed")
        say(f"  triton vs eager {gradient:8s} {str(shape):20s} it={iterations}{grid}: max excess rel err {err:.2e} "
            f"{'OK' if err < 1e-4 else 'FAIL'}")
    say(f"triton vs eager: {'PASS' if worst < 1e-4 else 'FAIL'} (worst {worst:.2e}, bound 1e-4)")


def _recognizer(device: torch.device, **kwargs):
    from .recognizer import Recognizer, default_checkpoint

    return Recognizer.from_checkpoint(default_checkpoint(), device=str(device), log=lambda m: None, **kwargs)


def _windows(rec, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rec.clip_len,) + rec.input_size + (3,), dtype=np.uint8) for _ in range(count)]


def section_precision_and_graphs(device: torch.device, dry: bool) -> None:
    """Recognizer: bf16 (and fp16 on CUDA) within 5e-2 of fp32 probabilities; CUDA graphs equal eager."""
    base = _recognizer(device)
    windows = _windows(base, 2 if dry else 8)
    ref = np.stack([base.predict(w) for w in windows])
    for precision in (("bf16",) if device.type == "cpu" else ("bf16", "fp16")):
        probs = np.stack([_recognizer(device, precision=precision).predict(w) for w in windows])
        diff = float(np.abs(probs - ref).max())
        say(f"  recognizer {precision} vs fp32: max |dp| {diff:.2e} {'OK' if diff < 5e-2 else 'FAIL'} (bound 5e-2)")
    if device.type == "cuda":
        for precision in ("fp32", "bf16"):
            plain = _recognizer(device, precision=precision)
            graphs = _recognizer(device, precision=precision, cuda_graphs=True)
            a = np.stack([plain.predict(w) for w in windows])
            b = np.stack([graphs.predict(w) for w in windows])
            diff = float(np.abs(a - b).max())
            say(f"  cuda graphs ({precision}) vs eager: max |dp| {diff:.2e} captured={graphs.graph_shape} "
                f"{'OK' if diff < 1e-5 and graphs.graph_shape else 'FAIL'} (bound 1e-5)")
    else:
        from .recognizer import capture_graph

        x = torch.randn(1, 3, base.clip_len, *base.input_size)
        with torch.inference_mode():
            diff = rel(capture_graph(base.model, x, stand_in=True)(x), base.model(x))
        say(f"  graph replay (CPU stand-in) vs eager: rel {diff:.2e} {'OK' if diff < 1e-5 else 'FAIL'}")


def section_training(device: torch.device, dry: bool) -> None:
    """20 steps of bf16 autocast training of the packaged model's architecture on one fixed batch."""
    from .checkpoint import load_checkpoint
    from .recognizer import default_checkpoint

    ckpt = load_checkpoint(default_checkpoint())
    model = ckpt.build_model().to(device).train()
    spec = ckpt.input_spec
    torch.manual_seed(0)
    batch = 2 if dry else 8
    x = torch.randn(batch, 3, spec.clip_len, int(spec.size[0]), int(spec.size[1]), device=device)
    y = torch.randint(0, len(ckpt.labels), (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    steps = 4 if dry else 20
    for _ in range(steps):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ok = all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    say(f"bf16 training {steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f} {'PASS' if ok else 'FAIL'}")


def _flow_case(b: int, c: int, t: int, s: int, k: int, device: torch.device):
    """The flow table's layer (sobel_fd, learnable parameters and divergence) and input, with its forward and
    forward+backward closures."""
    layer = flow_layer(c, k, "sobel_fd", False, device)
    x = (torch.rand(b, c, t, s, s, device=device) * 255).requires_grad_(True)

    def fwd():
        with torch.no_grad():
            layer(x)

    def fwd_bwd():
        layer(x).sum().backward()

    return layer, fwd, fwd_bwd


SWEEP_SECONDS = 60.0


def section_tune(device: torch.device, dry: bool) -> None:
    """In-run micro-sweep of the Triton kernels' num_warps at 56x56 (B=8, C'=32, T=16, 10 iterations), backward
    first (timed as forward+backward), then forward; each candidate's first call (compile + run) is timed too.
    The fastest of each is kept (``triton_flow._WARPS_OVERRIDE``) for the flow table that follows, and printed so
    that it can become :func:`triton_flow._num_warps`'s default. Stops trying candidates after 60 s."""
    from .kernels import triton_flow

    b, c, t, s, k = (1, 2, 3, 6, 2) if dry else (8, 32, 16, 56, 10)
    block = triton_flow._block(s, s)
    layer, fwd, fwd_bwd = _flow_case(b, c, t, s, k, device)
    layer.impl = "triton"
    deadline = time.perf_counter() + SWEEP_SECONDS
    for kernel, fn in (("backward", fwd_bwd), ("forward", fwd)):
        default = triton_flow._num_warps(block, kernel)
        candidates = [default] + [w for w in ((2, 4) if dry else (8, 32, 16)) if w != default]
        timings: dict[int, float] = {}
        for warps in candidates:
            if time.perf_counter() > deadline:
                say(f"  {kernel}: sweep time box ({SWEEP_SECONDS:.0f} s) reached; untried: "
                    f"{[w for w in candidates if w not in timings]}")
                break
            triton_flow._WARPS_OVERRIDE[(kernel, block)] = warps
            try:
                t0 = time.perf_counter()
                fn()
                sync(device)
                first = time.perf_counter() - t0
                timings[warps] = timed_ms(fn, device, 1 if dry else 3, 1)
                say(f"  {kernel} {triton_flow._launch_options(block, kernel)} at {s}x{s} (BLOCK {block}): "
                    f"{timings[warps]:8.2f} ms "
                    f"({'forward+backward' if kernel == 'backward' else 'forward'}; first call {first:.1f} s)")
            except Exception as exc:  # noqa: BLE001 - e.g. out of resources: skip the candidate
                say(f"  {kernel} num_warps={warps:2d}: failed: {type(exc).__name__}: {exc}".splitlines()[0])
        best = min(timings, key=timings.get) if timings else default
        triton_flow._WARPS_OVERRIDE[(kernel, block)] = best
        say(f"  {kernel} at BLOCK {block}: using num_warps={best} (default {default})")


def section_flow_table(device: torch.device, dry: bool) -> None:
    """Flow layer eager vs Triton, forward and forward+backward, with peak memory (same run, same inputs)."""
    from .kernels import triton_flow

    if dry:
        configs = [(1, 2, 3, 6, 2)]
    else:
        # the last row: the flow layer on the RGB input of the generation-2 recipe (flow_after: input, 3 colour
        # channels, batch 32): it says whether that recipe should train with the Triton or the eager layer
        configs = [(8, 32, 16, s, k) for s in (28, 56) for k in (10, 20)] + [(2, 32, 16, 112, 10),
                                                                          (32, 3, 16, 112, 10)]
    say("flow layer (sobel_fd, learnable params + divergence): eager vs triton")
    say(f"  {'B,C,T,HxW,it':22s} {'eager fwd':>10s} {'triton fwd':>10s} {'ratio':>6s} {'eager f+b':>10s} "
        f"{'triton f+b':>10s} {'ratio':>6s} {'eager MB':>9s} {'triton MB':>9s}")
    warps = []
    for b, c, t, s, k in configs:
        layer, fwd, fwd_bwd = _flow_case(b, c, t, s, k, device)
        block = triton_flow._block(s, s)
        warps.append(f"{s}x{s}: {triton_flow._num_warps(block, 'forward')}/{triton_flow._num_warps(block, 'backward')}")
        row = {}
        for impl in ("eager", "triton"):
            layer.impl = impl
            reps = 1 if dry else 5
            row[impl] = (timed_ms(fwd, device, reps, 1), timed_ms(fwd_bwd, device, reps, 1), peak_mb(fwd_bwd, device))
        e, tr = row["eager"], row["triton"]
        say(f"  {f'{b},{c},{t},{s}x{s},{k}':22s} {e[0]:10.2f} {tr[0]:10.2f} {e[0] / tr[0]:6.1f} {e[1]:10.2f} "
            f"{tr[1]:10.2f} {e[1] / tr[1]:6.1f} {e[2]:9.0f} {tr[2]:9.0f}")
    say("  (ms, median of 5; MB = peak extra memory of forward+backward; target: triton f+b >= 5x eager at 28x28 "
        "and 56x56)")
    say(f"  triton num_warps forward/backward: {', '.join(dict.fromkeys(warps))}")


def section_resnet50(device: torch.device, dry: bool) -> None:
    """ResNet-50 + flow (after layer2, C'=32, 10 iterations) on one 32x224x224 window in bf16, eager flow
    layer vs the automatic choice (Triton on CUDA)."""
    from .model import ActionNet, ModelConfig

    size, frames = (32, 4) if dry else (224, 32)
    cfg = ModelConfig(backbone="resnet50", num_classes=400, flow="single", flow_after="layer2", iterations=10)
    model = ActionNet(cfg).to(device).eval()
    x = torch.randn(1, 3, frames, size, size, device=device)
    for impl in ("eager", "auto"):
        for module in model.modules():
            if hasattr(module, "fused_kernel") and hasattr(module, "impl"):
                module.impl = impl

        def run():
            with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                model(x)

        ms = timed_ms(run, device, 1 if dry else 10)
        say(f"ResNet-50 + flow, 1 x {frames}x{size}x{size} window, bf16, flow impl {impl}: {ms:.2f} ms "
            f"(target <= 10 ms on H100/H200)")


def section_packaged_model(device: torch.device, dry: bool) -> None:
    """The packaged model's window (ms) in the Recognizer variants, and Recognizer end to end on 640x480."""
    options = [dict(), dict(precision="bf16")]
    if device.type == "cuda":
        options += [dict(cuda_graphs=True), dict(precision="bf16", cuda_graphs=True)]
    frames_640 = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for opts in options:
        rec = _recognizer(device, **opts)
        window = _windows(rec, 1)[0]
        rec.warmup(3)
        ms = timed_ms(lambda rec=rec, window=window: rec.predict(window), device, 2 if dry else 50)
        say(f"packaged model window {rec.clip_len}x{rec.input_size[0]}x{rec.input_size[1]} {opts or 'fp32'}: "
            f"{ms:.2f} ms (target <= 3 ms)")
    rec = _recognizer(device, **(dict(cuda_graphs=True) if device.type == "cuda" else {}))
    rec.warmup(2)

    def end_to_end():
        rec.predict(np.stack([rec.preprocess(frames_640) for _ in range(rec.clip_len)]))

    ms = timed_ms(end_to_end, device, 2 if dry else 20)
    say(f"Recognizer end to end (preprocess {rec.clip_len} 640x480 frames + predict; NOT the ROS node: rclpy "
        f"is absent here): {ms:.2f} ms per window ({ms / rec.clip_len:.2f} ms of it per frame at most)")


def ensure_cv2() -> None:
    """The GPU machine may lack OpenCV (and pip cannot reach the internet there): stand in a minimal ``cv2``
    whose ``resize`` (all the Recognizer's preprocessing needs) uses torch; anything else raises clearly."""
    try:
        import cv2  # noqa: F401
        return
    except ImportError:
        pass
    import types

    import torch.nn.functional as F

    stub = types.ModuleType("cv2")
    stub.INTER_AREA, stub.INTER_LINEAR = 3, 1

    def resize(img, size, interpolation=1):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        mode = "area" if interpolation == 3 else "bilinear"
        extra = {} if mode == "area" else {"align_corners": False}
        out = F.interpolate(t, size=(size[1], size[0]), mode=mode, **extra)
        return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

    def missing(name):
        raise AttributeError(f"cv2.{name}: OpenCV is not installed here (gpu_check's stand-in has only resize)")

    stub.resize, stub.__getattr__ = resize, missing
    sys.modules["cv2"] = stub
    say("note: OpenCV missing; preprocessing uses gpu_check's torch stand-in for cv2.resize")


SECTIONS = [section_environment, section_triton_vs_eager, section_precision_and_graphs, section_training,
            section_tune, section_flow_table, section_resnet50, section_packaged_model]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run every section on the CPU with tiny sizes (needs TRITON_INTERPRET=1)")
    parser.add_argument("--only", default="", help="comma-separated section names (e.g. flow_table,training)")
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("gpu_check: CUDA is not available (use --cpu-dry-run to exercise the script on a CPU)")
        return 2
    ensure_cv2()
    failures = 0
    start = time.perf_counter()
    for section in SECTIONS:
        name = section.__name__.removeprefix("section_")
        if args.only and name not in args.only.split(","):
            continue
        say(f"== {name}")
        t0 = time.perf_counter()
        try:
            section(device, args.cpu_dry_run)
        except Exception as exc:  # noqa: BLE001 - report and go on to the next section
            failures += 1
            say(f"ERROR in {name}: {type(exc).__name__}: {exc}".splitlines()[0])
            say("  " + traceback.format_exc().strip().splitlines()[-3].strip())
        say(f"   ({time.perf_counter() - t0:.1f} s)")
        save_lines()  # after every section: a run cut short by a time limit still leaves what it measured
    say(f"gpu_check done in {time.perf_counter() - start:.0f} s, {failures} section(s) raised")
    save_lines()
    return 1 if failures else 0


def save_lines() -> None:
    """Everything said so far to ``$OUT/gpu_check.txt`` (atomically), when ``$OUT`` is set."""
    out_dir = os.environ.get("OUT")
    if out_dir:
        path = Path(out_dir) / "gpu_check.txt"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(LINES) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
