"""The public renderer: action names, argument checks and the generation switch.

``render_clip(action, T, (H, W), seed)`` renders generation 2 (:mod:`.generator`, domain randomised for real
robot cameras) by default; ``generation=1`` renders the old clips (:mod:`.legacy`) the packaged default model
was trained on, byte-identical for a seed. Both render the reversed classes of :data:`REVERSED_OF` as exact
time reversals of their partner, camera effects included.
"""

from __future__ import annotations

import numpy as np

from .generator import DEFAULT_GENERATION, GENERATIONS, SynthConfig, _frame_indices, person_motion_v2, render_forward_v2
from .legacy import render_forward_v1

# The ten classes of the default dataset and of the packaged model, in label order.
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
# Rendered by name (both generations) but in no default class list: for fine-tuning on new actions.
EXTRA_ACTIONS: tuple[str, ...] = ("point", "drink", "nod")
ALL_ACTIONS: tuple[str, ...] = ACTIONS + EXTRA_ACTIONS

# Classes rendered as the exact time reversal of another class (same seed -> reversed frames).
REVERSED_OF: dict[str, str] = {"walk_left": "walk_right", "stand_up": "sit_down", "put_down": "pick_up"}

MIN_SIZE = 16


def _check_action(action: str) -> None:
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)} "
                         f"(extra, outside the default classes: {', '.join(EXTRA_ACTIONS)})")


def _render(
    action: str, num_frames: int, size: tuple[int, int], seed: int, clean: bool = False, with_mask: bool = False,
    generation: int = DEFAULT_GENERATION, config: SynthConfig | None = None, frames=None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames (T, H, W, 3) and, with ``with_mask``, the main person's masks (T, H, W). ``clean`` turns off
    sensor noise and camera jitter (generation 1) or every camera effect and ego-motion (generation 2).
    ``frames``: only these frame indices of the ``num_frames`` clip, in that order (see :func:`render_clip`)."""
    _check_action(action)
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(size) != 2 or min(int(size[0]), int(size[1])) < MIN_SIZE:
        raise ValueError(f"size must be (height, width) with both >= {MIN_SIZE}, got {size}")
    if generation not in GENERATIONS:
        raise ValueError(f"generation must be one of {GENERATIONS}, got {generation!r}")
    base = REVERSED_OF.get(action, action)
    hw, T = (int(size[0]), int(size[1])), int(num_frames)
    if generation == 1 and config is not None:
        raise ValueError("config applies to generation 2 only; generation 1 has fixed ranges")
    if frames is not None:
        idx = _frame_indices(frames, T)
        fwd = T - 1 - idx if base != action else idx  # a reversed class's frame j is the forward clip's T-1-j
        if generation == 1:  # the legacy renderer draws whole clips only: render it all, keep the chosen frames
            out, masks = render_forward_v1(base, T, hw, int(seed), clean, with_mask)
            return np.ascontiguousarray(out[fwd]), None if masks is None else np.ascontiguousarray(masks[fwd])
        return render_forward_v2(base, T, hw, int(seed), config or SynthConfig(), clean, with_mask, fwd)
    if generation == 1:
        out, masks = render_forward_v1(base, T, hw, int(seed), clean, with_mask)
    else:
        out, masks = render_forward_v2(base, T, hw, int(seed), config or SynthConfig(), clean, with_mask)
    if base != action:
        out = np.ascontiguousarray(out[::-1])
        masks = None if masks is None else np.ascontiguousarray(masks[::-1])
    return out, masks


def render_clip(
    action: str, num_frames: int, size: tuple[int, int] = (128, 128), seed: int = 0,
    generation: int = DEFAULT_GENERATION, config: SynthConfig | None = None, frames=None,
) -> np.ndarray:
    """Render one synthetic action clip.

    Args:
        action: one of :data:`ACTIONS` (or :data:`EXTRA_ACTIONS`).
        num_frames: number of frames T (>= 1).
        size: (height, width) in pixels (each >= 16), any aspect ratio; rendered natively at that size.
        seed: all randomness (appearance, layout, timing, camera, noise) derives from it; same arguments give
            the same bytes.
        generation: 2 (default: rooms, varied people, robot camera) or 1 (the packaged model's data).
        config: generation 2's factor switches and ranges (:class:`SynthConfig`); None = the defaults.
        frames: None (all) or the indices (in ``[0, num_frames)``, any order) of the frames to return. The
            clip's timeline is still the ``num_frames`` clip's (an action lasts as long, the camera moves the
            same way), and each returned frame is byte-identical to that frame of the full render. Generation 2
            draws only the chosen frames (the cost of a window of a longer clip is that of the window);
            generation 1 renders the whole clip and selects.

    Returns:
        uint8 array (T, H, W, 3), RGB (T = ``len(frames)`` when given).

    ``walk_left``, ``stand_up`` and ``put_down`` are the exact time reversals of ``walk_right``,
    ``sit_down`` and ``pick_up`` for the same seed (see the package docstring for why).
    """
    out, _ = _render(action, num_frames, size, seed, generation=generation, config=config, frames=frames)
    return out


def person_motion(action: str, num_frames: int, size: tuple[int, int] = (128, 128), seed: int = 0,
                  config: SynthConfig | None = None) -> np.ndarray:
    """How much the person of ``render_clip(action, num_frames, size, seed, config=config)`` (generation 2)
    moves between consecutive frames, without rendering it: ``(num_frames - 1,)`` mean joint displacements in
    figure heights (entry ``i``: frame ``i`` -> ``i + 1``; a reversed class gets its partner's, reversed).

    What it is for: a window of a long clip may miss a transitional action entirely (a ``sit_down`` window
    that shows only the seated person), and such a window's label cannot be seen in it
    (:class:`~repflow_core.data.synthetic_stream.SyntheticStreamDataset` skips them)."""
    _check_action(action)
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(size) != 2 or min(int(size[0]), int(size[1])) < MIN_SIZE:
        raise ValueError(f"size must be (height, width) with both >= {MIN_SIZE}, got {size}")
    base = REVERSED_OF.get(action, action)
    m = person_motion_v2(base, int(num_frames), (int(size[0]), int(size[1])), int(seed), config or SynthConfig())
    return np.ascontiguousarray(m[::-1]) if base != action else m


def window_motion(motion: np.ndarray, span: int) -> np.ndarray:
    """The person motion each window of ``span`` frames holds, from :func:`person_motion`'s per-frame
    ``motion``: entry ``s`` = the motion between the window's first frame ``s`` and its last ``s + span - 1``."""
    csum = np.concatenate([[0.0], np.cumsum(motion)])
    return csum[span - 1:] - csum[: len(csum) - span + 1]
