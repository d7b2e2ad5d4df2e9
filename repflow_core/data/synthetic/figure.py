"""The synthetic person: body proportions, clothes, forward kinematics and OpenCV drawing.

A front-facing articulated figure (head, torso, two-segment arms and legs) in an orthographic view. Joint
angles come from :mod:`.actions`; :func:`_forward_kinematics` turns them into body-frame points (units of the
standing height, x right, y up, origin on the ground between the feet) and :func:`_draw_figure` draws them.

:class:`Body` and :class:`Style` default to the generation-1 figure (every default is the old module
constant, so generation 1 renders byte-identical clips); generation 2 draws both per clip
(:func:`random_body`, :func:`random_style`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ----------------------------------------------------------------------------------------------------
# Body proportions, in units of the standing height (head top to ground).
HEAD_R = 0.075
NECK_LEN = 0.04
TORSO_LEN = 0.30
SHOULDER_HALF = 0.105
HIP_HALF = 0.055
UPPER_ARM = 0.165
FOREARM = 0.155
FOREARM_IK_SCALE = 0.8  # forearms pointing towards the camera look shorter (hand targets via IK)
HAND_R = 0.03
THIGH = 0.245
SHIN = 0.235
FOOT_LEN = 0.05
LEG_W = 0.07
ARM_W = 0.05
ANKLE_H = LEG_W / 2  # ankle height above the ground when standing

_Pt = tuple[float, float]  # body-frame point (figure heights; x right, y up)
_RGB = tuple[float, float, float]

_SIDES = {"l": -1.0, "r": 1.0}  # image-left / image-right limb of the front-facing figure


@dataclass(frozen=True)
class Body:
    """Body proportions in units of the standing height (the defaults are generation 1's fixed body)."""

    head_r: float = HEAD_R
    neck_len: float = NECK_LEN
    torso_len: float = TORSO_LEN
    shoulder_half: float = SHOULDER_HALF
    hip_half: float = HIP_HALF
    upper_arm: float = UPPER_ARM
    forearm: float = FOREARM
    hand_r: float = HAND_R
    thigh: float = THIGH
    shin: float = SHIN
    foot_len: float = FOOT_LEN
    leg_w: float = LEG_W
    arm_w: float = ARM_W

    @property
    def ankle_h(self) -> float:
        """Ankle height above the ground when standing."""
        return self.leg_w / 2


BODY = Body()

# Generation-2 ranges (multipliers of the defaults): head 0.85-1.15, shoulders 0.85-1.2, hips 0.9-1.3,
# limb girth 0.8-1.35, arms 0.92-1.08 and legs 0.92-1.08 (the torso absorbs the leg change so the
# standing height stays 1).
BODY_RANGES = {"head": (0.85, 1.15), "shoulders": (0.85, 1.2), "hips": (0.9, 1.3), "girth": (0.8, 1.35),
               "arms": (0.92, 1.08), "legs": (0.92, 1.08)}  # fmt: skip


def random_body(rng: np.random.Generator) -> Body:
    """Body proportions drawn from :data:`BODY_RANGES`."""
    r = {k: float(rng.uniform(*v)) for k, v in BODY_RANGES.items()}
    thigh, shin = THIGH * r["legs"], SHIN * r["legs"]
    head = HEAD_R * r["head"]
    # Standing height = ankle + shin + thigh + torso + neck + 2 * head radius: keep it 1.
    torso = 1.0 - (LEG_W * r["girth"] / 2 + shin + thigh + NECK_LEN + 2 * head)
    return Body(head_r=head, torso_len=torso, shoulder_half=SHOULDER_HALF * r["shoulders"],
                hip_half=HIP_HALF * r["hips"], upper_arm=UPPER_ARM * r["arms"], forearm=FOREARM * r["arms"],
                thigh=thigh, shin=shin, leg_w=LEG_W * r["girth"], arm_w=ARM_W * r["girth"])


@dataclass(frozen=True)
class Style:
    """Clothes and hair (the defaults are generation 1's: short sleeves, trousers, a hair cap)."""

    long_sleeves: bool = False
    shorts: bool = False
    hair: str = "cap"  # cap | long | none


PLAIN = Style()


def random_style(rng: np.random.Generator) -> Style:
    """Long sleeves 50 %, shorts 20 %, hair cap 55 % / long 30 % / none 15 %."""
    return Style(long_sleeves=bool(rng.random() < 0.5), shorts=bool(rng.random() < 0.2),
                 hair=str(rng.choice(["cap", "long", "none"], p=[0.55, 0.3, 0.15])))

@dataclass
class _Appearance:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    pants: tuple[float, float, float]
    shoes: tuple[float, float, float]
    box: tuple[float, float, float]
    stool: tuple[float, float, float]
    background: np.ndarray | None  # generation 1: (H + 2 pad, W + 2 pad, 3) uint8, cropped by the jitter
    noise_sigma: float


@dataclass
class _Layout:
    height: int
    width: int
    h: float  # standing figure height in pixels
    ground_y: float  # pixel row of the ground under the figure
    anchor_x: np.ndarray  # (T,) pixel column of the figure's feet
    jitter: np.ndarray  # (T, 2) integer camera offsets (dx, dy)
    pad: int
    fall_dir: float = 1.0  # +1: falls towards image right
    partial: float = 0.0  # generation 2: share of a transition that may fall outside the window


@dataclass
class _Props:
    stool_x: float | None = None  # pixel column of the stool centre, None if absent
    box_size: tuple[float, float] = (0.14, 0.11)  # (w, h) in units of the figure height
    box_floor_x: float | None = None  # pixel column of the box on the floor, None if absent
    box_hold_from: int | None = None  # frame index from which the box is in the hand (pick_up)
    box_side: str = "r"  # hand that carries the box
    box_hand_offset: tuple[float, float] = (0.0, 0.0)  # box centre - hand, pixels


def _colour(rng: np.random.Generator, lo: float = 0.0, hi: float = 255.0) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(lo, hi, size=3))  # type: ignore[return-value]


def _skin_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    base = np.array([[255, 224, 196], [234, 192, 150], [198, 140, 100], [141, 85, 54], [90, 56, 37]], float)
    c = base[rng.integers(len(base))] * rng.uniform(0.9, 1.1) + rng.normal(0, 6, 3)
    return tuple(float(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]

def _limb_dir(abd: float, flex: float, side: float) -> tuple[float, float]:
    """Projected unit-length limb direction in the body frame (x right, y up)."""
    c = math.cos(flex)
    return side * math.sin(abd) * c, -math.cos(abd) * c


def _rotate(v: tuple[float, float], ang: float) -> tuple[float, float]:
    ca, sa = math.cos(ang), math.sin(ang)
    return v[0] * ca - v[1] * sa, v[0] * sa + v[1] * ca


def _two_link_ik(
    shoulder: tuple[float, float], target: tuple[float, float], a: float, b: float, side: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Elbow and hand for a two-segment arm reaching ``target``; the elbow bends outwards."""
    dx, dy = target[0] - shoulder[0], target[1] - shoulder[1]
    dist = math.hypot(dx, dy)
    d = min(max(dist, abs(a - b) + 1e-6), a + b - 1e-6)
    base = math.atan2(dy, dx)
    off = math.acos(max(-1.0, min(1.0, (a * a + d * d - b * b) / (2 * a * d))))
    best = None
    for sgn in (1.0, -1.0):
        ang = base + sgn * off
        elbow = (shoulder[0] + a * math.cos(ang), shoulder[1] + a * math.sin(ang))
        if best is None or side * elbow[0] > side * best[0]:
            best = elbow
    assert best is not None
    hand = (shoulder[0] + dx * d / max(dist, 1e-9), shoulder[1] + dy * d / max(dist, 1e-9))
    return best, hand


def _forward_kinematics(p: dict[str, float], b: Body = BODY) -> dict[str, tuple[float, float]]:
    """Joint positions in the body frame (figure heights; x right, y up, origin on the ground at the anchor)."""
    legs = {}
    support = 0.0
    for side, s in _SIDES.items():
        thigh = _limb_dir(p[f"{side}_hip_abd"], p[f"{side}_hip_flex"], s)
        shin = _limb_dir(p[f"{side}_hip_abd"] - p[f"{side}_knee_in"], p[f"{side}_hip_flex"] - p[f"{side}_knee"], s)
        legs[side] = (thigh, shin)
        support = max(support, -(b.thigh * thigh[1] + b.shin * shin[1]))
    pelvis = (p["dx"], support + b.ankle_h)
    pts: dict[str, tuple[float, float]] = {"pelvis": pelvis}
    for side, s in _SIDES.items():
        thigh, shin = legs[side]
        hip = (pelvis[0] + s * b.hip_half, pelvis[1])
        knee = (hip[0] + b.thigh * thigh[0], hip[1] + b.thigh * thigh[1])
        ankle = (knee[0] + b.shin * shin[0], knee[1] + b.shin * shin[1])
        pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ankle
        pts[f"{side}_toe"] = (ankle[0] + s * b.foot_len, ankle[1] - 0.005)
    roll, pitch = p["torso_roll"], p["torso_pitch"]
    up = (math.sin(roll), math.cos(roll))
    perp = (math.cos(roll), -math.sin(roll))
    tl = b.torso_len * math.cos(pitch) * (1.0 + p["breathe"])
    neck = (pelvis[0] + up[0] * tl, pelvis[1] + up[1] * tl)
    hl = (b.neck_len + b.head_r) * math.cos(0.8 * pitch)
    nod = p.get("nod", 0.0)
    if nod:  # head tipped towards the camera: the neck-head segment foreshortens (orthographic view)
        hl *= math.cos(nod)
    pts["neck"] = neck
    pts["head"] = (neck[0] + up[0] * hl, neck[1] + up[1] * hl)
    for side, s in _SIDES.items():
        sh = (neck[0] + s * perp[0] * b.shoulder_half, neck[1] + s * perp[1] * b.shoulder_half)
        pts[f"{side}_shoulder"] = sh
        pts[f"{side}_hipwide"] = (pelvis[0] + s * (b.hip_half + b.leg_w / 2), pelvis[1])
        hx, hy = p[f"{side}_hand_x"], p[f"{side}_hand_y"]
        if math.isnan(hx):
            ua = _rotate(_limb_dir(p[f"{side}_sh_abd"], p[f"{side}_sh_flex"], s), roll * -1)
            fa = _rotate(
                _limb_dir(p[f"{side}_sh_abd"] + p[f"{side}_el_abd"], p[f"{side}_sh_flex"] + p[f"{side}_el_flex"], s),
                -roll,
            )
            elbow = (sh[0] + b.upper_arm * ua[0], sh[1] + b.upper_arm * ua[1])
            hand = (elbow[0] + b.forearm * fa[0], elbow[1] + b.forearm * fa[1])
        else:
            target = (neck[0] + s * hx, neck[1] + hy)
            elbow, hand = _two_link_ik(sh, target, b.upper_arm, b.forearm * FOREARM_IK_SCALE, s)
        pts[f"{side}_elbow"], pts[f"{side}_hand"] = elbow, hand
    rot = p["rot"]
    if rot != 0.0:
        pts = {k: _rotate(v, rot) for k, v in pts.items()}
        radius = {"head": b.head_r, "l_hand": b.hand_r, "r_hand": b.hand_r}
        clearance = min(v[1] - radius.get(k, b.leg_w / 2) for k, v in pts.items())
        if clearance < 0:
            pts = {k: (v[0], v[1] - clearance) for k, v in pts.items()}
    return pts


_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _shade(c: tuple[float, float, float], f: float) -> tuple[float, float, float]:
    return (c[0] * f, c[1] * f, c[2] * f)


class _Canvas:
    """Draws body-frame geometry on an image (and optionally a foreground mask) with outlines."""

    def __init__(self, img: np.ndarray, mask: np.ndarray | None, origin: tuple[float, float], scale: float):
        self.img, self.mask, self.ox, self.oy, self.scale = img, mask, origin[0], origin[1], scale

    def px(self, p: tuple[float, float]) -> tuple[int, int]:
        return int(round((self.ox + p[0] * self.scale) * _ONE)), int(round((self.oy - p[1] * self.scale) * _ONE))

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.scale)))

    def line(self, a: _Pt, b: _Pt, w: float, colour: _RGB, outline: bool = True) -> None:
        th = self.width(w)
        pa, pb = self.px(a), self.px(b)
        if outline:
            cv2.line(self.img, pa, pb, _shade(colour, 0.45), th + 2, cv2.LINE_AA, _SHIFT)
        cv2.line(self.img, pa, pb, colour, th, cv2.LINE_AA, _SHIFT)
        if self.mask is not None:
            cv2.line(self.mask, pa, pb, 255, th, cv2.LINE_8, _SHIFT)

    def circle(self, c: _Pt, r: float, colour: _RGB, outline: bool = True) -> None:
        rad = max(1, int(round(r * self.scale * _ONE)))
        pc = self.px(c)
        if outline:
            cv2.circle(self.img, pc, rad + _ONE, _shade(colour, 0.45), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.img, pc, rad, colour, -1, cv2.LINE_AA, _SHIFT)
        if self.mask is not None:
            cv2.circle(self.mask, pc, rad, 255, -1, cv2.LINE_8, _SHIFT)

    def poly(self, pts: list[_Pt], colour: _RGB) -> None:
        arr = np.array([self.px(p) for p in pts], np.int32)
        cv2.polylines(self.img, [arr], True, _shade(colour, 0.45), 2, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.img, [arr], colour, cv2.LINE_AA, _SHIFT)
        if self.mask is not None:
            cv2.fillPoly(self.mask, [arr], 255, cv2.LINE_8, _SHIFT)


def _draw_stool(cv: _Canvas, x_body: float, colour: _RGB) -> None:
    seat_y = THIGH * math.cos(1.5) + SHIN + ANKLE_H - 0.06
    for s in (-1.0, 1.0):
        cv.line((x_body + s * 0.16, 0.0), (x_body + s * 0.15, seat_y), 0.035, _shade(colour, 0.8), outline=False)
    cv.line((x_body - 0.22, seat_y), (x_body + 0.22, seat_y), 0.06, colour)


def _draw_box(cv: _Canvas, centre: _Pt, size: tuple[float, float], colour: _RGB) -> None:
    w, h = size
    x, y = centre
    cv.poly([(x - w / 2, y - h / 2), (x + w / 2, y - h / 2), (x + w / 2, y + h / 2), (x - w / 2, y + h / 2)], colour)
    cv.line((x - w / 2, y + h * 0.15), (x + w / 2, y + h * 0.15), 0.012, _shade(colour, 0.7), outline=False)


def _draw_figure(
    cv: _Canvas, pts: dict[str, _Pt], app: _Appearance, box: tuple[_Pt, tuple[float, float]] | None = None,
    b: Body = BODY, style: Style = PLAIN,
) -> None:
    """Legs, torso, head, optional box, arms; back to front for a front-facing figure. ``b`` and ``style``
    default to generation 1's body and clothes."""
    for side in _SIDES:
        cv.line(pts[f"{side}_hip"], pts[f"{side}_knee"], b.leg_w, app.pants)
        cv.line(pts[f"{side}_knee"], pts[f"{side}_ankle"], b.leg_w * 0.9, app.skin if style.shorts else app.pants)
        cv.line(pts[f"{side}_ankle"], pts[f"{side}_toe"], b.leg_w * 0.65, app.shoes)
    for side in _SIDES:  # knees last, so thighs pointing at the camera read as knees in front
        cv.circle(pts[f"{side}_knee"], b.leg_w * 0.55, app.pants, outline=False)
    cv.line(pts["neck"], pts["head"], 0.05, app.skin)
    ls, rs = pts["l_shoulder"], pts["r_shoulder"]
    cv.poly([ls, rs, pts["r_hipwide"], pts["l_hipwide"]], app.shirt)
    cv.line(ls, rs, b.arm_w * 1.1, app.shirt, outline=False)
    head = pts["head"]
    if style.hair == "long":  # hair behind the head, down to the shoulders
        cv.line(head, ((head[0] + pts["neck"][0]) / 2, pts["neck"][1] - 0.03), b.head_r * 2.1, app.hair, outline=False)
    cv.circle(head, b.head_r, app.skin)
    # Hair cap on the top half of the head, oriented along the neck->head direction.
    c = cv.px(head)
    r = max(1, int(round(b.head_r * cv.scale * _ONE)))
    dx, dy = head[0] - pts["neck"][0], head[1] - pts["neck"][1]
    ang = math.degrees(math.atan2(-dy, dx)) + 90.0
    if style.hair != "none":
        cv2.ellipse(cv.img, c, (r, r), ang, 180, 360, app.hair, -1, cv2.LINE_AA, _SHIFT)
    if b.head_r * cv.scale >= 4.0:
        un = math.hypot(dx, dy) or 1.0
        ux, uy = dx / un, dy / un
        for s in (-1.0, 1.0):
            e = (
                head[0] + (uy * s * 0.35 - ux * 0.1) * b.head_r,
                head[1] - (ux * s * 0.35 + uy * 0.1) * b.head_r,
            )
            cv.circle(e, 0.12 * b.head_r, (30.0, 25.0, 25.0), outline=False)
    if box is not None:
        _draw_box(cv, box[0], box[1], app.box)
    for side in _SIDES:
        cv.line(pts[f"{side}_shoulder"], pts[f"{side}_elbow"], b.arm_w, app.shirt)
        sleeve = app.shirt if style.long_sleeves else app.skin
        cv.line(pts[f"{side}_elbow"], pts[f"{side}_hand"], b.arm_w * 0.85, sleeve)
        cv.circle(pts[f"{side}_hand"], b.hand_r, app.skin)
