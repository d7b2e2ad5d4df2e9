"""Learning curve of fine-tuning on new actions (issue 10.3): video top-1 on unseen clips against clips per class,
fine-tuned from the packaged model vs trained from scratch, the same budget of optimiser steps.

    python -m repflow_core.experiments.learning_curve [--counts 10 3 5 20] [--steps 48] [--test-per-class 10]
        [--data-seed 1] [--init-from CKPT]
        [--out runs/learning_curve] [--docs docs]

Label set: the synthetic generator's :data:`~repflow_core.data.synthetic.EXTRA_ACTIONS` (``point``, ``drink``,
``nod``), none of which the packaged model knows, rendered by generation 1 at 128x128 (the packaged model's
data: 40 frames at 15 fps, seed 1 so no clip repeats the packaged training set's seeds). ``N`` clips per class
for training (all of them: no validation split, the last weights are tested, so "N clips" means N clips
learnt from), ``--test-per-class`` other clips per class for the test, evaluated with
:func:`repflow_core.evaluate.evaluate_checkpoint` (3 uniformly spaced clips per video, centre crop).

Both arms use ``config/finetune.yaml`` (the packaged model's architecture; its input spec, lr, schedule, balanced
sampling, EMA: the shipped fine-tuning recipe, 16 frames at stride 2 and 160 px since the recipe search in the
README) with ``data.val_fraction=0`` and early stopping off; they differ only in the start:

* ``finetune``: ``--init-from`` the packaged model, stem..layer2 frozen (``freeze_until: layer2``);
* ``scratch``: random initialisation, every stage trained.

The budget is ``--steps`` optimiser steps of ``batch_size`` clips for every run (epochs = steps / steps per
epoch, rounded up), so a run with fewer clips sees each clip more often but the same number of clips.
Writes ``results.json`` (one entry per run, read back with ``--reuse`` so the runs can be resumed),
``learning_curve.md`` (the README table) and ``learning_curve.png`` into ``--out`` and copies both into
``--docs``, with ``learning_curve.json`` = ``{"curve": results, "variants": ...}`` (the variants already there,
the README's recipe checks, are kept). The two arms can run as two processes at once (``--arms finetune`` and
``--arms scratch --out OTHER``), then ``--reuse --merge OTHER`` makes the combined table, plot and docs.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

from ..atomic_io import atomic_write_text
from ..config import load_train_config
from ..data.synthetic import EXTRA_ACTIONS, write_dataset
from ..evaluate import evaluate_checkpoint
from ..train import train

PACKAGED = Path(__file__).resolve().parents[1] / "weights" / "synthetic_default.pt"
CONFIG = Path(__file__).resolve().parents[2] / "config" / "finetune.yaml"
ARMS = ("finetune", "scratch")


def make_data(root: Path, max_count: int, test_per_class: int, log, seed: int = 1) -> Path:
    """Render ``max_count + test_per_class`` clips per extra action once (kept in ``root``) from generator seed
    ``seed`` (1: the README's curve; another seed gives a disjoint benchmark, e.g. to choose a recipe on)."""
    done = root / "classInd.txt"
    if done.is_file():
        return root
    total = max_count + test_per_class
    info = write_dataset(root, total, num_frames=40, size=128, fps=15, seed=seed, test_fraction=test_per_class / total,
                         progress=False, generation=1, actions=EXTRA_ACTIONS)
    log(f"rendered {info['num_videos']} clips ({info['num_train']} train pool / {info['num_test']} test) "
        f"in {info['seconds']:.0f} s into {root}")
    return root


def write_trainlist(root: Path, count: int) -> str:
    """``trainlist_cNN.txt``: the first ``count`` training clips of each class (nested: 3 of them are in 5's)."""
    pool = [ln for ln in (root / "trainlist.txt").read_text().split() if ln]
    chosen = []
    for action in EXTRA_ACTIONS:
        mine = sorted(p for p in pool if p.startswith(f"{action}/"))
        if len(mine) < count:
            raise ValueError(f"only {len(mine)} training clips of {action} in {root}, {count} asked")
        chosen += mine[:count]
    name = f"trainlist_c{count:02d}.txt"
    atomic_write_text(root / name, "".join(f"{p}\n" for p in chosen))
    return name


def run_one(root: Path, out: Path, arm: str, count: int, steps: int, log, extra: list[str] | None = None,
            init_from: Path = PACKAGED) -> dict:
    """Train one arm on ``count`` clips per class with ``steps`` optimiser steps; evaluate on the test clips.
    The ``finetune`` arm starts from ``init_from`` (the packaged model unless told otherwise)."""
    run_dir = out / f"{arm}_c{count:02d}"
    overrides = [f"data.root={root}", "data.layout=splitlist", f"data.train_list={write_trainlist(root, count)}",
                 "data.test_list=testlist.txt", "data.val_fraction=0", "early_stopping_patience=0",
                 f"out_dir={run_dir}", "device=cpu", "tensorboard=false"]
    if arm == "scratch":
        overrides += ["freeze_until=", "bn_recalibrate_until=50"]  # young statistics need the re-estimation
    overrides += list(extra or [])
    cfg = load_train_config(CONFIG, overrides)
    n_train = count * len(EXTRA_ACTIONS)
    cfg.epochs = max(1, math.ceil(steps / math.ceil(n_train / cfg.batch_size)))
    t0 = time.perf_counter()
    res = train(cfg, init_from=init_from if arm == "finetune" else None, progress=False, overwrite=True,
                log=lambda m: log(f"  [{arm} c{count}] {m}"))
    train_s = time.perf_counter() - t0
    metrics = evaluate_checkpoint(run_dir / "best.pt", cfg.data, clips=3, crops=1, device="cpu",
                                  out_dir=run_dir / "eval", progress=False, log=lambda m: None)
    return {"arm": arm, "clips_per_class": count, "epochs": cfg.epochs, "steps": res.history[-1]["step"],
            "train_seconds": round(train_s, 1), "video_top1": metrics["video_top1"],
            "clip_top1": metrics["clip_top1"], "per_class_accuracy": metrics["per_class_accuracy"],
            "test_videos": metrics["num_videos"], "run_dir": str(run_dir)}


def merge_results(results: list[dict], dirs: list[str]) -> list[dict]:
    """``results`` plus the runs of ``DIR/results.json`` for each of ``dirs`` that ``results`` lacks (same arm and
    clip count); a missing or unreadable file raises naming it."""
    merged = list(results)
    for d in dirs:
        path = Path(d) / "results.json"
        try:
            theirs = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--merge: cannot read {path}: {exc}") from exc
        have = {(r["arm"], r["clips_per_class"]) for r in merged}
        merged += [r for r in theirs if (r["arm"], r["clips_per_class"]) not in have]
    return merged


def table(results: list[dict]) -> str:
    counts = sorted({r["clips_per_class"] for r in results})
    get = {(r["arm"], r["clips_per_class"]): r for r in results}
    lines = ["| clips per class | " + " | ".join(str(c) for c in counts) + " |",
             "|---|" + "---|" * len(counts)]
    for arm in ARMS:
        cells = [f"{get[(arm, c)]['video_top1']:.2f}" if (arm, c) in get else "-" for c in counts]
        lines.append(f"| {arm} video top-1 | " + " | ".join(cells) + " |")
    for arm in ARMS:
        cells = [f"{get[(arm, c)]['train_seconds']:.0f}" if (arm, c) in get else "-" for c in counts]
        lines.append(f"| {arm} training s | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path, steps: int) -> None:
    from ..charts import _figure, _render

    fig = _figure(760, 440)
    ax = fig.add_subplot(1, 1, 1)
    for arm, style in zip(ARMS, ("o-", "s--")):
        pts = sorted((r["clips_per_class"], r["video_top1"]) for r in results if r["arm"] == arm)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=arm)
    ax.axhline(0.85, color="grey", lw=0.8, ls=":", label="goal 0.85")
    ax.axhline(1 / len(EXTRA_ACTIONS), color="grey", lw=0.8, ls="-.", label="chance")
    ax.set_xscale("log")
    counts = sorted({r["clips_per_class"] for r in results})
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()  # a log axis would label 4x10^0 ... between the counts
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training clips per class")
    ax.set_ylabel("video top-1 on unseen clips")
    ax.set_title(f"new actions ({', '.join(EXTRA_ACTIONS)}): fine-tune vs scratch, {steps} steps each")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    _render(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repflow_core.experiments.learning_curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[10, 3, 5, 20], help="clips per class (run order)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    # 48 steps of 8 clips: 24 left the fine-tuned model underfit (training accuracy ~0.7 at the end, README table)
    p.add_argument("--steps", type=int, default=48, help="optimiser steps per run (the same budget for all)")
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--data-seed", type=int, default=1,
                   help="generator seed of the clips (1: the README's curve; another: a disjoint benchmark)")
    p.add_argument("--init-from", default=str(PACKAGED), metavar="CKPT",
                   help="the finetune arm's start (default: the packaged model); its architecture must be "
                        "config/finetune.yaml's model section (else pass it with --set model.KEY=VALUE)")
    p.add_argument("--out", default="runs/learning_curve")
    p.add_argument("--docs", default="docs", help="where the table and plot are copied ('' = nowhere)")
    p.add_argument("--reuse", action="store_true", help="keep the runs already in results.json")
    p.add_argument("--merge", nargs="*", default=[], metavar="DIR",
                   help="add the runs in DIR/results.json (e.g. the other arm, run as a second process at the same "
                        "time) to the table and plot; a run present here wins")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for both arms, e.g. data.frame_stride=2")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    root = make_data(out / "data", max(args.counts), args.test_per_class, log, args.data_seed)
    rpath = out / "results.json"
    results = json.loads(rpath.read_text()) if args.reuse and rpath.is_file() else []
    results = merge_results(results, args.merge)
    for count in args.counts:
        for arm in args.arms:
            if any(r["arm"] == arm and r["clips_per_class"] == count for r in results):
                continue
            log(f"run {arm} with {count} clips per class ...")
            r = run_one(root, out, arm, count, args.steps, log, args.set, Path(args.init_from))
            r["overrides"] = list(args.set)
            if arm == "finetune":
                r["init_from"] = args.init_from
            results.append(r)
            atomic_write_text(rpath, json.dumps(results, indent=1) + "\n")
            log(f"-> {arm} c{count}: video top-1 {r['video_top1']:.3f} ({r['epochs']} epochs, {r['steps']} steps, "
                f"{r['train_seconds']:.0f} s)")
            atomic_write_text(out / "learning_curve.md", table(results))
            plot(results, out / "learning_curve.png", args.steps)
    atomic_write_text(rpath, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "learning_curve.md", table(results))
    plot(results, out / "learning_curve.png", args.steps)
    print(table(results))
    if args.docs:
        write_docs(Path(args.docs), out, results)
    return 0


def write_docs(docs: Path, out: Path, results: list[dict]) -> None:
    """Copy the table and plot into ``docs``; ``learning_curve.json`` = ``{"curve": results, "variants": [...]}``,
    keeping the ``variants`` (recipe checks run with other options, README) already there."""
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("learning_curve.md", "learning_curve.png"):
        shutil.copyfile(out / name, docs / (name + ".tmp"))
        (docs / (name + ".tmp")).replace(docs / name)
    variants = []
    old = docs / "learning_curve.json"
    if old.is_file():
        prev = json.loads(old.read_text())
        variants = prev.get("variants", []) if isinstance(prev, dict) else []
    atomic_write_text(old, json.dumps({"curve": results, "variants": variants}, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
