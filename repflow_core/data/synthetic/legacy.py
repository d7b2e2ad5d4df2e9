"""Generation 1 of the synthetic actions: the renderer the packaged default model was trained on.

Kept byte-identical (same seed -> same bytes as before the package split; test_synthetic checks recorded
hashes) so the packaged model's figures stay reproducible. Each clip randomises, from its ``seed``: the
background (smoothed colour noise, gradients or stripes, optional floor), the figure's colours, its scale
(:data:`SCALE_RANGE` of the frame height when standing) and position, the action's speed and phase, a slight
camera jitter (:data:`JITTER_PX` at 128 px, whole pixels) and Gaussian sensor noise (:data:`NOISE_SIGMA`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .actions import _POSE_FUNCS, SPEED_RANGE, _rest_pose
from .figure import (
    _Appearance,
    _Canvas,
    _colour,
    _draw_box,
    _draw_figure,
    _draw_stool,
    _forward_kinematics,
    _Layout,
    _Props,
    _skin_colour,
)

SCALE_RANGE = (0.55, 0.85)  # standing height / frame height
HEADROOM = 0.12  # free space above the head (figure heights) so a raised hand stays in frame
NOISE_SIGMA = (1.5, 5.0)  # Gaussian sensor noise, in grey levels
JITTER_PX = 1.5  # maximum camera jitter per axis, at 128 px (scaled with frame size)
PROP_PROBABILITY = 0.35  # chance of a distractor stool / box in classes that do not need one
NOISE_POOL = 4  # sensor noise is cut at random offsets from a few pre-drawn frames (fast, still i.i.d.)


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


def render_forward_v1(
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
