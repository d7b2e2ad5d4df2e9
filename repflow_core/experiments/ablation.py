"""Ablations of the paper's design choices, each variant trained with the same budget on the same data.

    python -m repflow_core.experiments.ablation --config config/train_synthetic_gen1.yaml \
        [--study flow | location | fusion | tables | gradient] [--variants KEY ...] [--set epochs=8 ...] \
        [--out runs/ablation]

Studies (``--variants`` picks single variants by key instead):

* ``flow`` (default): RGB only vs representation flow vs flow-of-flow (keys ``none``, ``single``, ``fcf``).
* ``location`` (Table 1): RGB only, then the flow layer on the RGB input and after each stage
  (keys ``none@input``, ``none@stem`` ... ``none@layer4``: no fusion, flow after that location).
* ``fusion`` (Table 4, Fig. 2): each fusion method at each of ``--fusion-at`` (default ``input layer2``, the
  paper's "RGB" and "3 Blocks" columns), flow and fusion at the same point (keys ``<fusion>@<location>``).
* ``tables``: ``location`` and ``fusion`` together (what the README shows).
* ``gradient`` (issue 16): the flow layer's gradient kind and pyramid at the config's flow location: ``sobel``
  (the literal Eqs. 8 + 10, the old default), ``sobel_fd`` (the converging default), ``sobel_fd_pyr2`` (the
  same with ``pyramid_levels: 2``; the features at ``flow_after`` should be >= 14 px for two levels).

Each variant is the config with only the model fields above changed (same seed, data, epochs, optimiser),
trained with ``repflow_core.train`` and evaluated with the multi-view protocol of ``repflow_core.evaluate`` on
the held-out split. Writes ``ablation.json``, ``ablation.md`` (the README tables) and ``ablation.png``
(per-class bars for the ``flow`` study, video top-1 bars per location / fusion otherwise). ``--reuse`` reads
back variants that already have ``result.json``, so variants can run as separate processes in parallel.

Why flow should win on the synthetic set: its classes include time-reversed pairs (walk_left/walk_right,
sit_down/stand_up, pick_up/put_down) whose frames are identical as a set. ActionNet averages per-frame
predictions (Sec. 3.3), so without a flow layer the network is a bag of frames and can at best guess within
each pair; the flow layer gives every frame the direction of motion.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from ..config import add_override_arguments, collect_overrides, load_train_config
from ..evaluate import evaluate_checkpoint
from ..fusion import FUSIONS
from ..model import LOCATIONS
from ..train import train

VARIANT_NAMES = {"none": "RGB only (no flow layer)", "single": "Representation flow", "fcf": "Flow-conv-flow (FcF)"}
FUSION_NAMES = {"none": "None", "late": "Late", "add": "Add", "multiply": "Multiply",
                "layer_multiply": "Layer + Multiply", "concat": "Concat"}
LOCATION_NAMES = {"input": "Flow layer on RGB input", "stem": "After the stem (conv1)", "layer1": "After layer1",
                  "layer2": "After layer2", "layer3": "After layer3", "layer4": "After layer4"}
GRADIENT_VARIANTS = {"sobel": ("Sobel, Eqs. 8 + 10 (old default)", {"gradient": "sobel", "pyramid_levels": 1}),
                     "sobel_fd": ("sobel_fd (converging default)", {"gradient": "sobel_fd", "pyramid_levels": 1}),
                     "sobel_fd_pyr2": ("sobel_fd + 2-level pyramid", {"gradient": "sobel_fd", "pyramid_levels": 2}),
                     "sobel_fd_pyr3": ("sobel_fd + 3-level pyramid", {"gradient": "sobel_fd", "pyramid_levels": 3})}
STUDIES = ("flow", "location", "fusion", "tables", "gradient")


def variant_overrides(key: str) -> tuple[str, dict]:
    """Variant key -> (display name, model fields to set). Keys: ``none|single|fcf`` or ``<fusion>@<location>``."""
    if key in VARIANT_NAMES:
        return VARIANT_NAMES[key], {"flow": key}
    if key in GRADIENT_VARIANTS:  # only the flow layer's kind changes: flow, location, fusion stay the config's
        name, fields = GRADIENT_VARIANTS[key]
        return name, dict(fields)
    fusion, _, location = key.partition("@")
    if fusion not in FUSIONS or location not in LOCATIONS:
        raise ValueError(f"unknown ablation variant {key!r}: use one of {sorted(VARIANT_NAMES)}, "
                         f"{sorted(GRADIENT_VARIANTS)} or "
                         f"<fusion>@<location> with fusion in {FUSIONS} and location in {LOCATIONS}")
    name = LOCATION_NAMES[location] if fusion == "none" else f"{FUSION_NAMES[fusion]} fusion @ {location}"
    return name, {"flow": "single", "flow_after": location, "fusion": fusion, "fusion_after": ""}


def study_variants(study: str, fusion_at: list[str]) -> list[str]:
    location = ["none"] + [f"none@{loc}" for loc in LOCATIONS]
    fusion = [f"{f}@{loc}" for loc in fusion_at for f in FUSIONS]
    chosen = {"flow": ["none", "single", "fcf"], "location": location, "fusion": fusion,
              "tables": location + fusion, "gradient": ["sobel", "sobel_fd", "sobel_fd_pyr2"]}[study]
    return list(dict.fromkeys(chosen))  # keep order, drop duplicates (none@X is in both studies)


def _run_variant(base, key: str, out: Path, config_path: str, overrides: list[str], progress: bool) -> dict:
    name, model_fields = variant_overrides(key)
    cfg = copy.deepcopy(base)
    for field, value in model_fields.items():
        setattr(cfg.model, field, value)
    cfg.model.validate()
    cfg.out_dir = str(out / key.replace("@", "_at_"))
    print(f"\n=== ablation: {name} -> {cfg.out_dir}", flush=True)
    start = time.perf_counter()
    result = train(cfg, progress=progress, overwrite=True)
    train_seconds = time.perf_counter() - start
    metrics = evaluate_checkpoint(Path(cfg.out_dir) / "best.pt", cfg.data, device=cfg.device,
                                  out_dir=Path(cfg.out_dir) / "eval", progress=progress)
    record = {
        "name": name,
        "model": model_fields,
        "video_top1": metrics["video_top1"],
        "clip_top1": metrics["clip_top1"],
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "labels": metrics["labels"],
        "best_val_acc": result.best_val_acc,
        "epochs": result.epochs_done,
        "train_seconds": train_seconds,
        "num_videos": metrics["num_videos"],
        "views_per_video": metrics["views_per_video"],
    }
    done = Path(cfg.out_dir) / "result.json"
    done.write_text(json.dumps({"config": config_path, "overrides": overrides, "result": record}, indent=2))
    print(f"    {name}: video top-1 {metrics['video_top1']:.3f} (trained {train_seconds / 60:.1f} min)", flush=True)
    return record


def run_ablation(config_path: str, overrides: list[str], variants: list[str], out: Path, progress: bool = True,
                 reuse: bool = False) -> dict:
    """Train and evaluate each variant; with ``reuse`` a variant whose result.json exists (same config and
    overrides) is read back instead of retrained, so variants can run as separate processes in parallel."""
    for key in variants:
        variant_overrides(key)  # every key is checked before hours of training start
    out.mkdir(parents=True, exist_ok=True)
    base = load_train_config(config_path, overrides)
    results = {}
    for key in variants:
        done = out / key.replace("@", "_at_") / "result.json"
        if reuse and done.is_file():
            saved = json.loads(done.read_text())
            if saved.get("config") == config_path and saved.get("overrides") == overrides:
                results[key] = saved["result"]
                print(f"=== ablation: {saved['result']['name']}: reusing {done}", flush=True)
                continue
        results[key] = _run_variant(base, key, out, config_path, overrides, progress)
    summary = {"config": config_path, "overrides": overrides, "results": results}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2))
    table = format_tables(summary)
    (out / "ablation.md").write_text(table + "\n")
    chart = plot_results(results, out / "ablation.png")
    print("\n" + table)
    print(f"\nwrote {out / 'ablation.md'}, {out / 'ablation.json'}" + (f", {chart}" if chart else ""))
    return summary


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def format_tables(summary: dict) -> str:
    """The README tables: the plain list; Table 1's layout (location); Table 4's (fusion x location)."""
    results = summary["results"]
    flow_study = [k for k in results if k in VARIANT_NAMES]
    parts = []
    gradient_study = [k for k in results if k in GRADIENT_VARIANTS]
    if gradient_study:
        parts.append(format_table({"results": {k: results[k] for k in gradient_study}}))
    if set(flow_study) - {"none"}:  # RGB only alone is the first row of the location table below
        parts.append(format_table({"results": {k: results[k] for k in flow_study}}))
    locations = [loc for loc in LOCATIONS if f"none@{loc}" in results]
    if locations:
        lines = ["| flow layer (Table 1) | video top-1 | clip top-1 | mean class acc. | train time |",
                 "|---|---:|---:|---:|---:|"]
        rows = (["none"] if "none" in results else []) + [f"none@{loc}" for loc in locations]
        for key in rows:
            r = results[key]
            lines.append(f"| {r['name']} | {_pct(r['video_top1'])} | {_pct(r['clip_top1'])} | "
                         f"{_pct(r['mean_class_accuracy'])} | {r['train_seconds'] / 60:.1f} min |")
        parts.append("\n".join(lines))
    fusion_locs = [loc for loc in LOCATIONS if any(f"{f}@{loc}" in results for f in FUSIONS if f != "none")]
    if fusion_locs:
        lines = ["| fusion (Table 4), video top-1 | " + " | ".join(f"flow + fusion @ {loc}" for loc in fusion_locs)
                 + " |", "|---|" + "---:|" * len(fusion_locs)]
        for f in FUSIONS:
            cells = [_pct(results.get(f"{f}@{loc}", {}).get("video_top1")) for loc in fusion_locs]
            lines.append(f"| {FUSION_NAMES[f]} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def format_table(summary: dict) -> str:
    results = summary["results"]
    lines = ["| model | video top-1 | clip top-1 | mean class acc. | train time |", "|---|---:|---:|---:|---:|"]
    for r in results.values():
        lines.append(f"| {r['name']} | {100 * r['video_top1']:.1f}% | {100 * r['clip_top1']:.1f}% | "
                     f"{100 * r['mean_class_accuracy']:.1f}% | {r['train_seconds'] / 60:.1f} min |")
    any_r = next(iter(results.values()))
    pairs = [("walk_left", "walk_right"), ("sit_down", "stand_up"), ("pick_up", "put_down")]
    labels = any_r["labels"]
    if all(a in labels and b in labels for a, b in pairs):
        lines.append("")
        lines.append("Accuracy on the time-reversed pairs (same frames, opposite order):")
        lines.append("")
        lines.append("| model | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        lines.append("|---|" + "---:|" * len(pairs))
        for r in results.values():
            acc = r["per_class_accuracy"]  # {label: accuracy}
            cells = [f"{100 * (acc[a] + acc[b]) / 2:.0f}%" for a, b in pairs]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(results: dict, path: Path) -> Path | None:
    """Per-class bars for the flow study; otherwise video top-1 grouped by location, one bar per fusion."""
    try:
        from .. import viz  # matplotlib; the tables are written even where it is missing
    except ImportError as exc:
        print(f"no chart ({exc})", flush=True)
        return None
    if all(k in VARIANT_NAMES or k in GRADIENT_VARIANTS for k in results):
        viz.plot_per_class(results, path)
        return path
    locations = [loc for loc in LOCATIONS if any(k.endswith(f"@{loc}") for k in results)]
    categories = [f"flow @ {loc}" for loc in locations]
    lead: list = []  # the RGB-only baseline gets a group of its own, before the flow locations
    series = {}
    if "none" in results:
        categories, lead = ["no flow layer"] + categories, [None]
        series["RGB only"] = [results["none"]["video_top1"]] + [None] * len(locations)
    for f in FUSIONS:
        values = [results.get(f"{f}@{loc}", {}).get("video_top1") for loc in locations]
        if any(v is not None for v in values):
            series["flow, no fusion" if f == "none" else f"{FUSION_NAMES[f]} fusion"] = lead + values
    viz.plot_grouped_bars(categories, series, path, title="held-out split",
                          ylabel="video top-1 (%)", what="flow location and RGB + flow fusion")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/train_synthetic_gen1.yaml")
    parser.add_argument("--study", choices=STUDIES, default="flow")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="variant keys (none, single, fcf, <fusion>@<location>) instead of a --study")
    parser.add_argument("--fusion-at", nargs="+", default=["input", "layer2"], choices=list(LOCATIONS),
                        help="locations of the fusion study (flow and fusion at the same point)")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="read back variants that already have result.json")
    parser.add_argument("--list", action="store_true", help="print the variant keys of the study and exit")
    add_override_arguments(parser)
    args = parser.parse_args(argv)
    variants = args.variants or study_variants(args.study, args.fusion_at)
    if args.list:
        print(" ".join(variants))
        return 0
    try:
        for key in variants:
            variant_overrides(key)
    except ValueError as exc:
        parser.error(str(exc))
    overrides = collect_overrides(args)
    run_ablation(args.config, overrides, variants, Path(args.out), progress=not args.no_progress, reuse=args.reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
