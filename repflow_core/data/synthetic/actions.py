"""Action pose tracks for the synthetic person: joint-angle trajectories over a clip, one function per action.

Each ``_pose_<action>(pose, rng, t, speed, lay, props)`` adds its motion to a rest pose (dict of joint name ->
(T,) array) and may move the figure (``lay.anchor_x``) or place props (``props``). Only the forward actions
have a function: ``walk_left``, ``stand_up`` and ``put_down`` are rendered as exact time reversals of
``walk_right``, ``sit_down`` and ``pick_up`` (see the package docstring).

Ranges (both generations): speed factor :data:`SPEED_RANGE`; a transitional action takes
:data:`TRANSITION_FRACTION` of the clip (:data:`FALL_FRACTION` for the fall). Generation 2 also lets up to
``lay.partial`` of a transition fall outside the window (partial actions) and scales the amplitude
(:mod:`.generator`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .figure import _SIDES, HAND_R, _Layout, _Props

SPEED_RANGE = (0.7, 1.4)
TRANSITION_FRACTION = (0.4, 0.8)  # part of the clip a transitional action takes
FALL_FRACTION = (0.35, 0.6)
WALK_SPEED = (0.008, 0.014)  # frame widths per frame, before the speed factor
WALK_PERIOD = 22.0  # frames per gait cycle at speed 1
WAVE_PERIOD = 12.0
CLAP_PERIOD = 14.0
NOD_PERIOD = 14.0
BREATH_PERIOD = (45.0, 80.0)

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
        "nod": 0.0,  # head tipped towards the camera (nod)
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


def _progress(
    rng: np.random.Generator, num_frames: int, fraction: tuple[float, float], partial: float = 0.0
) -> np.ndarray:
    """Linear 0->1 progress of a transitional action over a random window of the clip; with ``partial`` > 0
    up to that share of the transition may lie before the first or after the last frame."""
    dur = rng.uniform(*fraction)
    if partial:
        start = rng.uniform(-partial * dur, 1.0 - dur + partial * dur)
    else:
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
    u = _progress(rng, len(t), TRANSITION_FRACTION, lay.partial)
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
    u = _progress(rng, len(t), FALL_FRACTION, lay.partial)
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
    u = _progress(rng, len(t), TRANSITION_FRACTION, lay.partial)
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


def _hold_profile(u: np.ndarray) -> np.ndarray:
    """0 -> 1 (first 30 % of the progress), hold, -> 0 (last 25 %): a gesture that is made and ended."""
    return _smoothstep(u / 0.3) * (1.0 - _smoothstep((u - 0.75) / 0.25))


def _pose_point(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Raise one straight arm sideways to about shoulder height, hold it pointing, lower it (extra action)."""
    _add_idle_motion(pose, rng, t, 0.5)
    a = _hold_profile(_progress(rng, len(t), TRANSITION_FRACTION, lay.partial))
    side = "l" if rng.random() < 0.5 else "r"
    pose[f"{side}_sh_abd"] += (rng.uniform(1.3, 1.75) - 0.12) * a
    pose[f"{side}_el_abd"] += -0.05 * a
    pose[f"{side}_el_flex"] += -0.1 * a
    pose["torso_roll"] += (0.05 if side == "r" else -0.05) * a


def _pose_drink(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Bring one hand up to the mouth (forearm folded towards the camera), hold, lower it (extra action)."""
    _add_idle_motion(pose, rng, t, 0.5)
    a = _hold_profile(_progress(rng, len(t), TRANSITION_FRACTION, lay.partial))
    side = "l" if rng.random() < 0.5 else "r"
    pose[f"{side}_sh_flex"] += rng.uniform(0.8, 1.0) * a
    pose[f"{side}_el_flex"] += rng.uniform(1.9, 2.1) * a
    pose[f"{side}_sh_abd"] += -0.2 * a
    pose[f"{side}_el_abd"] += -0.45 * a


def _pose_nod(
    pose: _Pose, rng: np.random.Generator, t: np.ndarray, speed: float, lay: _Layout, props: _Props
) -> None:
    """Two or three head nods (the head tips towards the camera and back) inside the window (extra action)."""
    _add_idle_motion(pose, rng, t, 0.4)
    env = _hold_profile(_progress(rng, len(t), (0.6, 0.9), lay.partial))
    phase = 2 * math.pi * t * speed / NOD_PERIOD + rng.uniform(0, 2 * math.pi)
    pose["nod"] += rng.uniform(0.6, 0.9) * env * (0.5 - 0.5 * np.cos(phase))
    pose["torso_pitch"] += 0.05 * env * (0.5 - 0.5 * np.cos(phase))


_POSE_FUNCS: dict[str, Callable[[_Pose, np.random.Generator, np.ndarray, float, _Layout, _Props], None]] = {
    "idle": _pose_idle,
    "wave": _pose_wave,
    "clap": _pose_clap,
    "walk_right": _pose_walk,
    "sit_down": _pose_sit_down,
    "fall": _pose_fall,
    "pick_up": _pose_pick_up,
    "point": _pose_point,
    "drink": _pose_drink,
    "nod": _pose_nod,
}
