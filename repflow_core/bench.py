"""Speed and memory figures: ``python -m repflow_core.bench [--quick] [--device cpu|cuda|all] [--out FILE]``.

Measures
- the flow layer (B=8, C'=32, T=16 at 28x28 and 56x56; 1, 10, 20 iterations): forward and forward+backward
  time and peak memory, for every implementation available on the device (eager reference, and the fused
  paths where present), each also as a ratio to eager measured in the same run;
- whole-model time per window (16x112x112 and 32x224x224) for the small default model and ResNet-50.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU PyTorch keeps no peak counter, so each
case runs in a fresh spawned process and reports its peak resident set size above the level before the
case (``ru_maxrss``), which includes allocator caching but nothing from other cases.
Timings are medians over repeats after a warm-up; speed goals are read as ratios within one run, because
this machine's absolute timings vary between runs.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

FLOW_SIZES = (28, 56)
FLOW_ITERATIONS = (1, 10, 20)
WINDOWS = ((16, 112), (32, 224))


@dataclass
class Case:
    kind: str  # "flow" or "model"
    device: str
    impl: str = "eager"  # flow implementation
    size: int = 28
    iterations: int = 10
    batch: int = 8
    channels: int = 32
    frames: int = 16
    model: str = "small"
    repeats: int = 5
    threads: int = 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def small_model_config():
    """The small CPU model: the packaged default's config when it ships, else the documented default."""
    from .model import ModelConfig

    try:
        from .checkpoint import load_checkpoint
        from .recognizer import default_checkpoint

        return load_checkpoint(default_checkpoint()).model_config
    except (FileNotFoundError, ValueError):
        return ModelConfig(backbone="resnet18", width=0.25, num_classes=10, flow="single", flow_after="layer2")


def _timeit(fn, repeats: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up (allocations, kernel selection, compilation)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def flow_module(impl: str, channels: int, iterations: int):
    """The flow layer implementation named ``impl`` (eager reference or a fused variant)."""
    from .flow import RepresentationFlow

    layer = RepresentationFlow(channels, iterations=iterations)
    if impl == "eager":
        return layer
    from . import flow_fused  # noqa: F401  (optional: added by the fused-kernel work)

    return flow_fused.make_fused(layer, impl)


def available_flow_impls(device: str) -> list[str]:
    try:
        from . import flow_fused
    except ImportError:
        return ["eager"]
    return ["eager"] + list(flow_fused.available_impls(device))


def run_case(case: Case) -> dict:
    if case.threads:
        torch.set_num_threads(case.threads)
    device = torch.device(case.device)
    torch.manual_seed(0)
    result: dict = {}
    if case.kind == "flow":
        layer = flow_module(case.impl, case.channels, case.iterations).to(device)
        x = (torch.rand(case.batch, case.channels, case.frames, case.size, case.size, device=device) * 255)
        xg = x.clone().requires_grad_(True)

        def forward():
            with torch.no_grad():
                layer(x)

        def forward_backward():
            layer(xg).sum().backward()

        base_rss = _rss_mb()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base_cuda = torch.cuda.memory_allocated(device)
        result["forward_ms"] = _timeit(forward, case.repeats, device)
        if device.type == "cuda":
            result["forward_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
            torch.cuda.reset_peak_memory_stats(device)
        else:
            result["forward_peak_mb"] = max(0.0, _peak_rss_mb() - base_rss)
        result["forward_backward_ms"] = _timeit(forward_backward, case.repeats, device)
        if device.type == "cuda":
            result["forward_backward_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
        else:
            result["forward_backward_peak_mb"] = max(0.0, _peak_rss_mb() - base_rss)
    else:
        from .model import ActionNet, ModelConfig

        if case.model == "small":
            cfg = small_model_config()
        else:
            cfg = ModelConfig(backbone="resnet50", width=1.0, num_classes=400, flow="single",
                              flow_after="layer2", iterations=20)
        model = ActionNet(cfg).to(device).eval()
        clip = torch.randn(1, 3, case.frames, case.size, case.size, device=device)

        def forward():
            with torch.inference_mode():
                model(clip)

        base_rss = _rss_mb()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result["window_ms"] = _timeit(forward, case.repeats, device)
        result["peak_mb"] = (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else max(0.0, _peak_rss_mb() - base_rss)
        )
        result["model"] = f"{cfg.backbone} x{cfg.width} flow={cfg.flow}@{cfg.flow_after} it={cfg.iterations}"
    return {**asdict(case), **result}


def _run_isolated(case: Case) -> dict:
    """Run one case in a fresh process so that its peak memory is its own."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(run_case, (case,))


def build_cases(devices: list[str], quick: bool, repeats: int) -> list[Case]:
    cases = []
    for device in devices:
        for impl in available_flow_impls(device):
            sizes = FLOW_SIZES[:1] if quick else FLOW_SIZES
            iterations = (1, 10) if quick else FLOW_ITERATIONS
            for size in sizes:
                for it in iterations:
                    cases.append(Case("flow", device, impl=impl, size=size, iterations=it,
                                      batch=2 if quick else 8, repeats=1 if quick else repeats))
        models = ("small",) if quick else ("small", "resnet50")
        for model in models:
            for frames, size in (WINDOWS[:1] if quick else WINDOWS):
                heavy = model == "resnet50" or size > 112
                cases.append(Case("model", device, model=model, frames=frames, size=size,
                                  repeats=1 if (quick or (heavy and device == "cpu")) else repeats))
    return cases


def format_table(rows: list[dict]) -> str:
    lines = []
    flow_rows = [r for r in rows if r["kind"] == "flow"]
    if flow_rows:
        eager = {(r["device"], r["size"], r["iterations"]): r for r in flow_rows if r["impl"] == "eager"}
        lines.append("Flow layer (B={batch}, C'={channels}, T={frames}): median ms, peak MB, speed-up vs eager".format(**flow_rows[0]))
        lines.append(f"{'device':<7}{'impl':<16}{'HxW':>7}{'iters':>6}{'fwd ms':>10}{'x':>7}{'fwd MB':>9}"
                     f"{'fwd+bwd ms':>12}{'x':>7}{'f+b MB':>9}")
        for r in flow_rows:
            ref = eager.get((r["device"], r["size"], r["iterations"]))
            fx = ref["forward_ms"] / r["forward_ms"] if ref else float("nan")
            bx = ref["forward_backward_ms"] / r["forward_backward_ms"] if ref else float("nan")
            lines.append(
                f"{r['device']:<7}{r['impl']:<16}{r['size']:>4}x{r['size']:<2}{r['iterations']:>6}"
                f"{r['forward_ms']:>10.1f}{fx:>7.2f}{r['forward_peak_mb']:>9.0f}"
                f"{r['forward_backward_ms']:>12.1f}{bx:>7.2f}{r['forward_backward_peak_mb']:>9.0f}"
            )
    model_rows = [r for r in rows if r["kind"] == "model"]
    if model_rows:
        lines.append("")
        lines.append("Whole model, one window (batch 1, inference, fp32): median ms, peak MB")
        lines.append(f"{'device':<7}{'model':<44}{'window':>12}{'ms':>10}{'MB':>8}")
        for r in model_rows:
            window = f"{r['frames']}x{r['size']}x{r['size']}"
            lines.append(f"{r['device']:<7}{r['model']:<44}{window:>12}{r['window_ms']:>10.1f}{r['peak_mb']:>8.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda only when present)")
    parser.add_argument("--quick", action="store_true", help="a small subset (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench_results/core_bench.json")
    parser.add_argument("--only", choices=["flow", "model"], default=None)
    args = parser.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "all":
        if args.device == "cuda" and not torch.cuda.is_available():
            print("CUDA requested but not available", file=sys.stderr)
            return 2
        devices = [args.device]
    cases = [c for c in build_cases(devices, args.quick, args.repeats) if args.only in (None, c.kind)]
    rows = []
    print(f"repflow_core.bench: {len(cases)} cases on {', '.join(devices)} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)
    for i, case in enumerate(cases, 1):
        start = time.perf_counter()
        row = _run_isolated(case)
        rows.append(row)
        label = f"{case.kind} {case.impl if case.kind == 'flow' else case.model} {case.frames}x{case.size} it={case.iterations}"
        print(f"  [{i}/{len(cases)}] {label} ({time.perf_counter() - start:.1f} s)", flush=True)
    table = format_table(rows)
    print()
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": "python -m repflow_core.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
