"""What a training run writes besides checkpoints: log.csv, train.log, curves and confusion charts,
TensorBoard, and the epoch line (with elapsed time and an estimate of the time left)."""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .atomic_io import atomic_write_text

__all__ = ["LOG_FIELDS", "TERM_FIELDS", "add_run_log", "configure_cli_logging", "epoch_line", "fmt_time", "log_to_file",
           "open_tensorboard", "write_log_csv", "write_plots"]

LOG = logging.getLogger("repflow_core.train")

#: log.csv columns. ``val_*``: the validation split carved from the training data (selects best.pt) every
#: evaluated epoch; ``test_*``: the test split, evaluated once at the end with the best weights, written on
#: the row of the epoch those weights come from.
LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "clips_per_s", "data_time", "seconds", "elapsed", "eta")
#: Columns of the joint loss (issue 13), only in runs that have them: ``train_loss`` stays the cross-entropy, and
#: each weighted unsupervised term of the training objective has its own column (its mean over the epoch);
#: ``stage``: UF-TSN's training stage of the epoch.
TERM_FIELDS = ("photometric_loss", "census_loss", "smoothness_loss", "stage")


def configure_cli_logging(level: int = logging.WARNING) -> None:
    """Console logging for the command-line tools: ``LEVEL name: message`` on stderr at ``level`` and above
    (the run's own progress lines are printed by the run; library warnings come through here)."""
    root = logging.getLogger()
    if not any(getattr(h, "_repflow_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(level)
        handler._repflow_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def add_run_log(run_dir: Path) -> logging.Handler:
    """Append the run's lines and what ``repflow_core.*`` loggers report (unreadable videos...) to
    RUN_DIR/train.log; the caller removes the handler when the run ends."""
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("repflow_core")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def log_to_file(handler: logging.Handler | None, msg: str) -> None:
    """Write one of the run's lines to train.log only (the console got it from the run's printer)."""
    if handler is not None:
        handler.handle(LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, msg, None, None))


def fmt_time(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def epoch_line(row: dict, epochs: int, improved: bool) -> str:
    """One line per epoch; with ``--no-progress`` it is the only progress report, so it says the elapsed
    time and the estimated time left (mean epoch time of this process x epochs to go)."""
    val = row.get("val_acc")
    vtxt = f" val_loss {row['val_loss']:.3f} val_acc {val * 100:.1f}%" if val is not None else ""
    terms = "".join(f" {k[:-5]} {row[k]:.4f}" for k in TERM_FIELDS[:-1] if row.get(k) is not None)
    stage = f" [{row['stage']}]" if row.get("stage") else ""
    return (f"epoch {row['epoch']}/{epochs}{stage}: loss {row['train_loss']:.3f}{terms} "
            f"acc {row['train_acc'] * 100:.1f}%{vtxt} "
            f"lr {row['lr']:.2g} {row['clips_per_s']:.1f} clips/s data {row['data_time'] * 1000:.0f} ms/batch "
            f"({fmt_time(row['seconds'])}; elapsed {fmt_time(row['elapsed'])}, left ~{fmt_time(row['eta'])})"
            + (" *best*" if improved else ""))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_log_csv(path: Path, history: Sequence[dict]) -> None:
    fields = LOG_FIELDS + tuple(k for k in TERM_FIELDS if any(row.get(k) is not None for row in history))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    atomic_write_text(path, buf.getvalue())


def write_plots(run_dir: Path, history: Sequence[dict], classes: Sequence[str], best_conf: list | None,
                best_epoch: int | None, split_name: str = "validation") -> None:
    """curves.png (train, validation and, once measured, test) and the confusion matrix of the best epoch."""
    from . import viz

    cols: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "val_loss", "test_loss", "train_acc",
                                             "val_acc", "test_acc") + TERM_FIELDS[:-1]}
    for row in history:
        for k in cols:
            v = row.get(k)
            cols[k].append(float("nan") if v is None else float(v))
    for k in ("test_loss", "test_acc") + TERM_FIELDS[:-1]:  # the joint loss's terms share the loss panel
        if all(math.isnan(v) for v in cols[k]):
            del cols[k]
    viz.plot_curves(cols, run_dir / "curves.png", title=run_dir.name, run_name=run_dir.name)
    if best_conf is not None:
        viz.plot_confusion(np.asarray(best_conf), list(classes), run_dir / "confusion.png",
                           title=f"{split_name}, epoch {best_epoch} (single view)",
                           json_path=run_dir / "confusion.json", run_name=run_dir.name)


def open_tensorboard(run_dir: Path, enabled: bool, log: Callable[[str], None]):
    if not enabled:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except Exception:  # the tensorboard package is optional
        log("TensorBoard not available (pip install tensorboard to enable it); logging to log.csv only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))
