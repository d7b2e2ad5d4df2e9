"""Multi-view evaluation: ``python -m repflow_core.evaluate --checkpoint PATH --config CONFIG``.

Usage::

    python -m repflow_core.evaluate --checkpoint runs/synthetic/best.pt --config config/train_synthetic.yaml
    python -m repflow_core.evaluate --checkpoint runs/ucf/best.pt --config config/train_ucf101.yaml \\
        --set data.root=/data/UCF101 data.split=1 --clips 10 --crops 3 --out runs/ucf/eval_split1
    python -m repflow_core.evaluate --checkpoint CKPT --robustness   # no dataset: see repflow_core/robustness.py
    python -m repflow_core.evaluate --checkpoint CKPT --bag BAG --topic TOPIC [--spans SPANS.csv] [--out DIR]

Protocol: every test video gives ``clips`` evenly spaced clips x ``crops`` crops (1 = centre, 3 = along
the long side) after resizing the short side to the checkpoint's ``resize_short``; the softmax scores of
all views are averaged per video (the paper's appendix A tests Table 9 on 25 crops; the other tables
without multi-cropping). The clip length, stride, crop size, short side and normalisation come from the
checkpoint's input spec, so the views are what the model was trained on and what the Recognizer feeds it.

Reports clip top-1 (every view on its own), video top-1 / top-5, mean class accuracy (the mean of the
per-class video recalls), prints a per-class table (accuracy, support, most-confused-with) and writes
into ``--out`` (default: ``<checkpoint folder>/eval_<checkpoint name>``): ``metrics.json``,
``predictions.csv`` (path, label, predicted, score, top5), ``confusion.png`` and ``confusion.json``.
Unreadable videos are reported and left out of every metric.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import bag_replay, robustness
from .atomic_io import atomic_write_text
from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, add_override_arguments, collect_overrides, load_train_config
from .data.dataset import INVALID_LABEL, MultiViewDataset, make_loader
from .data.layouts import DataConfig, DatasetError, VideoSample, build_samples, fingerprint
from .data.transforms import normalize_on_device
from .recognizer import NonFiniteOutput, RecognizerError, resolve_device

__all__ = ["LabelMismatchError", "evaluate_checkpoint", "main", "per_class_table"]

METRIC_KEYS = ("clip_top1", "video_top1", "video_top5", "mean_class_accuracy")


class LabelMismatchError(DatasetError):
    """The checkpoint's labels are not the dataset's classes."""


def _match_labels(ckpt_labels: Sequence[str], classes: Sequence[str], where: str) -> list[int] | None:
    """Index map dataset label -> model output, or None when identical. Same names in another order
    are remapped (names are what matter); anything else is a LabelMismatchError."""
    ckpt_labels, classes = list(ckpt_labels), list(classes)
    if ckpt_labels == classes:
        return None
    if sorted(ckpt_labels) == sorted(classes) and len(set(classes)) == len(classes):
        pos = {c: i for i, c in enumerate(ckpt_labels)}
        return [pos[c] for c in classes]
    only_ckpt = [c for c in ckpt_labels if c not in set(classes)]
    only_data = [c for c in classes if c not in set(ckpt_labels)]
    raise LabelMismatchError(
        f"the checkpoint's {len(ckpt_labels)} labels do not match the {len(classes)} classes of {where}: "
        f"only in the checkpoint {only_ckpt[:8]}{'...' if len(only_ckpt) > 8 else ''}, "
        f"only in the dataset {only_data[:8]}{'...' if len(only_data) > 8 else ''}. "
        f"Evaluate on the dataset the model was trained for (check data.root / data.layout)")


def _views_config(ckpt_path: Path, spec, data_cfg: DataConfig, clips: int | None, crops: int | None,
                  say: Callable[[str], None]) -> DataConfig:
    """A copy of ``data_cfg`` whose views are built as the model expects them, whatever the config file says."""
    cfg = copy.deepcopy(data_cfg)
    changed = []
    for name, value in (("clip_len", spec.clip_len), ("frame_stride", spec.frame_stride),
                        ("size", int(spec.size[0])), ("resize_short", int(spec.resize_short)),
                        ("crop", spec.crop)):
        if getattr(cfg, name) != value:
            changed.append(f"{name} {getattr(cfg, name)} -> {value}")
            setattr(cfg, name, value)
    if spec.size[0] != spec.size[1]:
        raise CheckpointError(f"{ckpt_path}: non-square input size {spec.size} is not supported by the datasets")
    if clips is not None:
        cfg.test_clips = int(clips)
    if crops is not None:
        cfg.test_crops = int(crops)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if changed:
        say("using the checkpoint's input spec: " + ", ".join(changed))
    return cfg


def _eval_samples(cfg: DataConfig, subset: str, ckpt_labels: Sequence[str], samples: Sequence[VideoSample] | None,
                  classes: Sequence[str] | None, max_videos: int | None,
                  say: Callable[[str], None]) -> tuple[list[VideoSample], str]:
    """The videos to evaluate, labelled in the checkpoint's class order, and a description of where they are."""
    if samples is None:
        samples, classes = build_samples(cfg, subset)
    elif classes is None:
        raise ValueError("evaluate_checkpoint: pass classes together with samples")
    samples, classes = list(samples), list(classes)
    where = f"{cfg.root or 'the dataset'} ({cfg.layout}, {subset})"
    remap = _match_labels(ckpt_labels, classes, where)
    if remap is not None:
        say("note: the dataset lists the checkpoint's classes in another order; matching them by name")
        samples = [VideoSample(s.path, remap[s.label]) for s in samples]
    if max_videos is not None and 0 < max_videos < len(samples):
        pick = np.linspace(0, len(samples) - 1, max_videos).round().astype(int)
        samples = [samples[i] for i in sorted(set(pick.tolist()))]
    return samples, where


def _score_views(model: torch.nn.Module, loader, spec, dev: torch.device, samples: Sequence[VideoSample], views: int,
                 k: int, ckpt_path: Path, desc: str, progress: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Softmax scores averaged over each video's views; returns (probs, valid, clip_correct, clip_total)."""
    probs_all = np.zeros((len(samples), k), np.float64)
    valid = np.zeros(len(samples), bool)
    clip_correct = 0
    clip_total = 0
    with torch.inference_mode():
        for batch, y, idx in tqdm(loader, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
            keep = y != INVALID_LABEL
            if not bool(keep.any()):
                continue
            batch, y, idx = batch[keep], y[keep], idx[keep]
            b = batch.shape[0]
            x = normalize_on_device(batch.to(dev, non_blocking=True).flatten(0, 1), spec.mean, spec.std)
            p = torch.softmax(model(x).float(), dim=1).view(b, views, k).cpu()
            if not bool(torch.isfinite(p).all()):
                # Accuracies computed from NaN scores would be made up (argmax of NaN is 0): stop here.
                bad_videos = [str(samples[int(i)].path) for i in idx[~torch.isfinite(p).flatten(1).all(1)]]
                raise NonFiniteOutput(f"{ckpt_path}: the model's scores are not finite (NaN or inf) on "
                                      f"{', '.join(bad_videos[:3])}; the checkpoint's weights or input spec are "
                                      "broken, no metrics written")
            clip_correct += int((p.argmax(2) == y.view(b, 1)).sum())
            clip_total += b * views
            probs_all[idx.numpy()] = p.mean(1).double().numpy()
            valid[idx.numpy()] = True
    return probs_all, valid, clip_correct, clip_total


def _video_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Video top-1 / top-5, mean class accuracy and per-class recall; returns (metrics, confusion, top-k indices)."""
    k = len(labels)
    pred = probs.argmax(1)
    topk = min(5, k)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y_true, pred), 1)
    per_class = {}
    recalls = []
    for c in range(k):
        total_c = int(conf[c].sum())
        if total_c:
            per_class[labels[c]] = float(conf[c, c] / total_c)
            recalls.append(conf[c, c] / total_c)
        else:
            per_class[labels[c]] = None
    metrics = {
        "video_top1": float((pred == y_true).mean()),
        "video_top5": float((top == y_true[:, None]).any(1).mean()),
        "mean_class_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "top5_k": topk,
        "per_class_accuracy": per_class,
    }
    return metrics, conf, top


def _write_reports(out: Path, metrics: dict, conf: np.ndarray, labels: Sequence[str], samples: Sequence[VideoSample],
                   probs: np.ndarray, top: np.ndarray, ckpt_path: Path, cfg: DataConfig,
                   say: Callable[[str], None]) -> None:
    """``confusion.png`` / ``confusion.json``, ``predictions.csv`` (valid ``samples`` only) and ``metrics.json``."""
    out.mkdir(parents=True, exist_ok=True)
    from . import viz

    viz.plot_confusion(conf, labels, out / "confusion.png",
                       title=f"{ckpt_path.name}, {cfg.test_clips}x{cfg.test_crops} views",
                       json_path=out / "confusion.json", run_name=ckpt_path.resolve().parent.name)
    rows = io.StringIO(newline="")
    w = csv.writer(rows)
    w.writerow(["path", "label", "predicted", "score", "top5"])
    for s, pr, tp in zip(samples, probs, top):
        w.writerow([str(s.path), labels[s.label], labels[int(tp[0])], f"{pr[tp[0]]:.4f}",
                    " ".join(f"{labels[int(c)]}:{pr[c]:.3f}" for c in tp)])
    # Atomic like every other report: an evaluation killed mid-write (or a second one racing) never leaves a
    # truncated metrics.json that a script comparing runs would read as a result.
    atomic_write_text(out / "predictions.csv", rows.getvalue())
    metrics["out_dir"] = str(out)
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(metrics), indent=1))
    say(f"wrote metrics.json, predictions.csv, confusion.png to {out}")


def evaluate_checkpoint(
    ckpt_path: str | os.PathLike, data_cfg: DataConfig, clips: int | None = None, crops: int | None = None,
    device: str = "auto", out_dir: str | os.PathLike | None = None, batch_size: int = 4, subset: str = "test",
    samples: Sequence[VideoSample] | None = None, classes: Sequence[str] | None = None,
    max_videos: int | None = None, progress: bool = True, write_files: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate a checkpoint on ``subset`` of the dataset described by ``data_cfg``; returns the metrics.

    ``clips``/``crops`` default to ``data_cfg.test_clips``/``test_crops``. ``samples``/``classes`` skip
    ``build_samples`` (e.g. a custom list). ``max_videos`` takes an evenly spread subset (quick checks).
    The returned dict has ``clip_top1``, ``video_top1``, ``video_top5``, ``mean_class_accuracy``,
    ``per_class_accuracy``, ``confusion`` (list of lists), ``labels``, ``num_videos``,
    ``skipped_videos``, ``clips``, ``crops``, ``views_per_video``, ``seconds``, ``videos_per_s``,
    ``checkpoint``, ``dataset_fingerprint`` and, when files are written, ``out_dir``.
    """
    say = log or tqdm.write
    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    spec = ckpt.input_spec
    cfg = _views_config(ckpt_path, spec, data_cfg, clips, crops, say)
    samples, where = _eval_samples(cfg, subset, ckpt.labels, samples, classes, max_videos, say)
    labels = list(ckpt.labels)
    k = len(labels)

    dev = resolve_device(device, log=lambda m: None)
    model = ckpt.build_model().to(dev).eval()
    ds = MultiViewDataset(samples, labels, cfg)
    loader = make_loader(ds, batch_size, shuffle=False, num_workers=cfg.num_workers, pin_memory=dev.type == "cuda")
    views = ds.num_views
    t0 = time.perf_counter()
    probs_all, valid, clip_correct, clip_total = _score_views(
        model, loader, spec, dev, samples, views, k, ckpt_path,
        f"evaluating ({cfg.test_clips} clips x {cfg.test_crops} crops)", progress)
    seconds = time.perf_counter() - t0

    bad = [str(p) for p in ds.bad_videos]
    if bad:
        say(f"skipped {len(bad)} unreadable videos: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    n = int(valid.sum())
    if n == 0:
        raise DatasetError(f"no readable videos to evaluate in {where}")
    probs = probs_all[valid]
    video, conf, top = _video_metrics(np.array([s.label for s in samples])[valid], probs, labels)
    metrics = {
        "clip_top1": clip_correct / clip_total if clip_total else float("nan"),
        "video_top1": video["video_top1"],
        "video_top5": video["video_top5"],
        "mean_class_accuracy": video["mean_class_accuracy"],
        "top5_k": video["top5_k"],
        "num_videos": n,
        "skipped_videos": bad,
        "clips": cfg.test_clips,
        "crops": cfg.test_crops,
        "views_per_video": views,
        "per_class_accuracy": video["per_class_accuracy"],
        "labels": labels,
        "confusion": conf.tolist(),
        "checkpoint": str(ckpt_path),
        "subset": subset,
        "data_root": str(cfg.root),
        "layout": cfg.layout,
        "input_spec": spec.to_dict(),
        "dataset_fingerprint": fingerprint(samples),
        "seconds": seconds,
        "videos_per_s": n / seconds if seconds > 0 else float("nan"),
        "device": str(dev),
    }
    say(per_class_table(conf, labels))
    say(f"{n} videos x {views} views: clip top-1 {metrics['clip_top1'] * 100:.2f}%, video top-1 "
        f"{metrics['video_top1'] * 100:.2f}%, top-{video['top5_k']} {metrics['video_top5'] * 100:.2f}%, mean class "
        f"accuracy {metrics['mean_class_accuracy'] * 100:.2f}% ({seconds:.1f} s)")
    if write_files:
        out = Path(out_dir) if out_dir else ckpt_path.parent / f"eval_{ckpt_path.stem}"
        _write_reports(out, metrics, conf, labels, [s for s, v in zip(samples, valid) if v], probs, top, ckpt_path,
                       cfg, say)
    return metrics


def per_class_table(confusion: np.ndarray | Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """A text table, one row per class in label order: video accuracy (recall), support (test videos of the
    class) and the class its videos were most often mistaken for, with the count and share of the class's
    videos. Classes without test videos show ``-``; the first of equally confused classes is named."""
    conf = np.asarray(confusion, dtype=np.int64)
    if conf.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {conf.shape} does not match {len(labels)} labels")
    width = max([len("class")] + [len(str(lab)) for lab in labels])
    lines = [f"{'class':<{width}}  accuracy  support  most confused with"]
    for c, label in enumerate(labels):
        support = int(conf[c].sum())
        if not support:
            lines.append(f"{label:<{width}}  {'-':>8}  {0:>7}  -")
            continue
        off = conf[c].copy()
        off[c] = 0
        j = int(off.argmax())
        confused = f"{labels[j]} ({off[j]}, {off[j] / support * 100:.0f}%)" if off[j] else "-"
        lines.append(f"{label:<{width}}  {conf[c, c] / support * 100:>7.1f}%  {support:>7}  {confused}")
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m repflow_core.evaluate",
        description="Multi-view evaluation of a checkpoint on a dataset's test split.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt / last.pt)")
    p.add_argument("--config", help="training YAML for the data section (default: config.yaml next to the "
                                    "checkpoint)")
    p.add_argument("--clips", type=int, default=None, help="clips per video (default data.test_clips)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=None, help="1 centre crop or 3 crops "
                                                                          "(default data.test_crops)")
    p.add_argument("--subset", choices=("test", "train"), default="test")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval_<checkpoint name>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=4, help="videos per batch")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate an evenly spread subset")
    p.add_argument("--no-progress", action="store_true")
    add_override_arguments(p, {"--data-root": "data.root", "--num-workers": "data.num_workers"})
    robustness.add_arguments(p)
    bag_replay.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conflicts = robustness.option_conflicts(args, parser)
    if conflicts:
        parser.error("; ".join(conflicts))
    if args.robustness:  # synthetic matrix, no dataset: see repflow_core/robustness.py
        return robustness.cli(args)
    if args.bag:  # a recorded image topic instead of a dataset: see repflow_core/bag_replay.py
        return bag_replay.run_from_args(args)
    try:
        config = args.config
        if config is None:
            candidate = Path(args.checkpoint).parent / "config.yaml"
            if not candidate.is_file():
                raise ConfigError("pass --config (the training YAML) so the dataset can be found")
            config = str(candidate)
        cfg = load_train_config(config, collect_overrides(args))
        from .data.prepare import maybe_generate_synthetic  # the default config generates its dataset

        maybe_generate_synthetic(cfg, print, progress=not args.no_progress)
        metrics = evaluate_checkpoint(args.checkpoint, cfg.data, clips=args.clips, crops=args.crops,
                                      device=args.device, out_dir=args.out, batch_size=args.batch_size,
                                      subset=args.subset, max_videos=args.max_videos,
                                      progress=not args.no_progress, log=print)
    except (ConfigError, DatasetError, CheckpointError, RecognizerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: metrics[k] for k in METRIC_KEYS + ("num_videos",)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
