"""One comparison of the motion representations (issue 13 part 5): same data, seed and budget for each.

    python -m repflow_core.experiments.motion_comparison --out runs/motion_comparison --jobs 2 \
        [--sets synthetic motion] [--variants rgb flow flow_joint fcf uftsn] [--per-class 24] [--epochs 10] \
        [--set data.size=56 ...]

Variants (each the base config, ``config/train_synthetic_gen1.yaml`` with the budget overrides, plus only its fields):

* ``rgb``: ActionNet without a flow layer (a bag of frames, Sec. 3.3);
* ``flow``: one representation-flow layer (Algorithm 1) after ``--flow-after`` (default ``stem``);
* ``flow_joint``: the same + the joint loss of *Learning Optical Flow for Action Classification* (Eq. 3:
  cross-entropy + Charbonnier photometric (Eq. 1) + smoothness (Eq. 2); ``loss.photometric=1``,
  ``loss.smoothness=0.1``, :mod:`repflow_core.joint_loss`);
* ``fcf``: flow-conv-flow (Sec. 3.2, Table 5);
* ``uftsn``: the UF-TSN two-stream network (poster; :mod:`repflow_core.uftsn`), its three stages sharing the
  same epoch budget (flow 1/5, classifier 2/5, end to end the rest).

Data sets (rendered once into ``OUT/data/<set>`` by :func:`repflow_core.data.synthetic.write_dataset`):

* ``synthetic``: the ten synthetic actions (generation 1 by default, the packaged model's);
* ``motion``: the motion-only set, only the three time-reversed pairs (walk_left / walk_right, sit_down /
  stand_up, pick_up / put_down): each pair's frames are the same set in opposite order, so a model that does
  not see the order of frames can at best reach 50% on it.

Each run is trained by :func:`repflow_core.train.train` (best epoch chosen on a validation split carved from the
training videos) and evaluated on the held-out test list with the multi-view protocol of
:func:`repflow_core.evaluate.evaluate_checkpoint`. ``--jobs N`` runs N trainings as child processes at once
(logs in ``OUT/<set>/<variant>/run.log``); a run whose ``result.json`` matches the budget is reused, so an
interrupted comparison continues where it stopped. Then the cost of each model on one 16-frame window at its
input size is measured in one process, the variants interleaved round by round (so a busy CPU slows all of
them alike and the ratios hold), with the parameter count. Writes ``comparison.json``, ``comparison.md`` (the
README table) and ``comparison.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic_io import atomic_write_text
from ..config import StageConfig, add_override_arguments, apply_overrides, collect_overrides, load_train_config

SETS = ("synthetic", "motion")
SET_NAMES = {"synthetic": "synthetic (10 actions)", "motion": "motion-only (3 reversed pairs)"}
MOTION_ONLY_ACTIONS = ("walk_left", "walk_right", "sit_down", "stand_up", "pick_up", "put_down")
VARIANTS: dict[str, tuple[str, dict]] = {
    "rgb": ("RGB only", {"model.flow": "none"}),
    "flow": ("Representation flow", {"model.flow": "single"}),
    "flow_joint": ("Representation flow + joint loss",
                   {"model.flow": "single", "loss.photometric": 1.0, "loss.smoothness": 0.1}),
    "fcf": ("Flow-of-flow (FcF)", {"model.flow": "fcf"}),
    "uftsn": ("UF-TSN two-stream", {"model.motion": "uftsn"}),
}
# The tiny CPU budget every variant shares (the README's figures); --set overrides any of it.
BUDGET = ["model.width=0.25", "data.clip_len=8", "data.frame_stride=2", "data.size=56", "data.resize_short=64",
          "data.test_clips=3", "data.test_crops=1", "data.num_workers=1", "data.val_fraction=0.15",
          "synthetic.generate=false", "tensorboard=false", "epochs=10", "device=cpu", "seed=0", "log_every=50"]


@dataclass
class DataSpec:
    """How the two data sets are rendered (the same for both: only the classes differ)."""

    per_class: int = 24
    frames: int = 16
    size: int = 64
    generation: int = 1
    test_fraction: float = 0.25
    seed: int = 0

    def actions(self, name: str) -> tuple[str, ...]:
        from ..data.synthetic.render import ACTIONS

        return tuple(ACTIONS) if name == "synthetic" else MOTION_ONLY_ACTIONS


def ensure_dataset(out: Path, name: str, spec: DataSpec, progress: bool) -> Path:
    """Render set ``name`` into ``out/data/name`` unless it is already there with the same spec (data.json)."""
    from ..data.synthetic import write_dataset

    root = out / "data" / name
    want = {**spec.__dict__, "actions": list(spec.actions(name))}
    marker = root / "data.json"
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return root
    print(f"=== rendering the {name} set into {root}", flush=True)
    info = write_dataset(root, spec.per_class, num_frames=spec.frames, size=spec.size, fps=15, seed=spec.seed,
                         test_fraction=spec.test_fraction, progress=progress, generation=spec.generation,
                         actions=spec.actions(name))
    print(f"    {info['num_train']} train / {info['num_test']} test videos in {info['seconds']:.0f} s", flush=True)
    atomic_write_text(marker, json.dumps(want, indent=1))  # written last: a half-rendered set is redone
    return root


def run_config(config_path: str, overrides: list[str], variant: str, data_root: Path, run_dir: Path,
               num_classes: int):
    """The TrainConfig of one run: base config + budget + user overrides + the variant's fields + its data."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    _, fields = VARIANTS[variant]
    cfg = load_train_config(config_path, BUDGET + list(overrides))
    cfg = apply_overrides(cfg, {**fields, "model.num_classes": num_classes, "data.layout": "splitlist",
                                "data.root": str(data_root), "data.split_dir": "",
                                "data.train_list": "trainlist.txt", "data.test_list": "testlist.txt",
                                "out_dir": str(run_dir)})
    if variant == "uftsn":  # the poster's three stages inside the same epoch budget
        flow = max(1, round(cfg.epochs / 5))
        classifier = max(1, round(2 * cfg.epochs / 5))
        end = cfg.epochs - flow - classifier
        if end < 1:
            raise ValueError(f"UF-TSN needs epochs >= 3 for its three stages, got {cfg.epochs}")
        cfg.stages = [StageConfig("flow", flow), StageConfig("classifier", classifier), StageConfig("end_to_end", end)]
    cfg.validate()
    return cfg


def run_one(args: argparse.Namespace, set_name: str, variant: str) -> dict:
    """Train and evaluate one (set, variant); writes and returns ``OUT/set/variant/result.json``'s record."""
    from ..evaluate import evaluate_checkpoint
    from ..train import train

    out, spec = Path(args.out), data_spec(args)
    root = ensure_dataset(out, set_name, spec, progress=False)
    run_dir = out / set_name / variant
    cfg = run_config(args.config, collect_overrides(args), variant, root, run_dir, len(spec.actions(set_name)))
    print(f"=== {set_name}: {VARIANTS[variant][0]} -> {run_dir}", flush=True)
    start = time.perf_counter()
    result = train(cfg, progress=False, overwrite=True)
    train_s = time.perf_counter() - start
    m = evaluate_checkpoint(run_dir / "best.pt", cfg.data, device="cpu", out_dir=run_dir / "eval", progress=False)
    record = {"set": set_name, "variant": variant, "name": VARIANTS[variant][0], "video_top1": m["video_top1"],
              "clip_top1": m["clip_top1"], "mean_class_accuracy": m["mean_class_accuracy"],
              "per_class_accuracy": m["per_class_accuracy"], "num_videos": m["num_videos"],
              "views_per_video": m["views_per_video"], "best_epoch": result.best_epoch, "epochs": result.epochs_done,
              "best_val_acc": result.best_val_acc, "train_seconds": train_s}
    atomic_write_text(run_dir / "result.json", json.dumps({"key": run_key(args), "result": record}, indent=1))
    print(f"    {set_name} / {record['name']}: video top-1 {100 * record['video_top1']:.1f}% "
          f"(trained {train_s / 60:.1f} min)", flush=True)
    return record


def run_key(args: argparse.Namespace) -> dict:
    """What a saved result must match to be reused: base config, overrides, data spec."""
    return {"config": args.config, "overrides": collect_overrides(args), "data": data_spec(args).__dict__}


def data_spec(args: argparse.Namespace) -> DataSpec:
    return DataSpec(per_class=args.per_class, frames=args.frames, size=args.render_size, generation=args.generation,
                    test_fraction=args.test_fraction, seed=args.data_seed)


def _saved(out: Path, set_name: str, variant: str, key: dict) -> dict | None:
    done = out / set_name / variant / "result.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("key") == key:
            return saved["result"]
    return None


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[tuple[str, str], dict]:
    """Every (set, variant), at most ``args.jobs`` at once as child processes (1 = in this process)."""
    out, key = Path(args.out), run_key(args)
    for name in args.sets:  # rendered here, once, before children that would race to write them
        ensure_dataset(out, name, data_spec(args), progress=not args.no_progress)
    todo = [(s, v) for s in args.sets for v in args.variants]
    results = {t: r for t in todo if (r := _saved(out, *t, key)) is not None}
    for s, v in results:
        print(f"=== {s} / {v}: reusing {out / s / v / 'result.json'}", flush=True)
    pending = [t for t in todo if t not in results]
    if args.jobs <= 1:
        for s, v in pending:
            results[(s, v)] = run_one(args, s, v)
        return {t: results[t] for t in todo}
    running: list[tuple[tuple[str, str], subprocess.Popen]] = []
    try:
        failed = _run_children(args, argv, out, key, pending, running, results)
    except BaseException:  # Ctrl-C or an error here: do not leave trainings running without their parent
        for _, proc in running:
            proc.terminate()
        raise
    if failed:
        raise RuntimeError("runs failed: " + ", ".join(failed))
    return {t: results[t] for t in todo}


def _run_children(args, argv, out: Path, key: dict, pending: list, running: list, results: dict) -> list[str]:
    """Keep ``args.jobs`` child processes busy until ``pending`` is empty; fills ``results``, returns failures."""
    failed = []
    while pending or running:
        while pending and len(running) < args.jobs:
            s, v = pending.pop(0)
            log = out / s / v / "run.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", __spec__.name if __spec__ else "repflow_core.experiments.motion_comparison",
                   *argv, "--only", f"{s}:{v}"]
            with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
                running.append(((s, v), subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)))
            print(f"=== started {s} / {v} (log {log})", flush=True)
        time.sleep(1.0)  # polling child exit codes, not synchronising on timing
        for item in list(running):
            (s, v), proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            rec = _saved(out, s, v, key) if proc.returncode == 0 else None
            if rec is None:
                failed.append(f"{s}/{v} (exit {proc.returncode}, see {out / s / v / 'run.log'})")
            else:
                results[(s, v)] = rec
                print(f"=== done {s} / {v}: video top-1 {100 * rec['video_top1']:.1f}%", flush=True)
    return failed


def measure_cost(out: Path, sets: list[str], variants: list[str], frames: int, rounds: int) -> dict[str, dict]:
    """ms per ``frames``-frame window (batch 1, the model's input size) and parameter count of each variant.

    One process, models interleaved round by round after a warm-up, median per model: on a shared CPU the
    absolute numbers move with the load, the ratios between variants much less."""
    import torch

    from ..checkpoint import load_checkpoint

    models, inputs, cost = {}, {}, {}
    for v in variants:
        ckpt = next(out / s / v / "best.pt" for s in sets if (out / s / v / "best.pt").is_file())
        c = load_checkpoint(ckpt)
        models[v] = c.build_model().eval()
        h, w = c.input_spec.size
        inputs[v] = torch.randn(1, 3, frames, int(h), int(w))
        cost[v] = {"params": sum(p.numel() for p in models[v].parameters()), "input": f"{frames}x{h}x{w}",
                   "times_ms": []}
    with torch.inference_mode():
        for v in variants:  # warm-up: first calls allocate and pick kernels
            for _ in range(2):
                models[v](inputs[v])
        for _ in range(rounds):
            for v in variants:
                t0 = time.perf_counter()
                models[v](inputs[v])
                cost[v]["times_ms"].append(1000 * (time.perf_counter() - t0))
    for v in variants:
        t = sorted(cost[v]["times_ms"])
        cost[v]["ms"] = t[len(t) // 2]
        cost[v]["threads"] = torch.get_num_threads()
    return cost


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def format_table(summary: dict) -> str:
    """The README table: one row per variant, video top-1 per set, ms per window and parameters."""
    sets, variants, res, cost = summary["sets"], summary["variants"], summary["results"], summary["cost"]
    head = "| model | " + " | ".join(f"{SET_NAMES[s]} video top-1" for s in sets)
    lines = [head + " | ms / 16-frame window | vs RGB only | parameters |", "|---|" + "---:|" * (len(sets) + 3)]
    base = cost.get("rgb", {}).get("ms")
    for v in variants:
        cells = [_pct(res[f"{s}/{v}"]["video_top1"]) for s in sets]
        c = cost[v]
        ratio = f"{c['ms'] / base:.1f}x" if base else ""
        lines.append(f"| {VARIANTS[v][0]} | " + " | ".join(cells) + f" | {c['ms']:.1f} | {ratio} | {c['params']:,} |")
    notes = []
    for s in sets:
        n = res[f"{s}/{variants[0]}"]["num_videos"]
        k = len(res[f"{s}/{variants[0]}"]["per_class_accuracy"])
        notes.append(f"{SET_NAMES[s]}: {n} test videos, chance {100 / k:.0f}%, 1/sqrt(N) = {100 / math.sqrt(n):.0f} "
                     "points (smaller differences are noise)")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + "."


def plot(summary: dict, path: Path) -> Path | None:
    try:
        from .. import viz  # matplotlib; the table is written even where it is missing
    except ImportError as exc:
        print(f"no chart ({exc})", flush=True)
        return None
    sets, variants, res = summary["sets"], summary["variants"], summary["results"]
    series = {VARIANTS[v][0]: [res[f"{s}/{v}"]["video_top1"] for s in sets] for v in variants}
    viz.plot_grouped_bars([SET_NAMES[s] for s in sets], series, path, title="held-out test videos",
                          ylabel="video top-1 (%)", what="motion representations, same budget")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/train_synthetic_gen1.yaml", help="base training config")
    p.add_argument("--out", default="runs/motion_comparison")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--flow-after", default="stem", help="where the flow layer sits (model.flow_after)")
    p.add_argument("--per-class", type=int, default=24, help="videos rendered per class (train + test)")
    p.add_argument("--frames", type=int, default=16, help="frames per rendered video")
    p.add_argument("--render-size", type=int, default=64, help="rendered frame size (px)")
    p.add_argument("--generation", type=int, default=1, choices=(1, 2), help="synthetic renderer generation")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once, as child processes (1 = in process)")
    p.add_argument("--cost-frames", type=int, default=16, help="frames of the window timed for the cost column")
    p.add_argument("--cost-rounds", type=int, default=20)
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # SET:VARIANT, used by --jobs children
    p.add_argument("--no-progress", action="store_true")
    add_override_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.overrides = [f"model.flow_after={args.flow_after}"] + list(args.overrides)
    if args.jobs < 1 or args.per_class < 2 or args.cost_rounds < 1:
        parser.error("--jobs, --cost-rounds must be >= 1 and --per-class >= 2")
    out = Path(args.out)
    try:
        load_train_config(args.config, BUDGET + collect_overrides(args))  # a bad --set fails before any training
        if args.only:
            set_name, _, variant = args.only.partition(":")
            if set_name not in SETS or variant not in VARIANTS:
                parser.error(f"--only {args.only!r}: expected SET:VARIANT, SET in {SETS}, VARIANT in {list(VARIANTS)}")
            run_one(args, set_name, variant)
            return 0
        child_argv = [a for a in argv if a != "--no-progress"] + ["--no-progress"]
        results = run_all(args, child_argv)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("=== measuring the cost per window (interleaved)", flush=True)
    cost = measure_cost(out, args.sets, args.variants, args.cost_frames, args.cost_rounds)
    summary = {"command": "python -m repflow_core.experiments.motion_comparison " + " ".join(argv),
               "run_key": run_key(args), "sets": args.sets, "variants": args.variants,
               "results": {f"{s}/{v}": r for (s, v), r in results.items()}, "cost": cost,
               "cpu_count": os.cpu_count()}
    atomic_write_text(out / "comparison.json", json.dumps(summary, indent=1))
    table = format_table(summary)
    atomic_write_text(out / "comparison.md", table + "\n")
    chart = plot(summary, out / "comparison.png")
    print("\n" + table)
    print(f"\nwrote {out / 'comparison.md'}, {out / 'comparison.json'}" + (f", {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
