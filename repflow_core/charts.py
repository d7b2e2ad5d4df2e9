"""Charts (matplotlib): training curves, confusion matrices, grouped and per-class bars, heatmaps.

All functions return RGB uint8 images (H, W, 3); the ``plot_*`` functions also write a PNG when given a path
(atomically, see :mod:`repflow_core.atomic_io`).

Charts use matplotlib's object API on the Agg canvas (``Figure`` + ``FigureCanvasAgg``, never ``pyplot``):
no display is needed, no global figure state is shared between threads, and the process-wide backend is left
alone. matplotlib is imported only when a chart is drawn: it is in the ``train`` extra, not a runtime
dependency of the node.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .atomic_io import atomic_write_text
from .flow_images import _as_numpy, write_png

__all__ = [
    "confusion_figure",
    "confusion_summary",
    "curves_figure",
    "grouped_bars_figure",
    "plot_confusion",
    "plot_curves",
    "plot_grouped_bars",
    "plot_heatmap",
    "plot_per_class",
    "read_log_csv",
]


def read_log_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """Columns of a training log.csv as float lists (empty or non-numeric cells -> NaN)."""
    cols: dict[str, list[float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                try:
                    val = float(v) if v not in (None, "") else float("nan")
                except ValueError:
                    val = float("nan")
                cols.setdefault(k, []).append(val)
    return cols


# ------------------------------------------------------------------------------------- matplotlib

# Colour-blind-safe palette (Okabe-Ito): one colour per split in every chart, so train/validation/test
# read the same in the loss and the accuracy panels (a single legend serves both).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
DPI = 100


def _figure(width_px: int, height_px: int):
    """A matplotlib Figure on its own Agg canvas (no pyplot: thread-safe, backend untouched)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # the train extra: pip install "repflow_ros[train]" or make setup
        raise ImportError("charts need matplotlib: pip install matplotlib (the 'train' extra)") from exc
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _render(fig, path: str | os.PathLike | None) -> np.ndarray:
    """Draw ``fig`` to an RGB uint8 array; write it as PNG when ``path`` is given (the file is this array)."""
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        write_png(img, path)
    return img


def _title(run_name: str, title: str, what: str) -> str:
    """``run: what (details)``: every chart names its run, so a PNG copied out of its folder still says
    which run it shows."""
    head = f"{run_name}: {what}" if run_name else what
    return f"{head} ({title})" if title and title != run_name else head


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


# ---------------------------------------------------------------------------------------- curves


def _split_series(cols: Mapping[str, Sequence[Any]], suffix: str) -> dict[str, list[float]]:
    """``{split: values}`` for the columns ``<split>_<suffix>`` that hold at least one finite value."""
    out = {}
    for name, values in cols.items():
        if name.endswith("_" + suffix) and _finite(values):
            out[name[: -len(suffix) - 1]] = [float(v) if v is not None and v != "" else float("nan")
                                             for v in values]
    return out


def _split_style(split: str, order: list[str]) -> dict:
    if split not in order:
        order.append(split)
    return {"color": PALETTE[order.index(split) % len(PALETTE)], "label": SPLIT_NAMES.get(split, split)}


def plot_curves(log: str | os.PathLike | Mapping[str, Sequence[float]], path: str | os.PathLike | None = None,
                width: int = 1100, height: int = 440, title: str = "", run_name: str = "") -> np.ndarray:
    """:func:`curves_figure` as an RGB image; writes a PNG when ``path`` is given."""
    return _render(curves_figure(log, width, height, title, run_name), path)


def curves_figure(log: str | os.PathLike | Mapping[str, Sequence[float]], width: int = 1100, height: int = 440,
                  title: str = "", run_name: str = ""):
    """Loss and accuracy versus epoch, side by side, from a log.csv path or a dict of columns.

    Columns: ``epoch`` plus any ``<split>_loss`` / ``<split>_acc`` (``train``, ``val``, ``test``...);
    accuracies in [0, 1] are drawn in percent. The loss axis is logarithmic: the first epochs' loss can be
    orders of magnitude above the rest (an untrained model's validation loss), which on a linear axis
    flattens every later point. One legend for both panels sits below them, outside the data, and the
    epoch with the best validation accuracy is marked. ``run_name`` (default: ``title``) heads the figure.
    Returns the matplotlib Figure.
    """
    cols = read_log_csv(log) if isinstance(log, (str, os.PathLike)) else {k: list(v) for k, v in log.items()}
    n = max((len(v) for v in cols.values()), default=0)
    xs = [float(v) for v in cols.get("epoch", range(1, n + 1))]
    fig = _figure(width, height)
    ax_loss, ax_acc = fig.subplots(1, 2)
    order: list[str] = []
    markers = "o" if len(xs) <= 60 else None
    loss = _split_series(cols, "loss")
    for split, ys in loss.items():
        ax_loss.plot(xs[: len(ys)], ys, marker=markers, ms=3, lw=1.8, **_split_style(split, order))
    values = [v for ys in loss.values() for v in _finite(ys)]
    if values and min(values) > 0:
        ax_loss.set_yscale("log")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy" + (" (log scale)" if values and
                                                                         min(values) > 0 else ""))
    acc = _split_series(cols, "acc")
    scale = 100.0 if all(v <= 1.0 for ys in acc.values() for v in _finite(ys)) else 1.0
    for split, ys in acc.items():
        ax_acc.plot(xs[: len(ys)], [v * scale for v in ys], marker=markers, ms=3, lw=1.8,
                    **_split_style(split, order))
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)", ylim=(-2, 102))  # 0 and 100% stay visible
    val = acc.get("val", [])
    if _finite(val):
        best = int(np.nanargmax(np.asarray(val, dtype=np.float64)))
        for ax in (ax_loss, ax_acc):  # the epoch best.pt comes from, in both panels; named in the legend
            ax.axvline(xs[best], color="0.45", ls=":", lw=1.3, label=f"best validation (epoch {xs[best]:g})")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, which="major", color="0.9")
        if all(float(x).is_integer() for x in xs):
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax_loss.get_legend_handles_labels()
    for h, lab in zip(*ax_acc.get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(handles)), frameon=False)
    fig.suptitle(_title(run_name or title, title, "training curves"))
    return fig


# ------------------------------------------------------------------------------------- confusion


def confusion_summary(matrix: Any) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(counts, row-normalised matrix, accuracy, mean class accuracy) of a confusion matrix
    (rows = true class); classes without samples are left out of the mean."""
    m = np.asarray(_as_numpy(matrix), dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    total = m.sum()
    acc = float(np.trace(m) / total) if total else float("nan")
    present = rows[:, 0] > 0
    mca = float(np.mean(np.diag(norm)[present])) if present.any() else float("nan")
    return m, norm, acc, mca


def plot_confusion(matrix: Any, labels: Sequence[str], path: str | os.PathLike | None = None,
                   title: str = "", max_size: int = 1400, json_path: str | os.PathLike | None = None,
                   run_name: str = "") -> np.ndarray:
    """Confusion matrix (rows = true class, columns = predicted) as an image.

    Cells are shaded by the row-normalised value (the fraction of class i predicted as j), so rare and
    common classes read alike; the raw count is written in each cell while the cells are big enough, and
    class names label both axes while they fit (up to 120 classes). The diagonal's mean is the mean class
    accuracy, shown in the title with the overall accuracy. Returns the RGB image; writes a PNG when
    ``path`` is given (and the matrix as JSON to ``json_path``).
    """
    m, norm, acc, mca = confusion_summary(matrix)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {len(labels)} labels")
    img = _render(confusion_figure(matrix, labels, title, max_size, run_name), path)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps({
            "labels": [str(s) for s in labels],
            "matrix": [[int(v) if float(v).is_integer() else float(v) for v in row] for row in m],
            "row_normalised": [[round(float(v), 6) for v in row] for row in norm],
            "accuracy": acc, "mean_class_accuracy": mca,
        }, indent=1))
    return img


def confusion_figure(matrix: Any, labels: Sequence[str], title: str = "", max_size: int = 1400, run_name: str = ""):
    """The matplotlib Figure of :func:`plot_confusion`."""
    k = len(labels)
    m, norm, acc, mca = confusion_summary(matrix)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {k} labels")
    side = int(np.clip(260 + 34 * k, 480, max_size))
    fig = _figure(side + 120, side)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    if k <= 120:  # names stay legible down to ~11 px rows (UCF101's 101 classes at the default max_size)
        shown = [str(s) if len(str(s)) <= 22 else str(s)[:21] + "~" for s in labels]
        fs = float(np.clip(550 / max(k, 1), 4.5, 10))
        ax.set_xticks(range(k), shown, rotation=45, ha="right", rotation_mode="anchor", fontsize=fs)
        ax.set_yticks(range(k), shown, fontsize=fs)
    if k <= 30:
        fs = float(np.clip(240 / max(k, 1), 6, 10))
        for i, j in zip(*np.nonzero(m)):
            txt = str(int(m[i, j])) if float(m[i, j]).is_integer() else f"{m[i, j]:.1f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs,
                    color="white" if norm[i, j] > 0.5 else "0.15")
    ax.set(xlabel="predicted", ylabel="true class")
    heading = _title(run_name, title, "confusion matrix")
    ax.set_title(f"{heading}\naccuracy {acc * 100:.1f}%, mean class accuracy {mca * 100:.1f}% (n={int(m.sum())})",
                 fontsize=10)
    return fig


# -------------------------------------------------------------------------------------------- bars


def plot_grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]],
                      path: str | os.PathLike | None = None, title: str = "", run_name: str = "",
                      ylabel: str = "accuracy (%)", percent: bool = True, what: str = "per-class accuracy",
                      width: int | None = None, height: int = 460) -> np.ndarray:
    """:func:`grouped_bars_figure` as an RGB image; writes a PNG when ``path`` is given."""
    fig = grouped_bars_figure(categories, series, title, run_name, ylabel, percent, what, width, height)
    return _render(fig, path)


def grouped_bars_figure(categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str = "",
                        run_name: str = "", ylabel: str = "accuracy (%)", percent: bool = True,
                        what: str = "per-class accuracy", width: int | None = None, height: int = 460):
    """Bars grouped by category, one colour per series (``{series name: one value per category}``).

    ``percent``: values are fractions in [0, 1], drawn in percent on a 0-100 axis. The legend sits below the
    axes, outside the data. Returns the matplotlib Figure.
    """
    k, names = len(categories), list(series)
    for name, values in series.items():
        if len(values) != k:
            raise ValueError(f"series {name!r} has {len(values)} values for {k} categories")
    width_px = width or int(np.clip(200 + 70 * k * max(1, len(names)) / 2, 700, 2400))
    fig = _figure(width_px, height)
    ax = fig.subplots()
    group = 0.8 / max(1, len(names))
    x = np.arange(k, dtype=np.float64)
    scale = 100.0 if percent else 1.0
    for v, name in enumerate(names):
        ys = [float(val) * scale if val is not None else float("nan") for val in series[name]]
        ax.bar(x - 0.4 + group * (v + 0.5), ys, width=group, color=PALETTE[v % len(PALETTE)], label=name)
    ax.set_xticks(x, [str(c) for c in categories], rotation=30 if k > 6 else 0, ha="right" if k > 6 else "center",
                  rotation_mode="anchor")
    if percent:
        ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="0.9")
    ax.set_axisbelow(True)
    if names:
        # As many columns as fit the figure's width (about 7 px per character of the longest name, plus the
        # marker), so long names wrap onto more rows instead of running off the sides.
        column_px = 7 * max(len(str(n)) for n in names) + 40
        fig.legend(loc="outside lower center", ncols=max(1, min(len(names), 4, width_px // column_px)),
                   frameon=False)
    fig.suptitle(_title(run_name, title, what))
    return fig


def plot_heatmap(values: Any, row_labels: Sequence[str], col_labels: Sequence[str],
                 path: str | os.PathLike | None = None, counts: Any = None, title: str = "", run_name: str = "",
                 what: str = "accuracy", xlabel: str = "", ylabel: str = "") -> np.ndarray:
    """A table of fractions in [0, 1] (rows x columns; NaN = not measured) as a heat map, each cell written in
    percent (with its sample count ``n`` when ``counts`` is given; unmeasured cells grey with "-"). The colour
    scale is fixed to 0-100 % (red-yellow-green) so maps of two models compare at a glance. Returns the RGB
    image; writes a PNG when ``path`` is given (the robustness report's map)."""
    v = np.asarray(_as_numpy(values), dtype=np.float64)
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"heat map values {v.shape} do not match {len(row_labels)} rows x {len(col_labels)} columns")
    n = None if counts is None else np.asarray(counts)
    if n is not None and n.shape != v.shape:
        raise ValueError(f"heat map counts {n.shape} do not match the values {v.shape}")
    r, c = v.shape
    fig = _figure(int(np.clip(260 + 105 * c, 520, 2400)), int(np.clip(170 + 58 * r, 320, 1600)))
    ax = fig.subplots()
    ax.set_facecolor("0.85")  # NaN cells are left undrawn: this grey shows through
    image = ax.imshow(np.ma.masked_invalid(v * 100), cmap="RdYlGn", vmin=0.0, vmax=100.0, interpolation="nearest",
                      aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.9, label="%")
    ax.set_xticks(range(c), [str(s) for s in col_labels], rotation=30 if c > 5 else 0,
                  ha="right" if c > 5 else "center", rotation_mode="anchor")
    ax.set_yticks(range(r), [str(s) for s in row_labels])
    for i in range(r):
        for j in range(c):
            if math.isfinite(v[i, j]):
                txt = f"{v[i, j] * 100:.0f}%" + (f"\nn={int(n[i, j])}" if n is not None else "")
            else:
                txt = "-"
            dark = math.isfinite(v[i, j]) and not 0.2 <= v[i, j] <= 0.85  # the map's dark red / green ends
            ax.text(j, i, txt, ha="center", va="center", fontsize=9, color="white" if dark else "0.1")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(_title(run_name, title, what), fontsize=10)
    return _render(fig, path)


def plot_per_class(results: Mapping[str, Mapping[str, Any]], path: str | os.PathLike | None = None,
                   title: str = "held-out split", run_name: str = "") -> np.ndarray:
    """Per-class accuracy bars of several models (the ablation's ``results``: ``{variant: {"name",
    "labels", "per_class_accuracy": {label: fraction}}}``), one colour per model, classes in the first
    model's label order."""
    if not results:
        raise ValueError("plot_per_class needs at least one result")
    labels = list(next(iter(results.values()))["labels"])
    series = {}
    for variant, r in results.items():
        acc = r["per_class_accuracy"]
        missing = [lab for lab in labels if lab not in acc]
        if missing:
            raise ValueError(f"result {variant!r} has no per-class accuracy for {missing}")
        series[str(r.get("name", variant))] = [acc[lab] for lab in labels]
    return plot_grouped_bars(labels, series, path, title=title, run_name=run_name, what="per-class video accuracy")
