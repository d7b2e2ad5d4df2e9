"""Speed and memory figures: ``python -m repflow_core.bench [--quick] [--device cpu|cuda|all] [--only flow|model]``.

(``--suite flow-quality``: flow EPE on known motion, :mod:`repflow_core.flow_quality`; ``--suite backends``: the
Recognizer's torch and onnxruntime backends on one window, :mod:`repflow_core.bench_backends`.)

Measures
- the flow layer (B=8, C'=32, T=16 at 28x28 and 56x56; 1, 10, 20 iterations): forward and forward+backward
  time for every implementation available on the device (the eager reference and the fused kernel where
  present), each also as a ratio to eager; the memory autograd saves for backward, and the peak memory of
  one forward+backward;
- whole-model time per window (16x112x112 and 32x224x224) for the small default model and ResNet-50, with
  the flow layer eager and fused, and for the small model at 16x112x112 also the Recognizer's inference
  paths: channels_last weights and ``torch.compile`` (inductor, freezing on the CPU) for the fixed window.

Speed: implementations (and model variants) of one case are timed in one process, round-robin (eager,
fused, eager, fused, ...), so load changes on a shared machine hit them alike. Times are medians after a
warm-up call; speed-ups ("x") are the median over rounds of the ratio of the calls made back to back, and
speed goals are read as those ratios, not the absolute times (which vary several-fold on a shared machine).
A call slower than ``--budget`` / repeats is repeated fewer times (at least once after its warm-up).
Forward+backward is skipped ("no memory") where what autograd would save (measured on one sample, times
the batch) exceeds 75 % of the free memory: the eager layer at 56x56 with 20 iterations needs ~24 GB.
Memory: "saved MB" is what autograd keeps for backward (unique tensor storages, exact, from
``saved_tensors_hooks``). "peak MB": on CUDA ``torch.cuda.max_memory_allocated``; on the CPU PyTorch keeps
no peak counter, so one forward, then one forward+backward, run in a fresh spawned process per
implementation (after a tiny warm-up call that loads kernels and thread pools) and report the peak
resident set size above the level before each (VmHWM, reset before each call through
/proc/self/clear_refs; ``ru_maxrss`` where that is unavailable), allocator caching included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import torch

FLOW_SIZES = (28, 56)
FLOW_ITERATIONS = (1, 10, 20)
WINDOWS = ((16, 112), (32, 224))
MODEL_VARIANTS = ("flow-eager", "flow-fused", "fused+channels_last", "fused+cl+compile")


@dataclass
class Case:
    kind: str  # "flow", "flow-peak" or "model"
    device: str
    impls: tuple[str, ...] = ("eager",)  # flow: implementations timed together; model: variants
    size: int = 28
    iterations: int = 10
    batch: int = 8
    channels: int = 32
    frames: int = 16
    model: str = "small"
    repeats: int = 5
    budget_s: float = 60.0
    threads: int = 0
    compile_s: dict = field(default_factory=dict)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    """Peak resident set size: VmHWM (resettable, see _reset_peak_rss), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> None:
    """Reset the peak to the current RSS (Linux >= 4.0), so a peak measured next is the next call's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def small_model_config():
    """The small CPU model: the packaged default's config when it ships, else the documented default."""
    from .model import ModelConfig

    try:
        from .checkpoint import load_checkpoint
        from .recognizer import default_checkpoint

        return load_checkpoint(default_checkpoint()).model_config
    except (FileNotFoundError, ValueError):
        return ModelConfig(backbone="resnet18", width=0.25, num_classes=10, flow="single", flow_after="layer2")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                   budget_s: float = 60.0) -> dict[str, list[float]]:
    """Milliseconds of every call of each function, called round-robin after one warm-up call each.

    A function whose warm-up took longer than ``budget_s / repeats`` gets fewer repeats (at least one);
    a warm-up slower than 2 s also counts as a sample (allocation warm-up is negligible there).
    """
    first, samples = {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        _sync(device)
        first[name] = time.perf_counter() - start
        samples[name] = [first[name]] if first[name] > 2.0 else []
    reps = {name: max(1, min(repeats, int(budget_s / max(first[name], 1e-9)))) for name in fns}
    for r in range(max(reps.values())):
        for name, fn in fns.items():
            if r < reps[name]:
                start = time.perf_counter()
                fn()
                _sync(device)
                samples[name].append(time.perf_counter() - start)
    return {name: [t * 1000.0 for t in v] for name, v in samples.items()}


def paired_speedup(ref: list[float], other: list[float]) -> float:
    """Median over rounds of ref / other, pairing the calls made back to back in the same round; this
    follows load changes on a shared machine better than a ratio of medians."""
    n = min(len(ref), len(other))
    if n == 0:
        return float("nan")
    return statistics.median(r / o for r, o in zip(ref[:n], other[:n]))


def flow_module(impl: str, channels: int, iterations: int):
    """The flow layer implementation named ``impl`` (eager reference or a fused variant)."""
    from .flow import RepresentationFlow

    torch.manual_seed(0)
    layer = RepresentationFlow(channels, iterations=iterations, impl="eager")
    if impl == "eager":
        return layer
    from . import kernels

    return kernels.make_fused(layer, impl)


def available_flow_impls(device: str) -> list[str]:
    try:
        from . import kernels
    except ImportError:
        return ["eager"]
    return ["eager"] + list(kernels.available_impls(device))


class SavedTensors:
    """Context manager: MB of the distinct tensor storages autograd saves for backward inside it."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    def __enter__(self) -> SavedTensors:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def mb(self) -> float:
        return sum(self.storages.values()) / 2**20


def _available_mb(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**20
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


def predicted_saved_mb(layer, xg: torch.Tensor) -> float:
    """What autograd would save for the whole batch, from one sample (it is linear in the batch)."""
    with SavedTensors() as tracker:
        out = layer(xg[:1].detach().clone().requires_grad_(True))
    del out
    return tracker.mb * xg.shape[0]


def _backward_fits(layer, xg: torch.Tensor, device: torch.device) -> tuple[bool, float]:
    """Whether forward+backward of ``layer`` fits in 75 % of the free memory (the eager layer at 56x56 with
    20 iterations saves ~24 GB at B=8: the OOM killer, not a number)."""
    need = predicted_saved_mb(layer, xg)
    return need < 0.75 * _available_mb(device), need


def _flow_input(case: Case, device: torch.device) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(case.batch, case.channels, case.frames, case.size, case.size, device=device) * 255


def run_case(case: Case) -> list[dict]:
    if case.threads:
        torch.set_num_threads(case.threads)
    device = torch.device(case.device)
    if case.kind == "flow":
        return _run_flow(case, device)
    if case.kind == "flow-peak":
        return _run_flow_peak(case, device)
    from .bench_model import run_model  # its own module (size); it imports this one's timing helpers

    return run_model(case, device)


def _run_flow(case: Case, device: torch.device) -> list[dict]:
    layers = {impl: flow_module(impl, case.channels, case.iterations).to(device) for impl in case.impls}
    x = _flow_input(case, device)
    xg = x.clone().requires_grad_(True)

    def forward(layer):
        def fn():
            with torch.no_grad():
                layer(x)
        return fn

    saved: dict[str, float] = {}

    def forward_backward(impl, layer):
        def fn():
            if impl not in saved:  # the warm-up call also measures what autograd saves
                with SavedTensors() as tracker:
                    out = layer(xg)
                saved[impl] = tracker.mb
            else:
                out = layer(xg)
            out.sum().backward()
        return fn

    fits = {impl: _backward_fits(layer, xg, device) for impl, layer in layers.items()}
    fwd = interleaved_ms({i: forward(m) for i, m in layers.items()}, case.repeats, device, case.budget_s)
    fb = interleaved_ms({i: forward_backward(i, m) for i, m in layers.items() if fits[i][0]}, case.repeats, device,
                        case.budget_s)
    rows = []
    with torch.no_grad():
        ref = layers["eager"](x) if "eager" in layers and len(layers) > 1 else None
        for impl, layer in layers.items():
            samples = fb.get(impl, [])
            row = {**asdict(case), "impl": impl, "forward_ms": statistics.median(fwd[impl]),
                   "forward_backward_ms": statistics.median(samples) if samples else float("nan"),
                   "forward_samples_ms": fwd[impl], "forward_backward_samples_ms": samples,
                   "saved_mb": saved.get(impl, fits[impl][1]), "backward_skipped": not fits[impl][0]}
            if ref is not None:
                row["max_rel_diff"] = 0.0 if impl == "eager" else ((layer(x) - ref).norm() / ref.norm()).item()
            rows.append(row)
    return rows


def _run_flow_peak(case: Case, device: torch.device) -> list[dict]:
    """Peak memory of one forward (no grad) and one forward+backward of a single implementation."""
    (impl,) = case.impls
    layer = flow_module(impl, case.channels, case.iterations).to(device)
    x = _flow_input(case, device)
    xg = x.clone().requires_grad_(True)
    # Load libraries, kernels and thread pools on a tiny input first: their memory is not the layer's.
    tiny = torch.rand(1, case.channels, 2, 4, 4, device=device, requires_grad=True)
    layer(tiny).sum().backward()
    _reset_peak_rss()
    base_rss = _rss_mb()
    row = {**asdict(case), "impl": impl}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        layer(x)
    if device.type == "cuda":
        row["forward_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        row["forward_peak_mb"] = max(0.0, _peak_rss_mb() - base_rss)
    fits, _ = _backward_fits(layer, xg, device)
    if not fits:
        row["forward_backward_peak_mb"] = float("nan")
        return [row]
    if device.type == "cpu":
        _reset_peak_rss()
        base_rss = _rss_mb()
    layer(xg).sum().backward()
    if device.type == "cuda":
        row["forward_backward_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        row["forward_backward_peak_mb"] = max(0.0, _peak_rss_mb() - base_rss)
    return [row]


def _run_isolated(case: Case) -> list[dict]:
    """Run one case in a fresh process so that its peak memory is its own (and a crash is only its own)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        try:
            return pool.submit(run_case, case).result()
        except BrokenProcessPool:
            print(f"    the process running {case.kind} {case.impls} died (out of memory?); no figures",
                  flush=True)
            return []


def build_cases(devices: list[str], quick: bool, repeats: int, sizes=None, iterations=None, peak: bool = True,
                budget_s: float = 60.0) -> list[Case]:
    cases = []
    sizes = tuple(sizes or (FLOW_SIZES[:1] if quick else FLOW_SIZES))
    iterations = tuple(iterations or ((1, 10) if quick else FLOW_ITERATIONS))
    for device in devices:
        impls = tuple(available_flow_impls(device))
        for size in sizes:
            for it in iterations:
                common = dict(size=size, iterations=it, batch=2 if quick else 8, repeats=1 if quick else repeats,
                              budget_s=budget_s)
                cases.append(Case("flow", device, impls=impls, **common))
                if peak:
                    cases += [Case("flow-peak", device, impls=(impl,), **common) for impl in impls]
        fused = "fused" in impls
        models = ("small",) if quick else ("small", "resnet50")
        for model in models:
            for frames, size in (WINDOWS[:1] if quick else WINDOWS):
                variants = ("flow-eager", "flow-fused") if fused else ("flow-eager",)
                if fused and model == "small" and size == 112 and not quick:
                    variants = MODEL_VARIANTS
                heavy = model == "resnet50" or size > 112
                cases.append(Case("model", device, impls=variants, model=model, frames=frames, size=size,
                                  repeats=1 if quick else (2 if heavy and device == "cpu" else max(repeats, 10)),
                                  budget_s=budget_s))
    return cases


def format_table(rows: list[dict]) -> str:
    lines = []
    flow_rows = [r for r in rows if r["kind"] == "flow"]
    peaks = {(r["device"], r["impl"], r["size"], r["iterations"]): r for r in rows if r["kind"] == "flow-peak"}
    if flow_rows:
        eager = {(r["device"], r["size"], r["iterations"]): r for r in flow_rows if r["impl"] == "eager"}
        lines.append("Flow layer (B={batch}, C'={channels}, T={frames}): median ms, speed-up vs eager (same run, "
                     "interleaved, paired), MB saved for backward, peak MB of one fwd / fwd+bwd, max relative "
                     "output difference vs eager".format(**flow_rows[0]))
        lines.append(f"{'device':<7}{'impl':<8}{'HxW':>7}{'iters':>6}{'fwd ms':>10}{'x':>7}"
                     f"{'fwd+bwd ms':>12}{'x':>7}{'saved MB':>10}{'peak fwd':>10}{'peak f+b':>10}{'rel diff':>10}")
        for r in flow_rows:
            ref = eager.get((r["device"], r["size"], r["iterations"]))
            fx = paired_speedup(ref["forward_samples_ms"], r["forward_samples_ms"]) if ref else float("nan")
            bx = (paired_speedup(ref["forward_backward_samples_ms"], r["forward_backward_samples_ms"])
                  if ref else float("nan"))
            peak = peaks.get((r["device"], r["impl"], r["size"], r["iterations"]), {})
            pf, pb = peak.get("forward_peak_mb", float("nan")), peak.get("forward_backward_peak_mb", float("nan"))
            fb_ms = "no memory" if r.get("backward_skipped") else f"{r['forward_backward_ms']:.1f}"
            lines.append(
                f"{r['device']:<7}{r['impl']:<8}{r['size']:>4}x{r['size']:<2}{r['iterations']:>6}"
                f"{r['forward_ms']:>10.1f}{fx:>7.2f}{fb_ms:>12}{bx:>7.2f}"
                f"{r['saved_mb']:>10.0f}{pf:>10.0f}{pb:>10.0f}{r.get('max_rel_diff', float('nan')):>10.1e}"
            )
    model_rows = [r for r in rows if r["kind"] == "model"]
    if model_rows:
        lines.append("")
        lines.append("Whole model, one window (batch 1, inference, fp32): median ms, speed-up vs the first variant "
                     "(same run, interleaved, paired), max |logit diff| vs it, compile time")
        lines.append(f"{'device':<7}{'model':<40}{'window':>11}  {'variant':<21}{'ms':>9}{'x':>7}{'diff':>10}"
                     f"{'compile s':>11}")
        firsts = {}
        for r in model_rows:
            key = (r["device"], r["model_name"], r["frames"], r["size"])
            firsts.setdefault(key, r)
            speedup = paired_speedup(firsts[key]["window_samples_ms"], r["window_samples_ms"])
            window = f"{r['frames']}x{r['size']}x{r['size']}"
            compile_s = f"{r['compile_s']:.1f}" if r.get("compile_s") else ""
            lines.append(f"{r['device']:<7}{r['model_name']:<40}{window:>11}  {r['impl']:<21}{r['window_ms']:>9.1f}"
                         f"{speedup:>7.2f}{r['max_abs_logit_diff']:>10.1e}{compile_s:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = argparse.ArgumentParser(add_help=False)
    suite.add_argument("--suite", choices=["speed", "flow-quality", "backends"], default="speed")
    chosen, rest = suite.parse_known_args(argv)
    if chosen.suite == "backends":  # torch vs onnxruntime Recognizer on one window, interleaved (its own --help)
        from . import bench_backends

        return bench_backends.main(rest)
    if chosen.suite == "flow-quality":  # EPE and ms/pair on known motion: its own options (--help lists them)
        from . import flow_quality

        return flow_quality.main(rest)
    argv = rest
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="--suite flow-quality: flow EPE on known motion; --suite backends: "
                                            "torch vs onnxruntime Recognizer per window (see their --help)")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda only when present)")
    parser.add_argument("--quick", action="store_true", help="a small subset (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of timed calls per implementation and measurement (slow ones repeat less)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"flow H=W (default {FLOW_SIZES})")
    parser.add_argument("--iterations", type=int, nargs="+", default=None,
                        help=f"flow iterations (default {FLOW_ITERATIONS})")
    parser.add_argument("--no-peak", action="store_true", help="skip the flow layer's peak-memory processes")
    parser.add_argument("--out", default="bench_results/core_bench.json")
    parser.add_argument("--only", choices=["flow", "model"], default=None)
    args = parser.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "all":
        if args.device == "cuda" and not torch.cuda.is_available():
            print("CUDA requested but not available", file=sys.stderr)
            return 2
        devices = [args.device]
    cases = [c for c in build_cases(devices, args.quick, args.repeats, args.sizes, args.iterations,
                                    not args.no_peak, args.budget)
             if args.only is None or c.kind.startswith(args.only)]
    rows = []
    print(f"repflow_core.bench: {len(cases)} cases on {', '.join(devices)} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": "python -m repflow_core.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    for i, case in enumerate(cases, 1):
        start = time.perf_counter()
        rows += _run_isolated(case)
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))  # partial results survive a crash
        what = case.model if case.kind == "model" else f"{case.size}x{case.size} it={case.iterations}"
        print(f"  [{i}/{len(cases)}] {case.kind} {what} {'/'.join(case.impls)} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    table = format_table(rows)
    print()
    print(table)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
