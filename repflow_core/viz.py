"""Pictures drawn with OpenCV only: flow fields as colours, training curves, confusion matrices.

All functions return RGB uint8 images (H, W, 3); the ``plot_*`` functions also write a PNG when given
a path (OpenCV writes BGR, the conversion is done here).

Flow colours follow the Middlebury colour wheel (Baker et al., "A Database and Evaluation Methodology
for Optical Flow", 2011) used throughout the optical-flow literature: the hue gives the direction
(right = red, down = yellow-green... see :func:`flow_to_color`), the saturation/brightness the magnitude
relative to ``max_flow``. ``style="hsv"`` gives the OpenCV-tutorial rendering instead: hue = direction,
value = magnitude, black = no motion (easier to read over a dark debug image).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

__all__ = [
    "flow_to_color",
    "flow_grid_image",
    "make_colorwheel",
    "plot_confusion",
    "plot_curves",
    "read_log_csv",
    "write_png",
]

FONT = cv2.FONT_HERSHEY_SIMPLEX

# ------------------------------------------------------------------------------------------- flow


def make_colorwheel() -> np.ndarray:
    """The Middlebury colour wheel: (55, 3) float RGB in [0, 255], hues red->yellow->green->cyan->blue
    ->magenta->red with the segment lengths of the reference code (RY 15, YG 6, GC 4, CB 11, BM 13,
    MR 6), chosen to be perceptually even."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, start, end in segments:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        rows.append(np.asarray(start, np.float64) * (1 - t) + np.asarray(end, np.float64) * t)
    return np.concatenate(rows, 0)


_WHEEL = make_colorwheel()


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def flow_to_color(u_x: Any, u_y: Any, max_flow: float | None = None, style: str = "middlebury") -> np.ndarray:
    """Flow components (H, W) (numpy or torch) -> RGB uint8 (H, W, 3).

    ``u_x`` is the motion along the width (positive = right), ``u_y`` along the height (positive =
    down). The direction picks the hue; the magnitude, divided by ``max_flow`` (default: the largest
    magnitude in the field), picks how strong the colour is. ``middlebury``: white = no motion, full
    colour at ``max_flow`` (darker beyond). ``hsv``: black = no motion, full brightness at ``max_flow``.
    Non-finite values are drawn as no motion.
    """
    ux, uy = _as_numpy(u_x), _as_numpy(u_y)
    if ux.shape != uy.shape or ux.ndim != 2:
        raise ValueError(f"flow_to_color expects two (H, W) arrays of the same shape, got {ux.shape} and {uy.shape}")
    bad = ~(np.isfinite(ux) & np.isfinite(uy))
    ux = np.where(bad, 0.0, ux)
    uy = np.where(bad, 0.0, uy)
    mag = np.sqrt(ux * ux + uy * uy)
    if max_flow is None:
        max_flow = float(mag.max())
    scale = 1.0 / max(float(max_flow), 1e-12)
    rad = mag * scale
    angle = np.arctan2(uy, ux)  # 0 = right, pi/2 = down (image coordinates)
    if style == "hsv":
        hue = ((angle % (2 * np.pi)) / (2 * np.pi) * 180.0).astype(np.float32)  # OpenCV hue is 0..180
        hsv = np.stack([hue, np.full_like(hue, 255.0), (np.clip(rad, 0, 1) * 255.0).astype(np.float32)], -1)
        return cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if style != "middlebury":
        raise ValueError(f"unknown flow colour style {style!r}: use 'middlebury' or 'hsv'")
    ncols = _WHEEL.shape[0]
    # Reference code: a = atan2(-v, -u) / pi in [-1, 1]; fk = (a + 1) / 2 * (ncols - 1).
    a = np.arctan2(-uy, -ux) / np.pi
    fk = (a + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = ((1 - f) * _WHEEL[k0] + f * _WHEEL[k1]) / 255.0
    r = rad[..., None]
    inside = r <= 1
    col = np.where(inside, 1 - r * (1 - col), col * 0.75)
    return np.clip(np.floor(255.0 * col), 0, 255).astype(np.uint8)


def flow_grid_image(flows: Any, cols: int | None = None, cell: int = 96, max_channels: int = 16,
                    max_flow: float | None = None, shared_scale: bool = False, pad: int = 2,
                    style: str = "middlebury", label: bool = True, wheel: bool = True) -> np.ndarray:
    """A grid of per-channel flow colour images from a flow layer output.

    ``flows``: (2C, H, W) with the C x-components first then the C y-components (the layout of
    :class:`repflow_core.flow.RepresentationFlow`, one time step of one clip), numpy or torch.
    Each channel is drawn with :func:`flow_to_color` at ``cell`` pixels (nearest-neighbour upscaling
    keeps feature-map cells visible), at most ``max_channels`` channels (the strongest ones first
    when there are more). ``shared_scale``: one magnitude scale for all channels (compare strengths)
    instead of one per channel (see every channel's pattern). ``wheel`` adds a colour-wheel legend.
    """
    arr = _as_numpy(flows)
    if arr.ndim != 3 or arr.shape[0] % 2:
        raise ValueError(f"flow_grid_image expects (2C, H, W) with x-flows then y-flows, got {arr.shape}")
    c = arr.shape[0] // 2
    ux, uy = arr[:c], arr[c:]
    mags = np.sqrt(ux * ux + uy * uy)
    strength = np.nan_to_num(mags.reshape(c, -1).mean(1))
    order = np.argsort(-strength, kind="stable")[:max_channels] if c > max_channels else np.arange(c)
    if shared_scale and max_flow is None:
        max_flow = float(np.nan_to_num(mags).max()) or 1.0
    tiles = []
    for i in order:
        img = flow_to_color(ux[i], uy[i], max_flow=max_flow, style=style)
        h, w = img.shape[:2]
        s = cell / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_NEAREST)
        tile = np.full((cell, cell, 3), 255, np.uint8)
        tile[: img.shape[0], : img.shape[1]] = img
        if label:
            _put_text(tile, f"c{i}", (3, 13), 0.38, (0, 0, 0), 1, outline=(255, 255, 255))
        tiles.append(tile)
    if wheel:
        tiles.append(_wheel_tile(cell, style))
    n = len(tiles)
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * cell + (rows + 1) * pad, cols * cell + (cols + 1) * pad, 3), 64, np.uint8)
    for k, tile in enumerate(tiles):
        r, q = divmod(k, cols)
        y, x = pad + r * (cell + pad), pad + q * (cell + pad)
        grid[y : y + cell, x : x + cell] = tile
    return grid


def _wheel_tile(cell: int, style: str) -> np.ndarray:
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float64)
    cx = (cell - 1) / 2.0
    ux, uy = xx - cx, yy - cx
    img = flow_to_color(ux, uy, max_flow=cx, style=style)
    img[np.sqrt(ux ** 2 + uy ** 2) > cx] = 255
    _put_text(img, "key", (3, 13), 0.38, (0, 0, 0), 1, outline=(255, 255, 255))
    return img


# ------------------------------------------------------------------------------------------ text


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
              thickness: int = 1, outline: tuple[int, int, int] | None = None) -> None:
    org = (int(org[0]), int(org[1]))
    if outline is not None:
        cv2.putText(img, text, org, FONT, scale, outline, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    return w, h + base


def _put_text_centered(img: np.ndarray, text: str, center: tuple[float, float], scale: float,
                       color: tuple[int, int, int], thickness: int = 1) -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    _put_text(img, text, (int(center[0] - w / 2), int(center[1] + h / 2)), scale, color, thickness)


def _vertical_text(text: str, scale: float, color: tuple[int, int, int], bg: tuple[int, int, int],
                   thickness: int = 1) -> np.ndarray:
    """Text rendered horizontally then rotated 90 degrees counter-clockwise (reads bottom to top)."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    img = np.full((h + base + 4, w + 4, 3), bg, np.uint8)
    cv2.putText(img, text, (2, h + 2), FONT, scale, color, thickness, cv2.LINE_AA)
    return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _paste(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = src.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]


def write_png(img_rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 image as PNG (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------- curves

# Colour-blind-safe palette (Okabe-Ito), RGB.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233)]


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}"


def _panel(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str,
           width: int, height: int, y_range: tuple[float, float] | None = None,
           xlabel: str = "epoch") -> np.ndarray:
    """One line plot: {name: (xs, ys)} -> RGB image with axes, ticks, grid, labels and a legend."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 50
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    xs_all = [x for xs, ys in series.values() for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    ys_all = [y for xs, ys in series.values() for y in ys if y is not None and math.isfinite(y)]
    xlo, xhi = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    if xhi <= xlo:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    if y_range is not None:
        ylo, yhi = y_range
    else:
        ylo, yhi = (min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0)
        ylo = min(ylo, 0.0) if ylo >= 0 and ylo < 0.5 * yhi else ylo
        pad = (yhi - ylo) * 0.05 or 0.5
        ylo, yhi = ylo - (pad if ylo != 0 else 0), yhi + pad
    yt = [t for t in _nice_ticks(ylo, yhi) if ylo - 1e-9 <= t <= yhi + 1e-9]
    xt = [t for t in _nice_ticks(xlo, xhi, 6) if xlo - 1e-9 <= t <= xhi + 1e-9]
    if all(float(x).is_integer() for x in xs_all):
        xt = [t for t in xt if float(t).is_integer()] or xt

    def px(x: float) -> int:
        return int(round(x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)))

    def py(y: float) -> int:
        return int(round(y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)))

    grey, dark = (225, 225, 225), (40, 40, 40)
    for t in yt:
        cv2.line(img, (x0, py(t)), (x1, py(t)), grey, 1)
        w, h = _text_size(_fmt(t), 0.4)
        _put_text(img, _fmt(t), (x0 - w - 6, py(t) + 4), 0.4, dark)
    for t in xt:
        cv2.line(img, (px(t), y0), (px(t), y1), grey, 1)
        label = str(int(t)) if float(t).is_integer() else _fmt(t)
        w, _ = _text_size(label, 0.4)
        _put_text(img, label, (px(t) - w // 2, y1 + 16), 0.4, dark)
    cv2.rectangle(img, (x0, y0), (x1, y1), dark, 1)
    _put_text_centered(img, title, (width / 2, top / 2 - 2), 0.55, (0, 0, 0), 1)
    _put_text_centered(img, xlabel, ((x0 + x1) / 2, height - 14), 0.45, dark)
    _paste(img, _vertical_text(ylabel, 0.45, dark, (255, 255, 255)), 4,
           int((y0 + y1) / 2 - _text_size(ylabel, 0.45)[0] / 2))

    legend = []
    for k, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if not pts:
            continue
        if len(pts) > 1:
            cv2.polylines(img, [np.asarray(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        if len(pts) <= 60:
            for p in pts:
                cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        legend.append((name, color))
    if legend:
        lw = max(_text_size(n, 0.42)[0] for n, _ in legend) + 36
        lh = 18 * len(legend) + 8
        lx, ly = x1 - lw - 8, y0 + 8
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (255, 255, 255), -1)
        cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (160, 160, 160), 1)
        for k, (name, color) in enumerate(legend):
            yy = ly + 14 + 18 * k
            cv2.line(img, (lx + 6, yy - 4), (lx + 26, yy - 4), color, 2, cv2.LINE_AA)
            _put_text(img, name, (lx + 30, yy), 0.42, dark)
    return img


def read_log_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """Columns of a training log.csv as float lists (empty cells -> NaN)."""
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


def plot_curves(log: str | os.PathLike | Mapping[str, Sequence[float]], path: str | os.PathLike | None = None,
                width: int = 1000, height: int = 400, title: str = "") -> np.ndarray:
    """Loss and accuracy versus epoch, side by side, from a log.csv path or a dict of columns
    (``epoch`` plus any of ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``; accuracies in
    [0, 1] are drawn in percent). Returns the RGB image; writes a PNG when ``path`` is given."""
    cols = read_log_csv(log) if isinstance(log, (str, os.PathLike)) else {k: list(v) for k, v in log.items()}
    n = max((len(v) for v in cols.values()), default=0)
    xs = [float(v) for v in cols.get("epoch", range(1, n + 1))]

    def series(names: Sequence[str], scale: float = 1.0) -> dict:
        out = {}
        for name in names:
            if name in cols and any(v is not None and math.isfinite(float(v)) for v in cols[name]):
                ys = [float(v) * scale if v is not None else float("nan") for v in cols[name]]
                out[name.replace("_", " ")] = (xs[: len(ys)], ys)
        return out

    loss = series(["train_loss", "val_loss"])
    acc = series(["train_acc", "val_acc"], 100.0)
    half = width // 2
    head = 30 if title else 0
    img = np.full((height + head, width, 3), 255, np.uint8)
    if title:
        _put_text_centered(img, title, (width / 2, 12), 0.55, (0, 0, 0), 1)
    img[head:, :half] = _panel(loss, "loss", "cross-entropy", half, height)
    img[head:, half:] = _panel(acc, "accuracy", "accuracy (%)", width - half, height, y_range=(0.0, 100.0))
    if path is not None:
        write_png(img, path)
    return img


# ------------------------------------------------------------------------------------- confusion


def plot_confusion(matrix: Any, labels: Sequence[str], path: str | os.PathLike | None = None,
                   title: str = "", max_size: int = 1400, json_path: str | os.PathLike | None = None
                   ) -> np.ndarray:
    """Confusion matrix (rows = true class, columns = predicted) as an image.

    Cells are shaded by the row-normalised value (the fraction of class i predicted as j), so rare and
    common classes read alike; the raw count is written in each cell when the cells are big enough.
    The diagonal's mean is the mean class accuracy, shown in the title with the overall accuracy.
    Returns the RGB image; writes a PNG when ``path`` is given (and the matrix as JSON to ``json_path``).
    """
    m = np.asarray(_as_numpy(matrix), dtype=np.float64)
    k = len(labels)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {k} labels")
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    total = m.sum()
    acc = float(np.trace(m) / total) if total else float("nan")
    present = rows[:, 0] > 0
    mca = float(np.mean(np.diag(norm)[present])) if present.any() else float("nan")

    cell = int(np.clip((max_size - 220) // max(k, 1), 6, 56))
    show_counts = cell >= 22
    label_scale = float(np.clip(cell / 40.0, 0.28, 0.45))
    shown = [str(s) if len(str(s)) <= 22 else str(s)[:21] + "~" for s in labels]
    label_w = max(_text_size(s, label_scale)[0] for s in shown) + 10 if cell >= 10 else 10
    head = title + "  " if title else ""
    heading = f"{head}acc {acc * 100:.1f}%  mean class acc {mca * 100:.1f}%  (n={int(total)})"
    top = label_w + 72
    left = label_w + 30
    bar = 60
    w = left + k * cell + bar + 20
    h = top + k * cell + 40
    img = np.full((h, max(w, 420, _text_size(heading, 0.5)[0] + 20), 3), 255, np.uint8)

    def shade(v: float) -> tuple[int, int, int]:
        # white -> dark blue
        lo, hi = np.array([247, 251, 255], np.float64), np.array([8, 48, 107], np.float64)
        c = lo + (hi - lo) * float(np.clip(v, 0, 1))
        return int(c[0]), int(c[1]), int(c[2])

    for i in range(k):
        for j in range(k):
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), shade(norm[i, j]), -1)
            if show_counts and m[i, j] > 0:
                txt = str(int(m[i, j])) if float(m[i, j]).is_integer() else f"{m[i, j]:.1f}"
                color = (255, 255, 255) if norm[i, j] > 0.5 else (30, 30, 30)
                fs = float(np.clip(cell / 70.0, 0.3, 0.5))
                _put_text_centered(img, txt, (x + cell / 2, y + cell / 2), fs, color)
    cv2.rectangle(img, (left - 1, top - 1), (left + k * cell, top + k * cell), (80, 80, 80), 1)
    if cell >= 8:
        for i, s in enumerate(shown):
            tw, th = _text_size(s, label_scale)
            y = top + i * cell + cell // 2 + 4
            _put_text(img, s, (left - tw - 6, y), label_scale, (20, 20, 20))
            vt = _vertical_text(s, label_scale, (20, 20, 20), (255, 255, 255))
            _paste(img, vt, left + i * cell + (cell - vt.shape[1]) // 2, top - vt.shape[0] - 4)
    _put_text(img, "predicted", (left + k * cell // 2 - 35, top - label_w - 22), 0.5, (0, 0, 0))
    tv = _vertical_text("true class", 0.5, (0, 0, 0), (255, 255, 255))
    _paste(img, tv, 4, top + k * cell // 2 - tv.shape[0] // 2)
    # Colour bar for the row-normalised fraction.
    bx = left + k * cell + 16
    bh = k * cell
    for yy in range(bh):
        cv2.line(img, (bx, top + yy), (bx + 14, top + yy), shade(1 - yy / max(bh - 1, 1)), 1)
    cv2.rectangle(img, (bx, top), (bx + 14, top + bh), (80, 80, 80), 1)
    _put_text(img, "1", (bx + 18, top + 10), 0.4, (20, 20, 20))
    _put_text(img, "0", (bx + 18, top + bh), 0.4, (20, 20, 20))
    _put_text(img, heading, (10, 22), 0.5, (0, 0, 0))
    if path is not None:
        write_png(img, path)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({
            "labels": [str(s) for s in labels],
            "matrix": [[int(v) if float(v).is_integer() else float(v) for v in row] for row in m],
            "row_normalised": [[round(float(v), 6) for v in row] for row in norm],
            "accuracy": acc, "mean_class_accuracy": mca,
        }, indent=1), encoding="utf-8")
    return img
