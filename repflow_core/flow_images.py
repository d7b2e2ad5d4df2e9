"""Flow fields as colours, and RGB pictures written as PNG (OpenCV).

Flow colours follow the Middlebury colour wheel (Baker et al., "A Database and Evaluation Methodology
for Optical Flow", 2011) used throughout the optical-flow literature: the hue gives the direction
(right = red, down = yellow-green... see :func:`flow_to_color`), the saturation/brightness the magnitude
relative to ``max_flow``. ``style="hsv"`` gives the OpenCV-tutorial rendering instead: hue = direction,
value = magnitude, black = no motion (easier to read over a dark debug image). Flow pictures stay on OpenCV
because the node and the flow figure draw them per frame, where a plotting library would only add cost.
The charts (matplotlib) are in :mod:`repflow_core.charts`; :mod:`repflow_core.viz` offers both.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .atomic_io import atomic_write_bytes

__all__ = ["flow_grid_image", "flow_to_color", "make_colorwheel", "write_png"]

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


# ------------------------------------------------------------------------------------------ files


def _put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
              thickness: int = 1, outline: tuple[int, int, int] | None = None) -> None:
    org = (int(org[0]), int(org[1]))
    if outline is not None:
        cv2.putText(img, text, org, FONT, scale, outline, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def write_png(img_rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 image as PNG (atomically: temp file + rename, the usual file mode)."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(img_rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    return atomic_write_bytes(path, buf.tobytes())
