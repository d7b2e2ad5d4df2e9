"""Recognizer backends compared on one window: ``python -m repflow_core.bench --suite backends`` (or
``python -m repflow_core.bench_backends``).

The packaged model (or ``--checkpoint``), one preprocessed window (clip_len x H x W x 3 uint8, batch 1, or
``--batch``), :meth:`Recognizer.predict` timed for each backend in the same process, round-robin (torch,
onnxruntime, torch, ...), both with the same intra-op thread count (``--threads``, default torch's). The
torch backend is what the node runs by default: fused flow kernel where available, channels_last weights,
fp32. The speed-up is the median over rounds of the ratio of the two calls made back to back, so load changes
on a shared machine hit both alike; absolute times are medians. The load average is recorded: under CPU
oversubscription torch's OpenMP threads spin-wait at every barrier (unless ``OMP_WAIT_POLICY=PASSIVE``) and slow
down far more than onnxruntime's (BENCHMARKS.md, "Backends"). Also reports the largest probability
difference between the backends and the time to build each recognizer (onnxruntime: export, or cache hit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from .atomic_io import atomic_write_text

BACKEND_NAMES = ("torch", "onnxruntime")


def _recognizers(checkpoint: str | None) -> tuple[dict, dict[str, float]]:
    from .recognizer import Recognizer

    recs, build_s = {}, {}
    with tempfile.TemporaryDirectory(prefix="repflow-bench-") as cache:
        previous = os.environ.get("REPFLOW_CACHE_DIR")
        os.environ["REPFLOW_CACHE_DIR"] = cache  # a cold export, timed, not someone's earlier cache hit
        try:
            for backend in BACKEND_NAMES:
                start = time.perf_counter()
                recs[backend] = Recognizer.from_checkpoint(checkpoint, device="cpu", backend=backend,
                                                           log=lambda _msg: None)
                build_s[backend] = time.perf_counter() - start
            start = time.perf_counter()
            Recognizer.from_checkpoint(checkpoint, device="cpu", backend="onnxruntime", log=lambda _msg: None)
            build_s["onnxruntime (cached export)"] = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("REPFLOW_CACHE_DIR", None)
            else:
                os.environ["REPFLOW_CACHE_DIR"] = previous
    return recs, build_s


def run(checkpoint: str | None = None, rounds: int = 30, batch: int = 1, seed: int = 0) -> dict:
    """Time both backends interleaved; returns times (ms per call, every round), ratio and differences."""
    recs, build_s = _recognizers(checkpoint)
    ref = recs["torch"]
    rng = np.random.default_rng(seed)
    window = rng.integers(0, 256, (batch, ref.clip_len) + ref.input_size + (3,), dtype=np.uint8)
    calls = {name: (lambda r=rec: r.predict(window)) for name, rec in recs.items()}
    for fn in calls.values():  # warm-up: allocations, thread pools, onnxruntime's first-run work
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(calls))  # neither is always first in a round
        for name in order:
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1000.0)
        if (r + 1) % 10 == 0:
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {statistics.median(v):.1f} ms"
                                                             for n, v in samples.items()), flush=True)
    speedup = statistics.median(t / o for t, o in zip(samples["torch"], samples["onnxruntime"]))
    diff = float(np.abs(calls["torch"]() - calls["onnxruntime"]()).max())
    return {"model": ref.source, "window": [batch, ref.clip_len, *ref.input_size, 3], "rounds": rounds,
            "threads": torch.get_num_threads(), "median_ms": {n: statistics.median(v) for n, v in samples.items()},
            "samples_ms": samples, "onnxruntime_speedup": speedup, "max_prob_diff": diff, "build_s": build_s,
            "flow_kernel": _flow_kernel(ref)}


def _flow_kernel(rec) -> str:
    from .flow import RepresentationFlow

    x = torch.zeros(1, 1, 2, 8, 8)
    for layer in rec.model.modules():
        if isinstance(layer, RepresentationFlow):
            kernel = layer.fused_kernel(x.expand(1, layer.channels, 2, 8, 8))
            return type(kernel).__name__ if kernel is not None else "eager"
    return "none"


def format_result(res: dict) -> str:
    w = "x".join(str(v) for v in res["window"])
    lines = [f"Backends, one window {w} uint8 -> probabilities, {res['threads']} threads, {res['rounds']} interleaved "
             f"rounds (torch flow kernel: {res['flow_kernel']})",
             f"{'backend':<14}{'median ms':>11}{'build s':>10}"]
    for name in BACKEND_NAMES:
        lines.append(f"{name:<14}{res['median_ms'][name]:>11.1f}{res['build_s'][name]:>10.1f}")
    lines.append(f"onnxruntime speed-up over torch (median of paired ratios): {res['onnxruntime_speedup']:.2f}x; "
                 f"max |probability difference| {res['max_prob_diff']:.1e}; "
                 f"onnxruntime from the cached export: {res['build_s']['onnxruntime (cached export)']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repflow_core.bench --suite backends",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="default: the packaged model")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both backends (0: torch's)")
    parser.add_argument("--out", default="bench_results/backends.json")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"repflow_core.bench --suite backends: torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)
    load_before = os.getloadavg()
    res = run(args.checkpoint, args.rounds, args.batch)
    res["meta"] = {"loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]],
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: active spinning)"),
                   "date": date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
                   "machine": platform.machine(), "cpus": os.cpu_count(),
                   "command": "python -m repflow_core.bench --suite backends " + " ".join(argv or sys.argv[1:])}
    try:
        import onnxruntime

        res["meta"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    print()
    print(format_result(res))
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs; OMP_WAIT_POLICY {res['meta']['omp_wait_policy']}")
    atomic_write_text(Path(args.out), json.dumps(res, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
