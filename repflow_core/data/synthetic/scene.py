"""Generation 2's rooms: wall and floor textures, furniture and clutter, moving distractors, occluders.

All drawing is vectorised numpy or OpenCV primitives on a *world* canvas (the frame plus the camera margin),
in pixels. Sizes follow the person's standing height ``h`` so a room looks the same at every resolution.
Ranges: wall/floor junction 15-50 % of ``h`` above the person's feet; 1-4 pieces of furniture against the
wall; door swing 0-70 degrees; rolling ball 0.08-0.15 h across, 0.4-1.5 % of the frame width per frame; second
person 45-80 % of ``h``; occluder top 25-50 % of ``h`` above the feet, 0.5-1.1 ``h`` wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .figure import _colour

_WALLS = np.array([[225, 220, 205], [200, 210, 215], [235, 225, 190], [190, 200, 180], [215, 190, 180],
                   [170, 175, 185], [240, 240, 235], [160, 140, 120]], np.float32)  # fmt: skip
_FLOORS = np.array([[150, 110, 70], [120, 85, 55], [190, 160, 120], [110, 110, 115], [160, 160, 150],
                    [90, 70, 60], [140, 130, 110], [70, 80, 95]], np.float32)  # fmt: skip


@dataclass
class SceneConfig:
    """Scene factors. ``*_prob`` are per-clip chances; ``occlusion`` is the chance that furniture stands in
    front of the person's lower body (1.0 / 0.0 force it on / off for a robustness cell)."""

    furniture: tuple[int, int] = (1, 4)
    clutter_prob: float = 0.7
    door_prob: float = 0.35  # a swinging door
    ball_prob: float = 0.3  # a rolling ball
    second_person_prob: float = 0.3  # a second person standing still
    occlusion: float = 0.2
    prop_prob: float = 0.35  # a stool / box near the person in actions that do not need one

    def validate(self) -> SceneConfig:
        for name in ("clutter_prob", "door_prob", "ball_prob", "second_person_prob", "occlusion", "prop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"scene.{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.furniture
        if not 0 <= lo <= hi:
            raise ValueError(f"scene.furniture must be (lo, hi) with 0 <= lo <= hi, got {self.furniture}")
        return self


@dataclass
class Scene:
    """A clip's static room (``background``) and its moving parts, in world pixels."""

    background: np.ndarray  # (Hw, Ww, 3) uint8
    junction: float  # world row of the wall/floor line
    door: tuple[float, float, float, float, tuple] | None = None  # hinge x, top y, width, bottom y, colour
    door_angle: np.ndarray | None = None  # (T,) radians
    ball: tuple[float, float, tuple] | None = None  # radius, floor y, colour
    ball_x: np.ndarray | None = None  # (T,)
    occluder: tuple[int, int, int, int, tuple] | None = None  # x0, y0, x1, y1, colour
    extras: dict = field(default_factory=dict)


def _texture(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """Smooth random texture (H, W, 1) float32 around 0: a few random cells, bicubic up-sampled."""
    cells_y = max(2, int(cells * h / max(h, w)) + 1)
    cells_x = max(2, int(cells * w / max(h, w)) + 1)
    low = rng.normal(0.0, amp, (cells_y, cells_x)).astype(np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]


def room_background(rng: np.random.Generator, hw: int, ww: int, junction: float, h: float) -> np.ndarray:
    """Wall above ``junction`` (paint, texture, optional stripes and wainscot), floor below (boards, tiles or
    carpet in perspective), a skirting board, soft light fall-off and fine grain for the flow to lock onto."""
    yy, xx = np.mgrid[0:hw, 0:ww].astype(np.float32)
    wall = _WALLS[rng.integers(len(_WALLS))] * rng.uniform(0.75, 1.1) + rng.normal(0, 10, 3)
    img = np.broadcast_to(wall.astype(np.float32), (hw, ww, 3)) + _texture(rng, hw, ww, 6, 8)
    kind = int(rng.integers(3))
    if kind == 1:  # wallpaper stripes
        period = rng.uniform(0.05, 0.15) * h
        img = img * (0.93 + 0.07 * (np.sin(2 * math.pi * xx / period) > 0)[..., None])
    elif kind == 2:  # wainscot band
        top = junction - rng.uniform(0.25, 0.45) * h
        img = np.where((yy > top)[..., None], img * rng.uniform(0.7, 0.9), img)
    floor_c = _FLOORS[rng.integers(len(_FLOORS))] * rng.uniform(0.8, 1.15) + rng.normal(0, 8, 3)
    depth = np.maximum(yy - junction, 1.0)  # rows below the junction: nearer floor is lower and larger
    vx = rng.uniform(0.2, 0.8) * ww
    fkind = int(rng.integers(3))
    if fkind == 2:  # carpet: only texture
        pattern = np.zeros_like(yy)
    else:
        seam_x = (xx - vx) / depth * h * 0.05  # converging seams towards a vanishing point above the wall
        board = 0.5 + 0.5 * np.cos(2 * math.pi * seam_x / rng.uniform(0.15, 0.35))
        pattern = (board > 0.96).astype(np.float32)
        if fkind == 1:  # tiles: rows spaced like 1 / distance
            rows = h * 0.5 / depth * 8
            pattern = np.maximum(pattern, (np.cos(2 * math.pi * rows) > 0.97).astype(np.float32))
    floor = floor_c[None, None, :] * (1.0 - 0.25 * pattern[..., None]) + _texture(rng, hw, ww, 10, 10)
    img = np.where((yy >= junction)[..., None], floor, img)
    skirting = (yy >= junction - 0.03 * h) & (yy < junction)
    img = np.where(skirting[..., None], np.float32(rng.uniform(0.6, 1.0)) * wall * 0.85, img)
    light = 1.0 - rng.uniform(0.0, 0.35) * ((xx - rng.uniform(0, ww)) / max(ww, 1)) ** 2  # a lamp off-centre
    img = img * light[..., None]
    grain = cv2.GaussianBlur(rng.normal(0, rng.uniform(3, 7), (hw, ww)).astype(np.float32), (0, 0), 0.8)
    return np.clip(img + grain[..., None], 0, 255).astype(np.uint8)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour, outline: bool = True) -> None:
    p0, p1 = (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1)))
    cv2.rectangle(img, p0, p1, tuple(float(c) for c in colour), -1, cv2.LINE_AA)
    if outline:
        cv2.rectangle(img, p0, p1, tuple(float(c) * 0.55 for c in colour), 1, cv2.LINE_AA)


def draw_furniture(rng: np.random.Generator, img: np.ndarray, junction: float, h: float, count: int,
                   clutter: bool, avoid: tuple[float, float]) -> None:
    """``count`` pieces against the wall (shelf with books, table, cabinet, plant, window, picture), on a world
    canvas; ``avoid`` is a column span kept mostly free so the person is not hidden behind a bookcase."""
    ww = img.shape[1]
    for _ in range(count):
        kind = int(rng.integers(6))
        w = rng.uniform(0.3, 0.8) * h
        x0 = rng.uniform(-0.2 * w, ww - 0.8 * w)
        if avoid[0] < x0 + w / 2 < avoid[1] and kind in (0, 2):
            kind = 5  # tall furniture right behind the person would hide the silhouette: a picture instead
        col = _colour(rng, 40, 200)
        base = junction + rng.uniform(0.0, 0.04) * h
        if kind == 0:  # bookcase with books
            top = base - rng.uniform(0.6, 1.0) * h
            _rect(img, x0, top, x0 + w, base, col)
            n_sh = int(rng.integers(2, 5))
            for k in range(1, n_sh + 1):
                y = top + (base - top) * k / (n_sh + 1)
                _rect(img, x0 + 0.05 * w, y - 0.015 * h, x0 + 0.95 * w, y, [c * 0.7 for c in col], outline=False)
                if clutter:
                    bx = x0 + 0.07 * w
                    while bx < x0 + 0.9 * w:
                        bw = rng.uniform(0.02, 0.05) * h
                        _rect(img, bx, y - 0.015 * h - rng.uniform(0.06, 0.12) * h, bx + bw, y - 0.015 * h,
                              _colour(rng, 30, 230), outline=False)
                        bx += bw + rng.uniform(0.0, 0.03) * h
        elif kind == 1:  # table with objects
            top = base - rng.uniform(0.35, 0.45) * h
            _rect(img, x0, top, x0 + w, top + 0.04 * h, col)
            for lx in (x0 + 0.05 * w, x0 + 0.9 * w):
                _rect(img, lx, top, lx + 0.04 * h, base, [c * 0.8 for c in col], outline=False)
            if clutter:
                for _ in range(int(rng.integers(1, 4))):
                    ox, s = rng.uniform(x0, x0 + 0.85 * w), rng.uniform(0.05, 0.12) * h
                    _rect(img, ox, top - s, ox + s * rng.uniform(0.5, 1.2), top, _colour(rng, 30, 230))
        elif kind == 2:  # cabinet
            top = base - rng.uniform(0.4, 0.7) * h
            _rect(img, x0, top, x0 + w, base, col)
            cv2.line(img, (int(x0 + w / 2), int(top)), (int(x0 + w / 2), int(base)), [c * 0.5 for c in col], 1)
        elif kind == 3:  # plant in a pot
            pot = rng.uniform(0.08, 0.14) * h
            cx = x0 + w / 2
            _rect(img, cx - pot / 2, base - pot, cx + pot / 2, base, _colour(rng, 60, 200))
            green = (float(rng.uniform(20, 80)), float(rng.uniform(90, 170)), float(rng.uniform(20, 80)))
            for _ in range(6):
                c = (int(cx + rng.normal(0, pot)), int(base - pot - abs(rng.normal(pot, pot))))
                ax = (max(1, int(rng.uniform(0.3, 0.8) * pot)), max(1, int(rng.uniform(0.15, 0.3) * pot)))
                cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, green, -1, cv2.LINE_AA)
        elif kind == 4:  # window: bright pane with a cross frame
            y0 = junction - rng.uniform(0.8, 1.1) * h
            y1 = y0 + rng.uniform(0.35, 0.55) * h
            sky = (float(rng.uniform(170, 230)), float(rng.uniform(200, 240)), float(rng.uniform(220, 255)))
            _rect(img, x0, y0, x0 + w, y1, sky)
            fc = _colour(rng, 180, 255)
            cv2.line(img, (int(x0 + w / 2), int(y0)), (int(x0 + w / 2), int(y1)), fc, max(1, int(0.015 * h)))
            cv2.line(img, (int(x0), int((y0 + y1) / 2)), (int(x0 + w), int((y0 + y1) / 2)), fc, max(1, int(0.015 * h)))
        else:  # picture frame
            y0 = junction - rng.uniform(0.7, 1.0) * h
            s = rng.uniform(0.15, 0.3) * h
            _rect(img, x0, y0, x0 + s * rng.uniform(0.8, 1.5), y0 + s, _colour(rng, 20, 120))
            _rect(img, x0 + 0.1 * s, y0 + 0.1 * s, x0 + s * 0.7, y0 + 0.9 * s, _colour(rng, 40, 240), outline=False)


def draw_door(img: np.ndarray, door: tuple, angle: float) -> None:
    """A door leaf hinged at ``door[0]``, opened by ``angle`` (radians) towards the camera: its projected width
    shrinks with cos(angle) and its free edge grows with the perspective (nearer = taller)."""
    hx, top, width, bottom, colour = door
    x1 = hx + width * math.cos(angle)
    grow = 0.12 * (bottom - top) * math.sin(angle)
    pts = np.array([[hx, top], [x1, top - grow * 0.5], [x1, bottom + grow * 0.5], [hx, bottom]], np.float32)
    cv2.fillPoly(img, [np.rint(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
    knob = (int(round(hx + (x1 - hx) * 0.85)), int(round((top + bottom) / 2)))
    cv2.circle(img, knob, max(1, int(abs(x1 - hx) * 0.05)), (200.0, 190.0, 120.0), -1, cv2.LINE_AA)


def draw_ball(img: np.ndarray, x: float, radius: float, floor_y: float, colour: tuple) -> None:
    """A ball rolling on the floor; its stripe turns with the distance rolled (angle = x / radius)."""
    c = (int(round(x * 16)), int(round((floor_y - radius) * 16)))
    r = max(16, int(round(radius * 16)))
    cv2.circle(img, c, r, colour, -1, cv2.LINE_AA, 4)
    ang = x / max(radius, 1.0)
    dx, dy = math.cos(ang) * radius * 16, math.sin(ang) * radius * 16
    cv2.line(img, (int(c[0] - dx), int(c[1] - dy)), (int(c[0] + dx), int(c[1] + dy)),
             tuple(255.0 - v for v in colour), max(1, int(radius * 0.25)), cv2.LINE_AA, 4)
