"""Synthetic action videos: the embedded default dataset.

A person-like articulated figure (head, torso, two-segment arms and legs) is drawn with OpenCV onto a
random textured background and animated by joint-angle trajectories through forward kinematics (and a
two-link inverse kinematics solver for hand targets). Each clip randomises, from its ``seed``: the
background (smoothed colour noise, gradients or stripes, optional floor), the figure's colours, its scale
(0.55-0.85 of the frame height when standing) and position, the action's speed and phase, a slight camera
jitter and Gaussian sensor noise.

Design: classes differ by motion, not by appearance
---------------------------------------------------
The recognition model averages per-frame predictions over time. An RGB-only model therefore behaves like
a *bag of frames*: it can only use what single frames show. The representation-flow model also sees how
pixels move. To make the dataset measure the difference, the hard classes come in **time-reversed
pairs** whose frame distributions are identical:

* ``walk_right`` / ``walk_left``: a front-facing, left-right symmetric figure swings its legs and arms
  while translating sideways. Nothing in the pose depends on the direction, and the start position is
  random over the span the figure will cover, so the set of positions is the same for both directions.
* ``sit_down`` / ``stand_up``: the same pose sequence (standing in front of a stool -> seated), forwards
  or backwards.
* ``pick_up`` / ``put_down``: the figure squats, and a box goes floor -> hand or hand -> floor.

These pairs are implemented *literally* as time reversals: ``render_clip("stand_up", T, size, s)`` is
exactly ``render_clip("sit_down", T, size, s)[::-1]`` (sensor noise and camera jitter included), and the
same for ``walk_left``/``walk_right`` and ``put_down``/``pick_up``. For the same seed the multiset of
frames is identical, so a bag-of-frames model cannot beat chance within a pair; only the order of frames
(motion) tells them apart. The props (stool, box) also appear as distractors in other classes, and the
remaining classes (``idle``, ``wave``, ``clap``, ``fall``) share the same figure, backgrounds and rest
poses. ``fall`` (standing -> lying sideways, fast) has no partner; its lying frames are distinctive, which
is acceptable.

Timing: transitional actions (sit_down, stand_up, fall, pick_up, put_down) occupy a random window of
40-80% of the clip (35-60% for the faster fall) starting at a random time, so most of the motion is
visible; periodic actions (wave, clap, walk) run through the whole clip with a random phase and speed
(0.7x-1.4x). Motion is a few pixels per frame at 128x128.

Appearance random draws come first from the seed's generator, so for one seed every action shares the
same background, colours and scale; only the action-specific draws differ.

Command line::

    python -m repflow_core.data.synthetic --out DIR --per-class N [--frames 48] [--size 128] [--fps 30]
        [--seed 0] [--test-fraction 0.25]

writes ``DIR/<action>/<action>_<i:04d>.avi`` (Motion-JPEG; ``.mp4``/mp4v if MJPG is unavailable), plus
``trainlist.txt``/``testlist.txt`` (relative paths, stratified per class) and a UCF101-style
``classInd.txt``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ACTIONS: tuple[str, ...] = (
    "idle",
    "wave",
    "clap",
    "walk_left",
    "walk_right",
    "sit_down",
    "stand_up",
    "fall",
    "pick_up",
    "put_down",
)

# Classes rendered as the exact time reversal of another class (same seed -> reversed frames).
REVERSED_OF: dict[str, str] = {"walk_left": "walk_right", "stand_up": "sit_down", "put_down": "pick_up"}

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

# Random ranges.
SCALE_RANGE = (0.55, 0.85)  # standing height / frame height
HEADROOM = 0.12  # free space above the head (figure heights) so a raised hand stays in frame
SPEED_RANGE = (0.7, 1.4)
TRANSITION_FRACTION = (0.4, 0.8)  # part of the clip a transitional action takes
FALL_FRACTION = (0.35, 0.6)
NOISE_SIGMA = (1.5, 5.0)  # Gaussian sensor noise, in grey levels
JITTER_PX = 1.5  # maximum camera jitter per axis, at 128 px (scaled with frame size)
WALK_SPEED = (0.008, 0.014)  # frame widths per frame, before the speed factor
WALK_PERIOD = 22.0  # frames per gait cycle at speed 1
WAVE_PERIOD = 12.0
CLAP_PERIOD = 14.0
BREATH_PERIOD = (45.0, 80.0)
PROP_PROBABILITY = 0.35  # chance of a distractor stool / box in classes that do not need one
NOISE_POOL = 4  # sensor noise is cut at random offsets from a few pre-drawn frames (fast, still i.i.d.)
MIN_SIZE = 16

_Pt = tuple[float, float]  # body-frame point (figure heights; x right, y up)
_RGB = tuple[float, float, float]

_SIDES = {"l": -1.0, "r": 1.0}  # image-left / image-right limb of the front-facing figure


# ----------------------------------------------------------------------------------------------------
# Per-clip random set-up.


@dataclass
class _Appearance:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    pants: tuple[float, float, float]
    shoes: tuple[float, float, float]
    box: tuple[float, float, float]
    stool: tuple[float, float, float]
    background: np.ndarray  # (H + 2 pad, W + 2 pad, 3) uint8, cropped per frame by the camera jitter
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


def _make_background(rng: np.random.Generator, bh: int, bw: int, floor_row: float | None) -> np.ndarray:
    """Random static texture: smoothed colour noise, a gradient or stripes, optionally a floor region."""
    kind = int(rng.integers(3))
    c0 = np.array(_colour(rng, 30, 230))
    c1 = np.array(_colour(rng, 30, 230))
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    if kind == 0:  # smooth colour blobs
        k = int(rng.integers(3, 9))
        low = (c0 + rng.normal(0, 45, (k, k, 3))).clip(0, 255).astype(np.float32)
        img = cv2.resize(low, (bw, bh), interpolation=cv2.INTER_CUBIC)
    else:
        ang = rng.uniform(0, math.pi)
        proj = (xx * math.cos(ang) + yy * math.sin(ang)).astype(np.float32)
        if kind == 1:  # linear gradient
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        else:  # soft stripes, 14-45 px period at 128 px
            period = rng.uniform(0.11, 0.35) * max(bh, bw)
            t = 0.5 + 0.5 * np.sin(2 * math.pi * proj / period + rng.uniform(0, 2 * math.pi))
        img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    if floor_row is not None:
        floor = np.array(_colour(rng, 30, 200), np.float32)
        boards = 0.5 + 0.5 * np.sin(2 * math.pi * xx / rng.uniform(0.08, 0.25) / bw)
        floor_img = floor[None, None, :] * (0.85 + 0.15 * boards[..., None])
        img = np.where((yy >= floor_row)[..., None], floor_img, img)
    # Fine static texture gives optical flow something to lock onto, blurred so jitter is not harsh.
    grain = cv2.GaussianBlur(rng.normal(0, rng.uniform(4, 10), (bh, bw, 1)).astype(np.float32), (0, 0), 1.0)
    img = img.astype(np.float32) + grain.reshape(bh, bw, 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jitter_track(rng: np.random.Generator, num_frames: int, amplitude: float) -> np.ndarray:
    """Smooth small camera shake: two low-frequency sinusoids per axis, rounded to whole pixels."""
    t = np.arange(num_frames, dtype=float)
    out = np.zeros((num_frames, 2))
    for axis in range(2):
        for _ in range(2):
            period = rng.uniform(8, 40)
            amp = 0.5 * amplitude * rng.uniform(0.3, 1.0)
            out[:, axis] += amp * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    return np.rint(out).astype(int)


# ----------------------------------------------------------------------------------------------------
# Pose tracks: dict of joint name -> (T,) array. Angles in radians. Abduction (``*_abd``) rotates a limb
# outwards in the image plane (pi = straight up), flexion (``*_flex``) rotates it towards the camera; the
# figure is drawn with an orthographic front view, so flexion foreshortens.

_Pose = dict[str, np.ndarray]
_ARM_KEYS = ("sh_abd", "sh_flex", "el_abd", "el_flex", "hand_x", "hand_y")
_LEG_KEYS = ("hip_abd", "hip_flex", "knee", "knee_in")


def _rest_pose(num_frames: int) -> _Pose:
    rest = {
        "dx": 0.0,  # pelvis offset from the anchor, figure heights
        "torso_pitch": 0.0,  # forward bend
        "torso_roll": 0.0,  # sideways lean (+ = towards image right)
        "breathe": 0.0,  # relative torso stretch
        "rot": 0.0,  # whole-body rotation about the feet (fall), + = counter-clockwise
        "sh_abd": 0.12, "sh_flex": 0.0, "el_abd": 0.05, "el_flex": 0.12,
        "hand_x": math.nan, "hand_y": math.nan,  # IK hand target relative to the neck (x outwards), or NaN
        "hip_abd": 0.04, "hip_flex": 0.0, "knee": 0.0, "knee_in": 0.0,
    }  # fmt: skip
    pose: dict[str, np.ndarray] = {}
    for key, value in rest.items():
        if key in _ARM_KEYS or key in _LEG_KEYS:
            for side in _SIDES:
                pose[f"{side}_{key}"] = np.full(num_frames, value)
        else:
            pose[key] = np.full(num_frames, value)
    return pose


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _progress(rng: np.random.Generator, num_frames: int, fraction: tuple[float, float]) -> np.ndarray:
    """Linear 0->1 progress of a transitional action over a random window of the clip."""
    dur = rng.uniform(*fraction)
    start = rng.uniform(0.0, 1.0 - dur)
    tn = np.arange(num_frames) / max(num_frames - 1, 1)
    return np.clip((tn - start) / dur, 0.0, 1.0)


def _add_idle_motion(pose: _Pose, rng: np.random.Generator, t: np.ndarray, amount: float) -> None:
    """Breathing and weight-shift sway, present in every action (``amount`` scales it)."""
    pb = rng.uniform(*BREATH_PERIOD)
    ps = rng.uniform(*BREATH_PERIOD) * 1.3
    ph = rng.uniform(0, 2 * math.pi, size=3)
    pose["breathe"] += 0.02 * amount * np.sin(2 * math.pi * t / pb + ph[0])
    sway = np.sin(2 * math.pi * t / ps + ph[1])
    pose["dx"] += 0.012 * amount * sway
    pose["torso_roll"] -= 0.03 * amount * sway
    for side in _SIDES:
        pose[f"{side}_el_flex"] += 0.08 * amount * np.sin(2 * math.pi * t / pb + ph[2])


def _pose_idle(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    _add_idle_motion(pose, rng, t * speed, 1.2)


def _pose_wave(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    _add_idle_motion(pose, rng, t, 0.6)
    side = "l" if rng.random() < 0.5 else "r"
    phase = 2 * math.pi * t * speed / WAVE_PERIOD + rng.uniform(0, 2 * math.pi)
    pose[f"{side}_sh_abd"][:] = rng.uniform(2.2, 2.6) + 0.12 * np.sin(phase)
    pose[f"{side}_el_abd"][:] = rng.uniform(0.3, 0.5) + 0.7 * np.sin(phase)
    pose[f"{side}_el_flex"][:] = 0.1


def _pose_clap(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    _add_idle_motion(pose, rng, t, 0.6)
    phase = 2 * math.pi * t * speed / CLAP_PERIOD + rng.uniform(0, 2 * math.pi)
    gap = HAND_R * 0.5 + rng.uniform(0.1, 0.14) * (0.5 - 0.5 * np.cos(phase))
    drop = rng.uniform(0.14, 0.2) + 0.015 * np.sin(phase)
    for side in _SIDES:
        pose[f"{side}_hand_x"][:] = gap
        pose[f"{side}_hand_y"][:] = -drop
    pose["torso_pitch"][:] = 0.1


def _pose_walk(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Front-facing gait with sideways translation to image right (walk_left is its time reversal)."""
    _add_idle_motion(pose, rng, t, 0.3)
    phase = 2 * math.pi * t * speed / WALK_PERIOD + rng.uniform(0, 2 * math.pi)
    swing = rng.uniform(0.4, 0.6)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        s = sign * np.sin(phase)
        pose[f"{side}_hip_flex"][:] = swing * s
        # The swinging (forward-moving) leg bends its knee, lifting the foot.
        pose[f"{side}_knee"][:] = 1.1 * np.clip(sign * np.cos(phase), 0, None) * (0.5 + 0.5 * s.clip(0))
        pose[f"{side}_sh_flex"][:] = -0.7 * swing * s
        pose[f"{side}_el_flex"][:] = 0.25 + 0.2 * np.clip(-s, 0, None)
    pose["dx"] += 0.01 * np.sin(phase)  # weight shift is symmetric, so direction-free
    width = lay.width
    v = rng.uniform(*WALK_SPEED) * width * speed
    margin = 0.22 * lay.h
    span = max(width - 2 * margin, 1.0)
    n = len(t)
    v = min(v, span / max(n - 1, 1))
    travel = v * (n - 1)
    # Uniform start over the reachable span: the set of visited positions is symmetric left/right.
    start = rng.uniform(margin, width - margin - travel) if span > travel else (width - travel) / 2
    lay.anchor_x = start + v * t


def _pose_sit_down(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Standing in front of a stool -> seated (stand_up is its time reversal)."""
    _add_idle_motion(pose, rng, t, 0.4)
    u = _progress(rng, len(t), TRANSITION_FRACTION)
    s = _smoothstep(u)
    for side in _SIDES:
        pose[f"{side}_hip_flex"] += 1.5 * s
        pose[f"{side}_knee"] += 1.5 * s
        pose[f"{side}_hip_abd"] += 0.35 * s
        pose[f"{side}_knee_in"] += 0.35 * s
        pose[f"{side}_sh_flex"] += 0.7 * s
        pose[f"{side}_el_flex"] += 0.5 * s
        pose[f"{side}_sh_abd"] += 0.12 * s
    pose["torso_pitch"] += 0.6 * np.sin(math.pi * u) + 0.08 * s
    props.stool_x = float(lay.anchor_x[0])


def _pose_fall(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Stagger, then topple sideways with accelerating rotation, then lie still."""
    _add_idle_motion(pose, rng, t, 0.4)
    u = _progress(rng, len(t), FALL_FRACTION)
    d = lay.fall_dir
    stagger = _smoothstep(u / 0.3)
    v = np.clip((u - 0.3) / 0.7, 0, 1)
    topple = v * v  # gravity: angle accelerates
    pose["torso_roll"] += d * 0.18 * stagger * (1 - topple)
    pose["dx"] += d * 0.04 * stagger
    pose["rot"] -= d * (math.pi / 2 - 0.04) * topple
    fall_side, other = ("r", "l") if d > 0 else ("l", "r")
    # Arms fly out while staggering; the arm on the falling side ends stretched beyond the head along the
    # floor, the other one lies along the body.
    pose[f"{fall_side}_sh_abd"] += 0.6 * stagger + 1.9 * topple
    pose[f"{other}_sh_abd"] += 0.9 * stagger * (1 - topple) + 0.2 * topple
    pose[f"{other}_el_abd"] += 0.5 * stagger * (1 - topple)
    for side in _SIDES:
        pose[f"{side}_hip_flex"] += 0.35 * stagger * (1 - topple) + 0.2 * topple
        pose[f"{side}_knee"] += 0.5 * stagger * (1 - topple) + 0.3 * topple
        pose[f"{side}_hip_abd"] += 0.15 * topple
    pose["torso_pitch"] += 0.2 * stagger * (1 - topple)


def _pose_pick_up(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Squat, grasp the box on the floor, stand up holding it (put_down is its time reversal)."""
    _add_idle_motion(pose, rng, t, 0.4)
    u = _progress(rng, len(t), TRANSITION_FRACTION)
    down = _smoothstep(u / 0.42)
    up = _smoothstep((u - 0.56) / 0.44)
    depth = down * (1 - up)
    side = "l" if rng.random() < 0.5 else "r"
    other = "r" if side == "l" else "l"
    for sd in _SIDES:
        pose[f"{sd}_hip_flex"] += 1.65 * depth
        pose[f"{sd}_knee"] += 2.25 * depth
        pose[f"{sd}_hip_abd"] += 0.4 * depth
        pose[f"{sd}_knee_in"] += 0.6 * depth
    pose["torso_pitch"] += 0.75 * depth
    pose[f"{side}_sh_abd"] += 0.15 * depth
    pose[f"{side}_sh_flex"] += 0.35 * depth + 0.25 * up
    pose[f"{side}_el_flex"] += -0.12 * depth + 1.1 * up
    pose[f"{other}_sh_flex"] += 0.6 * depth
    pose[f"{other}_el_flex"] += 0.5 * depth
    grasp = int(np.argmax(u >= 0.49)) if np.any(u >= 0.49) else len(t)
    props.box_hold_from = grasp
    props.box_side = side


_POSE_FUNCS: dict[str, Callable[[_Pose, np.random.Generator, np.ndarray, float, _Layout, _Props], None]] = {
    "idle": _pose_idle,
    "wave": _pose_wave,
    "clap": _pose_clap,
    "walk_right": _pose_walk,
    "sit_down": _pose_sit_down,
    "fall": _pose_fall,
    "pick_up": _pose_pick_up,
}


# ----------------------------------------------------------------------------------------------------
# Forward kinematics and drawing.


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


def _forward_kinematics(p: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Joint positions in the body frame (figure heights; x right, y up, origin on the ground at the anchor)."""
    legs = {}
    support = 0.0
    for side, s in _SIDES.items():
        thigh = _limb_dir(p[f"{side}_hip_abd"], p[f"{side}_hip_flex"], s)
        shin = _limb_dir(p[f"{side}_hip_abd"] - p[f"{side}_knee_in"], p[f"{side}_hip_flex"] - p[f"{side}_knee"], s)
        legs[side] = (thigh, shin)
        support = max(support, -(THIGH * thigh[1] + SHIN * shin[1]))
    pelvis = (p["dx"], support + ANKLE_H)
    pts: dict[str, tuple[float, float]] = {"pelvis": pelvis}
    for side, s in _SIDES.items():
        thigh, shin = legs[side]
        hip = (pelvis[0] + s * HIP_HALF, pelvis[1])
        knee = (hip[0] + THIGH * thigh[0], hip[1] + THIGH * thigh[1])
        ankle = (knee[0] + SHIN * shin[0], knee[1] + SHIN * shin[1])
        pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ankle
        pts[f"{side}_toe"] = (ankle[0] + s * FOOT_LEN, ankle[1] - 0.005)
    roll, pitch = p["torso_roll"], p["torso_pitch"]
    up = (math.sin(roll), math.cos(roll))
    perp = (math.cos(roll), -math.sin(roll))
    tl = TORSO_LEN * math.cos(pitch) * (1.0 + p["breathe"])
    neck = (pelvis[0] + up[0] * tl, pelvis[1] + up[1] * tl)
    hl = (NECK_LEN + HEAD_R) * math.cos(0.8 * pitch)
    pts["neck"] = neck
    pts["head"] = (neck[0] + up[0] * hl, neck[1] + up[1] * hl)
    for side, s in _SIDES.items():
        sh = (neck[0] + s * perp[0] * SHOULDER_HALF, neck[1] + s * perp[1] * SHOULDER_HALF)
        pts[f"{side}_shoulder"] = sh
        pts[f"{side}_hipwide"] = (pelvis[0] + s * (HIP_HALF + LEG_W / 2), pelvis[1])
        hx, hy = p[f"{side}_hand_x"], p[f"{side}_hand_y"]
        if math.isnan(hx):
            ua = _rotate(_limb_dir(p[f"{side}_sh_abd"], p[f"{side}_sh_flex"], s), roll * -1)
            fa = _rotate(
                _limb_dir(p[f"{side}_sh_abd"] + p[f"{side}_el_abd"], p[f"{side}_sh_flex"] + p[f"{side}_el_flex"], s),
                -roll,
            )
            elbow = (sh[0] + UPPER_ARM * ua[0], sh[1] + UPPER_ARM * ua[1])
            hand = (elbow[0] + FOREARM * fa[0], elbow[1] + FOREARM * fa[1])
        else:
            target = (neck[0] + s * hx, neck[1] + hy)
            elbow, hand = _two_link_ik(sh, target, UPPER_ARM, FOREARM * FOREARM_IK_SCALE, s)
        pts[f"{side}_elbow"], pts[f"{side}_hand"] = elbow, hand
    rot = p["rot"]
    if rot != 0.0:
        pts = {k: _rotate(v, rot) for k, v in pts.items()}
        radius = {"head": HEAD_R, "l_hand": HAND_R, "r_hand": HAND_R}
        clearance = min(v[1] - radius.get(k, LEG_W / 2) for k, v in pts.items())
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
    cv: _Canvas, pts: dict[str, _Pt], app: _Appearance, box: tuple[_Pt, tuple[float, float]] | None = None
) -> None:
    """Legs, torso, head, optional box, arms; back to front for a front-facing figure."""
    for side in _SIDES:
        cv.line(pts[f"{side}_hip"], pts[f"{side}_knee"], LEG_W, app.pants)
        cv.line(pts[f"{side}_knee"], pts[f"{side}_ankle"], LEG_W * 0.9, app.pants)
        cv.line(pts[f"{side}_ankle"], pts[f"{side}_toe"], LEG_W * 0.65, app.shoes)
    for side in _SIDES:  # knees last, so thighs pointing at the camera read as knees in front
        cv.circle(pts[f"{side}_knee"], LEG_W * 0.55, app.pants, outline=False)
    cv.line(pts["neck"], pts["head"], 0.05, app.skin)
    ls, rs = pts["l_shoulder"], pts["r_shoulder"]
    cv.poly([ls, rs, pts["r_hipwide"], pts["l_hipwide"]], app.shirt)
    cv.line(ls, rs, ARM_W * 1.1, app.shirt, outline=False)
    head = pts["head"]
    cv.circle(head, HEAD_R, app.skin)
    # Hair cap on the top half of the head, oriented along the neck->head direction.
    c = cv.px(head)
    r = max(1, int(round(HEAD_R * cv.scale * _ONE)))
    dx, dy = head[0] - pts["neck"][0], head[1] - pts["neck"][1]
    ang = math.degrees(math.atan2(-dy, dx)) + 90.0
    cv2.ellipse(cv.img, c, (r, r), ang, 180, 360, app.hair, -1, cv2.LINE_AA, _SHIFT)
    if HEAD_R * cv.scale >= 4.0:
        un = math.hypot(dx, dy) or 1.0
        ux, uy = dx / un, dy / un
        for s in (-1.0, 1.0):
            e = (
                head[0] + (uy * s * 0.35 - ux * 0.1) * HEAD_R,
                head[1] - (ux * s * 0.35 + uy * 0.1) * HEAD_R,
            )
            cv.circle(e, 0.12 * HEAD_R, (30.0, 25.0, 25.0), outline=False)
    if box is not None:
        _draw_box(cv, box[0], box[1], app.box)
    for side in _SIDES:
        cv.line(pts[f"{side}_shoulder"], pts[f"{side}_elbow"], ARM_W, app.shirt)
        cv.line(pts[f"{side}_elbow"], pts[f"{side}_hand"], ARM_W * 0.85, app.skin)
        cv.circle(pts[f"{side}_hand"], HAND_R, app.skin)


# ----------------------------------------------------------------------------------------------------
# Rendering.


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")


def _render_forward(
    action: str, num_frames: int, size: tuple[int, int], seed: int, clean: bool, with_mask: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render a non-reversed action. ``clean`` disables sensor noise and camera jitter."""
    height, width = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    T = num_frames
    t = np.arange(T, dtype=float)

    # Layout and appearance first, so one seed gives the same look for every action.
    h = rng.uniform(*SCALE_RANGE) * height
    lo, hi = h * (1.0 + HEADROOM) + 0.02 * height, 0.98 * height
    ground_y = rng.uniform(lo, max(lo, hi))
    margin = 0.3 * h  # arms may reach out ~0.35 figure heights
    anchor0 = rng.uniform(margin, max(margin, width - margin)) if width > 2 * margin else width / 2
    pad = int(math.ceil(JITTER_PX * max(height, width) / 128.0)) + 1
    floor_row = ground_y - h * rng.uniform(0.03, 0.3) + pad if rng.random() < 0.6 else None
    app = _Appearance(
        skin=_skin_colour(rng),
        hair=_colour(rng, 10, 120),
        shirt=_colour(rng),
        pants=_colour(rng, 10, 200),
        shoes=_colour(rng, 0, 90),
        box=_colour(rng, 60, 240),
        stool=_colour(rng, 40, 200),
        background=_make_background(rng, height + 2 * pad, width + 2 * pad, floor_row),
        noise_sigma=float(rng.uniform(*NOISE_SIGMA)),
    )
    jitter = _jitter_track(rng, T, JITTER_PX * max(height, width) / 128.0)
    lay = _Layout(height, width, h, ground_y, np.full(T, anchor0), jitter, pad)
    lay.fall_dir = 1.0 if rng.random() < 0.5 else -1.0
    props = _Props(box_size=(rng.uniform(0.12, 0.16), rng.uniform(0.09, 0.12)))
    box_side = 1.0 if rng.random() < 0.5 else -1.0
    box_off = rng.uniform(0.17, 0.24)
    distractor_stool = rng.random() < PROP_PROBABILITY
    distractor_box = rng.random() < PROP_PROBABILITY
    speed = rng.uniform(*SPEED_RANGE)

    if action == "fall":  # keep the lying body mostly inside the frame
        d = lay.fall_dir
        lo_x, hi_x = (0.15 * h, width - 1.0 * h) if d > 0 else (1.0 * h, width - 0.15 * h)
        lay.anchor_x[:] = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (lo_x + hi_x) / 2

    pose = _rest_pose(T)
    _POSE_FUNCS[action](pose, rng, t, speed, lay, props)
    if action != "sit_down" and distractor_stool:
        props.stool_x = float(lay.anchor_x[0]) if action != "walk_right" else rng.uniform(0.2, 0.8) * width
    if action == "pick_up" or distractor_box:
        props.box_floor_x = float(lay.anchor_x[0]) + box_side * box_off * h

    if clean:
        lay.jitter[:] = 0
    frames = np.empty((T, height, width, 3), np.uint8)
    masks = np.zeros((T, height, width), np.uint8) if with_mask else None
    names = list(pose)
    skeletons = [_forward_kinematics({k: float(pose[k][i]) for k in names}) for i in range(T)]

    box_w, box_h = props.box_size
    hold_from = props.box_hold_from
    if action == "pick_up":
        # Put the box on the floor right under the hand at the grasp frame, so the hand-over is seamless.
        g = min(hold_from if hold_from is not None else T - 1, T - 1)
        hand = skeletons[g][f"{props.box_side}_hand"]
        box_h = float(np.clip(hand[1] + 0.01, 0.08, 0.16))
        props.box_size = (box_w, box_h)
        props.box_floor_x = float(lay.anchor_x[0]) + hand[0] * h
        props.box_hand_offset = (0.0, box_h / 2 - hand[1])

    if not clean:
        pool_shape = (NOISE_POOL, height + 2 * pad, width + 2 * pad, 3)
        noise_pool = rng.normal(0.0, app.noise_sigma, pool_shape).astype(np.int16)
        noise_pick = rng.integers(0, NOISE_POOL, T)
        noise_off = rng.integers(0, 2 * pad + 1, (T, 2))

    for i in range(T):
        jx, jy = int(lay.jitter[i, 0]), int(lay.jitter[i, 1])
        img = app.background[pad + jy : pad + jy + height, pad + jx : pad + jx + width].copy()
        ax = float(lay.anchor_x[i])
        cv = _Canvas(img, None, (ax - jx, ground_y - jy), h)
        if props.stool_x is not None:
            _draw_stool(cv, (props.stool_x - ax) / h, app.stool)
        box = None
        if props.box_floor_x is not None:
            centre = ((props.box_floor_x - ax) / h, box_h / 2)
            if hold_from is not None and i >= hold_from:
                hand = skeletons[i][f"{props.box_side}_hand"]
                centre = (hand[0] + props.box_hand_offset[0], hand[1] + props.box_hand_offset[1])
            box = (centre, (box_w, box_h))
            if hold_from is None or i < hold_from:
                _draw_box(cv, centre, box[1], app.box)  # on the floor, behind the legs
                box = None
        if masks is not None:
            cv.mask = masks[i]
        _draw_figure(cv, skeletons[i], app, box)
        if not clean:
            oy, ox = int(noise_off[i, 0]), int(noise_off[i, 1])
            img = cv2.add(img, noise_pool[noise_pick[i], oy : oy + height, ox : ox + width], dtype=cv2.CV_8U)
        frames[i] = img
    return frames, masks


def _render(
    action: str, num_frames: int, size: tuple[int, int], seed: int, clean: bool = False, with_mask: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    _check_action(action)
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(size) != 2 or min(int(size[0]), int(size[1])) < MIN_SIZE:
        raise ValueError(f"size must be (height, width) with both >= {MIN_SIZE}, got {size}")
    base = REVERSED_OF.get(action, action)
    frames, masks = _render_forward(base, int(num_frames), (int(size[0]), int(size[1])), int(seed), clean, with_mask)
    if base != action:
        frames = np.ascontiguousarray(frames[::-1])
        masks = None if masks is None else np.ascontiguousarray(masks[::-1])
    return frames, masks


def render_clip(action: str, num_frames: int, size: tuple[int, int] = (128, 128), seed: int = 0) -> np.ndarray:
    """Render one synthetic action clip.

    Args:
        action: one of :data:`ACTIONS`.
        num_frames: number of frames T (>= 1).
        size: (height, width) in pixels (each >= 16).
        seed: all randomness (appearance, layout, timing, noise) derives from it; same arguments give the
            same bytes.

    Returns:
        uint8 array (T, H, W, 3), RGB.

    ``walk_left``, ``stand_up`` and ``put_down`` are the exact time reversals of ``walk_right``,
    ``sit_down`` and ``pick_up`` for the same seed (see the module docstring for why).
    """
    frames, _ = _render(action, num_frames, size, seed)
    return frames


# ----------------------------------------------------------------------------------------------------
# Writing a dataset of video files.

_CODECS: tuple[tuple[str, str], ...] = (("MJPG", ".avi"), ("mp4v", ".mp4"))


def _write_video(path: Path, frames: np.ndarray, fps: float, fourcc: str) -> None:
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {path} with fourcc {fourcc}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _decode_video(path: Path) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W, 3) RGB (empty first axis if it cannot be read)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _choose_codec(out_dir: Path, fps: float) -> tuple[str, str]:
    """First (fourcc, extension) whose tiny test file decodes back with the right frame count and size."""
    probe = np.random.default_rng(0).integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    for fourcc, ext in _CODECS:
        path = out_dir / f".codec_probe{ext}"
        try:
            _write_video(path, probe, fps, fourcc)
            back = _decode_video(path)
            if back.shape == probe.shape:
                return fourcc, ext
        except (RuntimeError, cv2.error):
            pass
        finally:
            path.unlink(missing_ok=True)
    raise RuntimeError("no working video codec: neither MJPG/.avi nor mp4v/.mp4 round-trips with OpenCV")


def _clip_seed(seed: int, class_index: int, clip_index: int) -> int:
    return int(np.random.SeedSequence([int(seed), class_index, clip_index]).generate_state(1)[0])


def _split_indices(per_class: int, test_fraction: float, seed: int, class_index: int) -> set[int]:
    """Deterministic test-set indices for one class (stratified: the same count for every class)."""
    n_test = int(round(per_class * test_fraction))
    if test_fraction > 0 and per_class >= 2:
        n_test = max(n_test, 1)
    n_test = min(n_test, per_class - 1) if per_class >= 2 else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B117, class_index]))
    return set(int(i) for i in rng.permutation(per_class)[:n_test])


def write_dataset(
    out_dir: str | Path,
    per_class: int,
    num_frames: int = 48,
    size: int | tuple[int, int] = (128, 128),
    fps: float = 30,
    seed: int = 0,
    test_fraction: float = 0.25,
    progress: bool = True,
) -> dict:
    """Render ``per_class`` clips of every action to video files plus UCF101-style split files.

    Layout: ``out_dir/<action>/<action>_<i:04d>.avi`` (``.mp4`` if MJPG does not round-trip),
    ``out_dir/trainlist.txt`` and ``out_dir/testlist.txt`` (one relative path per line), and
    ``out_dir/classInd.txt`` (``"1 idle"`` ...). Existing files are overwritten.

    Returns a summary dict: out_dir, codec, extension, num_videos, num_train, num_test, per_class,
    num_frames, size (height, width), fps, seconds.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fourcc, ext = _choose_codec(out, fps)

    train: list[str] = []
    test: list[str] = []
    bar = tqdm(total=per_class * len(ACTIONS), desc="synthetic videos", unit="clip", disable=not progress)
    for ci, action in enumerate(ACTIONS):
        (out / action).mkdir(exist_ok=True)
        test_idx = _split_indices(per_class, test_fraction, seed, ci)
        for i in range(per_class):
            rel = f"{action}/{action}_{i:04d}{ext}"
            frames = render_clip(action, num_frames, hw, _clip_seed(seed, ci, i))
            _write_video(out / rel, frames, fps, fourcc)
            (test if i in test_idx else train).append(rel)
            bar.update(1)
    bar.close()

    # Check one file fully decodes back (the codec probe covered the rest of the pipeline).
    first = _decode_video(out / train[0] if train else out / test[0])
    if first.shape[:3] != (num_frames, hw[0], hw[1]):
        raise RuntimeError(f"written video decodes as {first.shape}, expected {(num_frames, *hw, 3)}")

    (out / "trainlist.txt").write_text("".join(f"{p}\n" for p in train))
    (out / "testlist.txt").write_text("".join(f"{p}\n" for p in test))
    (out / "classInd.txt").write_text("".join(f"{i + 1} {a}\n" for i, a in enumerate(ACTIONS)))
    return {
        "out_dir": str(out),
        "codec": fourcc,
        "extension": ext,
        "num_videos": len(train) + len(test),
        "num_train": len(train),
        "num_test": len(test),
        "per_class": per_class,
        "num_frames": num_frames,
        "size": hw,
        "fps": fps,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repflow_core.data.synthetic",
        description="Write the synthetic action-video dataset (videos + UCF101-style split files).",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--per-class", type=int, required=True, help="clips per action class")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip (default 48)")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels (default 128)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate stored in the files (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="test share per class (default 0.25)")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    args = parser.parse_args(argv)
    info = write_dataset(
        args.out,
        args.per_class,
        num_frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        test_fraction=args.test_fraction,
        progress=not args.no_progress,
    )
    print(
        f"wrote {info['num_videos']} videos ({info['num_train']} train / {info['num_test']} test; "
        f"{info['per_class']} per class x {len(ACTIONS)} classes; {info['num_frames']} frames "
        f"{info['size'][1]}x{info['size'][0]} @ {info['fps']:g} fps; {info['codec']} {info['extension']}) "
        f"to {info['out_dir']} in {info['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
