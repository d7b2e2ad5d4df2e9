"""Generation 2 of the synthetic actions: domain randomised for real robot cameras.

Per clip, from its seed, in this order (so one seed gives the same person, room and camera for every action):
person layout and look (:class:`PersonConfig`), room (:mod:`.scene`), camera (:mod:`.camera`), then the
action's own draws. Rendered natively at the requested H x W: the world canvas is the frame plus the camera's
margin, at output resolution; the camera cuts each frame out of it with a sub-pixel affine warp.

Person ranges: standing height 25-90 % of the frame height; feet anywhere the body fits (``position`` ``any``)
or with the feet in the centre / left / right third; with ``out_of_frame_prob`` the placement may cut up to
30 % of the body at the bottom or a side edge; body proportions :data:`.figure.BODY_RANGES`; speed factor
0.7-1.4; amplitude 0.8-1.2 of the joint motion; with ``partial_prob`` up to ``partial`` of a transition lies
outside the clip, and gestures (wave, clap) start or stop inside it.

Chosen frames (``frames``): everything random is drawn for the whole clip before any frame is drawn, so a
window of a long clip (the on-the-fly stream's 16 frames of a 40-frame timeline) is byte-identical to those
frames of the full render and costs only its own frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from .actions import _POSE_FUNCS, _rest_pose, _smoothstep
from .camera import CameraConfig, CameraPipeline, camera_track
from .figure import (
    BODY,
    PLAIN,
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
    random_body,
    random_style,
)
from .scene import Scene, SceneConfig, draw_ball, draw_door, draw_furniture, room_background

DEFAULT_GENERATION = 2
GENERATIONS = (1, 2)
POSITIONS = ("any", "centre", "left", "right")
_NO_AMPLITUDE = ("dx", "rot", "breathe")  # translations and the fall's rotation keep their full size


@dataclass
class PersonConfig:
    height: tuple[float, float] = (0.25, 0.9)  # standing height / frame height
    position: str = "any"  # any | centre | left | right (third of the frame holding the feet)
    out_of_frame_prob: float = 0.12
    speed: tuple[float, float] = (0.7, 1.4)
    amplitude: tuple[float, float] = (0.8, 1.2)
    partial_prob: float = 0.3
    partial: float = 0.35

    def validate(self) -> PersonConfig:
        if self.position not in POSITIONS:
            raise ValueError(f"person.position must be one of {POSITIONS}, got {self.position!r}")
        lo, hi = self.height
        if not 0.05 <= lo <= hi <= 1.0:
            raise ValueError(f"person.height must be (lo, hi) with 0.05 <= lo <= hi <= 1, got {self.height}")
        for name in ("out_of_frame_prob", "partial_prob", "partial"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"person.{name} must be in [0, 1], got {getattr(self, name)}")
        return self


@dataclass
class SynthConfig:
    """Generation 2's factors: ``person``, ``scene``, ``camera``. ``SynthConfig.from_dict({"camera":
    {"motion": False}})`` overrides single fields (YAML-friendly)."""

    person: PersonConfig = field(default_factory=PersonConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)

    def validate(self) -> SynthConfig:
        self.person.validate(), self.scene.validate(), self.camera.validate()
        return self

    @classmethod
    def from_dict(cls, d: dict | None) -> SynthConfig:
        cfg = cls()
        for section, values in (d or {}).items():
            if section not in ("person", "scene", "camera"):
                raise ValueError(f"unknown synthetic config section {section!r} (person, scene, camera)")
            sub = getattr(cfg, section)
            known = {f.name for f in fields(sub)}
            for key, value in (values or {}).items():
                if key not in known:
                    raise ValueError(f"unknown field {section}.{key}; known: {', '.join(sorted(known))}")
                setattr(sub, key, tuple(value) if isinstance(value, list) else value)
        return cfg.validate()


def _place(rng: np.random.Generator, cfg: PersonConfig, height: int, width: int) -> tuple[float, float, float, float]:
    """Standing height ``h``, feet row, and the column span (x0, x1) the feet may use."""
    h = rng.uniform(*cfg.height) * height
    out = rng.random() < cfg.out_of_frame_prob
    lo, hi = h * 1.04 + 0.01 * height, 0.99 * height  # head (not raised hands) inside the frame
    ground_y = rng.uniform(lo, max(lo, hi))
    half = 0.17 * h  # shoulders and hips fit at this distance from an edge
    x0, x1 = {"any": (0.0, 1.0), "centre": (1 / 3, 2 / 3), "left": (0.0, 1 / 3), "right": (2 / 3, 1.0)}[cfg.position]
    x0, x1 = max(x0 * width, half), min(x1 * width, width - half)
    if out:
        if rng.random() < 0.5:
            ground_y = height + rng.uniform(0.05, 0.3) * h  # legs cut by the bottom edge
        elif cfg.position == "any":
            x0, x1 = -0.1 * h, width + 0.1 * h  # the body may reach past a side edge
    if x1 < x0:
        x0 = x1 = (x0 + x1) / 2
    return h, ground_y, x0, x1


def _appearance(rng: np.random.Generator) -> _Appearance:
    return _Appearance(skin=_skin_colour(rng), hair=_colour(rng, 10, 120), shirt=_colour(rng),
                       pants=_colour(rng, 10, 200),
                       shoes=_colour(rng, 0, 90), box=_colour(rng, 60, 240), stool=_colour(rng, 40, 200),
                       background=None, noise_sigma=0.0)


def _build_scene(rng: np.random.Generator, cfg: SceneConfig, T: int, hw: int, ww: int, ground: float, h: float,
                 span: tuple[float, float]) -> Scene:
    junction = ground - rng.uniform(0.15, 0.5) * h
    sc = Scene(room_background(rng, hw, ww, junction, h), junction)
    draw_furniture(rng, sc.background, junction, h, int(rng.integers(cfg.furniture[0], cfg.furniture[1] + 1)),
                   rng.random() < cfg.clutter_prob, span)
    t = np.arange(T, dtype=float)
    if rng.random() < cfg.door_prob:
        width = rng.uniform(0.3, 0.45) * h
        hinge = rng.uniform(0, max(ww - width, 1))
        top = junction - rng.uniform(0.85, 1.0) * h
        cv2.rectangle(sc.background, (int(hinge), int(top)), (int(hinge + width), int(junction)), (25, 22, 20), -1)
        sc.door = (hinge, top, width, junction, _colour(rng, 60, 200))
        a0, a1 = rng.uniform(0, 0.4), rng.uniform(0.4, 1.2)
        sc.door_angle = a0 + (a1 - a0) * (0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(30, 90) + rng.uniform(0, 6.3)))
    if rng.random() < cfg.ball_prob:
        r = rng.uniform(0.04, 0.075) * h
        y = rng.uniform(junction + r, ground + 0.1 * h)
        v = (1 if rng.random() < 0.5 else -1) * rng.uniform(0.004, 0.015) * ww
        sc.ball = (r, y, _colour(rng, 40, 255))
        sc.ball_x = rng.uniform(0, ww) + v * (t - t.mean())
    if rng.random() < cfg.second_person_prob:
        s = rng.uniform(0.45, 0.8)
        x = rng.uniform(0.05, 0.95) * ww
        if span[0] - 0.3 * h < x < span[1] + 0.3 * h:  # not right behind the person
            x = (x + ww / 2) % ww
        pose = _rest_pose(T)
        from .actions import _add_idle_motion  # idle sway only: a person standing still

        _add_idle_motion(pose, rng, t, 0.5)
        sc.extras["person"] = (x, junction + rng.uniform(0.02, 0.1) * h, s * h, pose, _appearance(rng),
                               random_body(rng), random_style(rng))
    if rng.random() < cfg.occlusion:
        w = rng.uniform(0.5, 1.1) * h
        cx = rng.uniform(*span) if span[1] > span[0] else span[0]
        y0 = ground - rng.uniform(0.25, 0.5) * h
        sc.occluder = (int(cx - w / 2), int(y0), int(cx + w / 2), int(ground + 0.06 * h), _colour(rng, 40, 200))
    return sc


def _scale_amplitude(pose: dict, rest: dict, amp: float, env: np.ndarray | None) -> None:
    for k, v in pose.items():
        if k in _NO_AMPLITUDE:
            continue
        r = rest[k]
        if np.isnan(r).all():  # IK hand targets (clap): scale the gap about its smallest value
            if env is not None and not np.isnan(v).all() and k.endswith("hand_x"):
                mn = np.nanmin(v)
                pose[k] = mn + env * (v - mn)
            continue
        dev = (v - r) * amp
        pose[k] = r + (dev if env is None else env * dev)


def _action_pose(action: str, rng: np.random.Generator, cfg: SynthConfig, t: np.ndarray, size: tuple[int, int],
                 place: tuple[float, float, float, float], anchor0: float, props: _Props) -> tuple[dict, _Layout]:
    """The action's joint trajectories (speed, amplitude, partial window) and the layout / props they move.

    ``place`` is :func:`_place`'s (h, ground, x0, x1). The random draws keep their order: same seed, same clip."""
    (H, W), (h, ground, x0, x1), T = size, place, len(t)
    box_side, box_off = (1.0 if rng.random() < 0.5 else -1.0), rng.uniform(0.17, 0.24)
    distractor_stool, distractor_box = rng.random() < cfg.scene.prop_prob, rng.random() < cfg.scene.prop_prob
    speed, amp = rng.uniform(*cfg.person.speed), rng.uniform(*cfg.person.amplitude)
    partial = cfg.person.partial if rng.random() < cfg.person.partial_prob else 0.0
    env = None
    if partial and action in ("wave", "clap"):  # the gesture starts / stops inside the window
        s0, s1 = rng.uniform(-0.3, 0.35), rng.uniform(0.65, 1.3)
        tn = t / max(T - 1, 1)
        env = _smoothstep((tn - s0) / 0.1) * (1 - _smoothstep((tn - s1) / 0.1))

    region_w = max(x1 - x0, 1.0) + 0.44 * h  # walk: _pose_walk keeps 0.22 h margins inside lay.width
    lay = _Layout(H, W, h, ground, np.full(T, anchor0), np.zeros((T, 2), int), 0, partial=partial)
    lay.fall_dir = 1.0 if rng.random() < 0.5 else -1.0
    if action == "walk_right":
        lay.width = int(round(region_w))
    if action == "fall":  # keep the lying body mostly inside the frame when the placement allows it
        d = lay.fall_dir
        lo_x, hi_x = (x0, min(x1, W - 0.9 * h)) if d > 0 else (max(x0, 0.9 * h), x1)
        lay.anchor_x[:] = rng.uniform(lo_x, hi_x) if hi_x > lo_x else anchor0
    pose = _rest_pose(T)
    rest = {k: v.copy() for k, v in pose.items()}
    _POSE_FUNCS[action](pose, rng, t, speed, lay, props)
    if action == "walk_right":
        lay.anchor_x = lay.anchor_x + (x0 - 0.22 * h)
    _scale_amplitude(pose, rest, amp, env)
    if action != "sit_down" and distractor_stool:
        props.stool_x = float(lay.anchor_x[0]) if action != "walk_right" else rng.uniform(0.2, 0.8) * W
    if action == "pick_up" or distractor_box:
        props.box_floor_x = float(lay.anchor_x[0]) + box_side * box_off * h
    return pose, lay


def _skeleton_at(pose: dict, body, i: int) -> dict:
    return _forward_kinematics({k: float(v[i]) for k, v in pose.items()}, body)


def _skeletons(action: str, pose: dict, body, props: _Props, lay: _Layout, h: float,
               needed: np.ndarray) -> list[dict | None]:
    """Forward kinematics of the ``needed`` frames (None elsewhere: a frame's skeleton depends on its own pose
    only); for ``pick_up`` the box is sized and placed right under the grasping hand."""
    T = len(lay.anchor_x)
    skeletons: list[dict | None] = [None] * T
    for i in needed:
        skeletons[i] = _skeleton_at(pose, body, int(i))
    if action == "pick_up":  # box right under the hand at the grasp frame: a seamless hand-over
        box_w = props.box_size[0]
        hold_from = props.box_hold_from
        g = min(hold_from if hold_from is not None else T - 1, T - 1)
        grasp = skeletons[g] if skeletons[g] is not None else _skeleton_at(pose, body, g)
        hand = grasp[f"{props.box_side}_hand"]
        box_h = float(np.clip(hand[1] + 0.01, 0.08, 0.16))
        props.box_size = (box_w, box_h)
        props.box_floor_x = float(lay.anchor_x[0]) + hand[0] * h
        props.box_hand_offset = (0.0, box_h / 2 - hand[1])
    return skeletons


@dataclass
class _Clip:
    """What every frame of one clip draws (built once by :func:`render_forward_v2`)."""

    sc: Scene
    lay: _Layout
    props: _Props
    app: _Appearance
    body: object
    style: object
    skeletons: list
    sec_skel: list | None
    h: float
    ground: float  # feet row in world coordinates (frame row + camera margin)
    mx: int


def _draw_world(clip: _Clip, i: int, with_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """World canvas of frame ``i`` (room, door, second person, ball, props, person, occluder) and the person mask."""
    sc, props, h = clip.sc, clip.props, clip.h
    world = sc.background.copy()
    if sc.door is not None:
        draw_door(world, sc.door, float(sc.door_angle[i]))
    if clip.sec_skel is not None:
        second = sc.extras["person"]
        _draw_figure(_Canvas(world, None, (second[0], second[1]), second[2]), clip.sec_skel[i], second[4], None,
                     second[5], second[6])
    ball_front = sc.ball is not None and sc.ball[1] > clip.ground
    if sc.ball is not None and not ball_front:
        draw_ball(world, float(sc.ball_x[i]), sc.ball[0], sc.ball[1], sc.ball[2])
    ax = float(clip.lay.anchor_x[i])
    wmask = np.zeros(world.shape[:2], np.uint8) if with_mask else None
    cv = _Canvas(world, None, (ax + clip.mx, clip.ground), h)
    if props.stool_x is not None:
        _draw_stool(cv, (props.stool_x - ax) / h, clip.app.stool)
    box = None
    box_w, box_h = props.box_size
    hold_from = props.box_hold_from
    if props.box_floor_x is not None:
        centre = ((props.box_floor_x - ax) / h, box_h / 2)
        if hold_from is not None and i >= hold_from:
            hand = clip.skeletons[i][f"{props.box_side}_hand"]
            centre = (hand[0] + props.box_hand_offset[0], hand[1] + props.box_hand_offset[1])
        box = (centre, (box_w, box_h))
        if hold_from is None or i < hold_from:
            _draw_box(cv, centre, box[1], clip.app.box)
            box = None
    cv.mask = wmask
    _draw_figure(cv, clip.skeletons[i], clip.app, box, clip.body if clip.body is not None else BODY,
                 clip.style or PLAIN)
    if ball_front:
        draw_ball(world, float(sc.ball_x[i]), sc.ball[0], sc.ball[1], sc.ball[2])
    if sc.occluder is not None:
        ox0, oy0, ox1, oy1, oc = sc.occluder
        cv2.rectangle(world, (ox0, oy0), (ox1, oy1), oc, -1, cv2.LINE_AA)
        cv2.rectangle(world, (ox0, oy0), (ox1, oy0 + max(2, int(0.04 * h))), tuple(c * 0.7 for c in oc), -1)
        if wmask is not None:
            wmask[max(oy0, 0) : max(oy1 + 1, 0), max(ox0, 0) : max(ox1 + 1, 0)] = 0
    return world, wmask


def _frame_indices(frames, num_frames: int) -> np.ndarray:
    """``frames`` (None = all) as int64 indices into a clip of ``num_frames``; clear errors otherwise."""
    if frames is None:
        return np.arange(num_frames, dtype=np.int64)
    idx = np.asarray(list(frames) if not isinstance(frames, np.ndarray) else frames)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"frames must be a non-empty 1-D sequence of integer frame indices, got {frames!r}")
    if idx.min() < 0 or idx.max() >= num_frames:
        raise ValueError(f"frames must lie in [0, {num_frames - 1}] (a clip of num_frames={num_frames}), got "
                         f"{idx.min()}..{idx.max()}")
    return idx.astype(np.int64)


def _plan_v2(action: str, T: int, size: tuple[int, int], seed: int, cfg: SynthConfig, clean: bool):
    """Every random draw of a clip, in the renderer's order: (rng, placement, look, camera, scene, pipeline,
    props, pose, layout). Shared by :func:`render_forward_v2` and :func:`person_motion_v2` so both see the
    same person doing the same thing for a seed."""
    cfg.validate()
    H, W = size
    rng = np.random.default_rng([int(seed), 2])
    t = np.arange(T, dtype=float)
    h, ground, x0, x1 = _place(rng, cfg.person, H, W)
    app, body, style = _appearance(rng), random_body(rng), random_style(rng)
    anchor0 = rng.uniform(x0, x1) if x1 > x0 else x0
    track = camera_track(rng, cfg.camera, T, H, W, clean)
    mx, my = track.margin
    span = (anchor0 + mx - 0.2 * h, anchor0 + mx + 0.2 * h)  # world columns around the feet
    sc = _build_scene(rng, cfg.scene, T, H + 2 * my, W + 2 * mx, ground + my, h, span)
    pipe = CameraPipeline(track, rng, H, W)
    props = _Props(box_size=(rng.uniform(0.12, 0.16), rng.uniform(0.09, 0.12)))
    pose, lay = _action_pose(action, rng, cfg, t, (H, W), (h, ground, x0, x1), anchor0, props)
    return (h, ground, mx, my), (app, body, style), sc, pipe, props, pose, lay


def person_motion_v2(action: str, num_frames: int, size: tuple[int, int], seed: int, cfg: SynthConfig,
                     clean: bool = False) -> np.ndarray:
    """How far the main person moves between consecutive frames of a non-reversed action's clip: ``(T - 1,)``,
    entry ``i`` = the mean displacement of the body's joints (figure heights, walking included) from frame
    ``i`` to ``i + 1``. Drawn from the same seed as :func:`render_forward_v2` but without drawing any frame
    (the pose track and forward kinematics only), so a window of the clip can be chosen before it is rendered."""
    T = int(num_frames)
    (h, _, _, _), (_, body, _), _, _, _, pose, lay = _plan_v2(action, T, size, seed, cfg, clean)
    joints = []
    for i in range(T):
        pts = _skeleton_at(pose, body, i)
        joints.append([(x + lay.anchor_x[i] / h, y) for x, y in pts.values()])
    p = np.asarray(joints, np.float64)  # (T, J, 2)
    return np.linalg.norm(np.diff(p, axis=0), axis=2).mean(axis=1) if T > 1 else np.zeros(0)


def render_forward_v2(action: str, num_frames: int, size: tuple[int, int], seed: int, cfg: SynthConfig, clean: bool,
                      with_mask: bool, frames: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Render a non-reversed action (generation 2); ``clean`` turns every camera effect and ego-motion off.

    ``frames``: indices of the frames of the ``num_frames`` clip to render, in that order (None = all). Every
    random draw and every trajectory (pose, camera path, tone, noise offsets, distractors) is made for the whole
    clip before any frame is drawn, and drawing frame ``i`` reads only frame ``i``'s values (motion blur: the
    camera matrices of ``i - 1`` and ``i``), so a chosen frame is byte-identical to the same frame of the full
    render and costs only its own drawing."""
    H, W = size
    T = num_frames
    idx = _frame_indices(frames, T)
    (h, ground, mx, my), (app, body, style), sc, pipe, props, pose, lay = _plan_v2(action, T, size, seed, cfg, clean)
    needed = np.unique(idx)
    skeletons = _skeletons(action, pose, body, props, lay, h, needed)
    second = sc.extras.get("person")
    sec_skel: list | None = None
    if second is not None:
        sec_skel = [None] * T
        for i in needed:
            sec_skel[i] = _skeleton_at(second[3], second[5], int(i))
    clip = _Clip(sc, lay, props, app, body, style, skeletons, sec_skel, h, ground + my, mx)

    out = np.empty((len(idx), H, W, 3), np.uint8)
    masks = np.zeros((len(idx), H, W), np.uint8) if with_mask else None
    for j, i in enumerate(idx.tolist()):
        world, wmask = _draw_world(clip, i, with_mask)
        out[j] = pipe.finish(pipe.warp(world, i), i)
        if masks is not None:
            masks[j] = pipe.warp(wmask, i, cv2.INTER_NEAREST)
    return out, masks
