"""RGB-only vs representation flow vs flow-of-flow (FcF), trained with the same budget on the same data.

    python -m repflow_core.experiments.ablation --config config/train_synthetic.yaml \
        [--variants none single fcf] [--set epochs=8 ...] [--out runs/ablation]

Each variant is the config with only ``model.flow`` changed (same seed, data, epochs, optimiser), trained
with ``repflow_core.train`` and evaluated with the multi-view protocol of ``repflow_core.evaluate`` on the
held-out split. Writes ``ablation.json``, ``ablation.md`` (the README table) and ``ablation.png``.

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

import cv2
import numpy as np

from ..config import add_override_arguments, collect_overrides, load_train_config
from ..evaluate import evaluate_checkpoint
from ..train import train

VARIANT_NAMES = {"none": "RGB only (no flow layer)", "single": "Representation flow", "fcf": "Flow-conv-flow (FcF)"}


def run_ablation(config_path: str, overrides: list[str], variants: list[str], out: Path, progress: bool = True,
                 reuse: bool = False) -> dict:
    """Train and evaluate each variant; with ``reuse`` a variant whose result.json exists (same config and
    overrides) is read back instead of retrained, so variants can run as separate processes in parallel."""
    out.mkdir(parents=True, exist_ok=True)
    base = load_train_config(config_path, overrides)
    results = {}
    for variant in variants:
        cfg = copy.deepcopy(base)
        cfg.model.flow = variant
        cfg.out_dir = str(out / variant)
        done = Path(cfg.out_dir) / "result.json"
        if reuse and done.is_file():
            saved = json.loads(done.read_text())
            if saved.get("config") == config_path and saved.get("overrides") == overrides:
                results[variant] = saved["result"]
                print(f"=== ablation: {VARIANT_NAMES[variant]}: reusing {done}", flush=True)
                continue
        print(f"\n=== ablation: {VARIANT_NAMES[variant]} -> {cfg.out_dir}", flush=True)
        start = time.perf_counter()
        result = train(cfg, progress=progress, overwrite=True)
        train_seconds = time.perf_counter() - start
        metrics = evaluate_checkpoint(Path(cfg.out_dir) / "best.pt", cfg.data, device=cfg.device,
                                      out_dir=Path(cfg.out_dir) / "eval", progress=progress)
        results[variant] = {
            "name": VARIANT_NAMES[variant],
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
        done.write_text(json.dumps({"config": config_path, "overrides": overrides, "result": results[variant]}, indent=2))
        print(f"    {VARIANT_NAMES[variant]}: video top-1 {metrics['video_top1']:.3f} "
              f"(trained {train_seconds / 60:.1f} min)", flush=True)
    summary = {"config": config_path, "overrides": overrides, "results": results}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2))
    table = format_table(summary)
    (out / "ablation.md").write_text(table + "\n")
    plot_per_class(results, out / "ablation.png")
    print("\n" + table)
    print(f"\nwrote {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'}")
    return summary


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


def plot_per_class(results: dict, path: Path) -> None:
    """Per-class accuracy bars, one colour per variant (OpenCV drawing: no plotting dependency)."""
    labels = next(iter(results.values()))["labels"]
    colours = [(90, 90, 90), (40, 120, 230), (40, 170, 60)]
    width, height, left, bottom, top = 1000, 420, 60, 110, 40
    img = np.full((height, width, 3), 255, np.uint8)
    plot_w, plot_h = width - left - 20, height - top - bottom
    n_var = len(results)
    group = plot_w / len(labels)
    bar = group * 0.8 / n_var
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = int(top + plot_h * (1 - frac))
        cv2.line(img, (left, y), (width - 20, y), (220, 220, 220), 1)
        cv2.putText(img, f"{int(frac * 100)}%", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for v, (variant, r) in enumerate(results.items()):
        for i, acc in enumerate(r["per_class_accuracy"][label] for label in labels):
            x0 = int(left + i * group + group * 0.1 + v * bar)
            y0 = int(top + plot_h * (1 - acc))
            cv2.rectangle(img, (x0, y0), (int(x0 + bar) - 1, top + plot_h), colours[v % 3], -1)
        cv2.rectangle(img, (left + v * 260, 8), (left + v * 260 + 14, 22), colours[v % 3], -1)
        cv2.putText(img, r["name"], (left + v * 260 + 20, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, label in enumerate(labels):
        x = int(left + i * group + group * 0.15)
        cv2.putText(img, label, (x, top + plot_h + 18 + (i % 2) * 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(img, "per-class video accuracy (held-out split)", (left, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/train_synthetic.yaml")
    parser.add_argument("--variants", nargs="+", default=["none", "single", "fcf"], choices=list(VARIANT_NAMES))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="read back variants that already have result.json")
    add_override_arguments(parser)
    args = parser.parse_args(argv)
    overrides = collect_overrides(args)
    run_ablation(args.config, overrides, args.variants, Path(args.out), progress=not args.no_progress,
                 reuse=args.reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
