"""On-the-fly synthetic data: generation-2 clips rendered per item, never written to disk.

``data.layout: synthetic_stream`` trains on :class:`SyntheticStreamDataset` (built by :func:`stream_datasets`):

* training: ``synthetic.train_clips`` items per epoch; item ``i`` of epoch ``e`` renders a fresh seed derived
  from (seed, "train", e, i), so every epoch sees new clips (a fixed-size epoch of an endless stream);
* validation / test: ``val_clips`` / ``test_clips`` fixed seeds (the same every epoch and every run).
  Seeds are disjoint between the three splits *by construction*: the two low bits of every render seed are
  the split's code (0 train, 1 val, 2 test).

Timeline and windows: an item is a window of ``data.clip_len`` frames every ``data.frame_stride`` taken from a
clip of ``synthetic.clip_frames`` frames (default 40, as camera_sim's clips), so an action moves as fast per
frame as the node's sliding windows see it, and a window may hold only part of an action. Training windows
start at a random offset (drawn from the item's rng: deterministic per (seed, epoch, index)); evaluation
windows start at the ``data.test_clips`` evenly spread starts of :func:`~.sampling.test_clip_indices` (the
file datasets' test views), one per item, cycled evenly with the geometries (the stream's evaluation is one
view per clip, so its accuracy is a per-window figure, like the node's). Only the window's frames are
rendered (``render_clip(..., frames=...)``, byte-identical to the same frames of the full clip).

Windows that show the action (``synthetic.min_window_motion``, generation 2): a transitional action takes
40-80 % of the timeline, so a uniformly placed window may hold none of it (a ``sit_down`` window with only
the seated person; 12 % of sit_down / stand_up / pick_up / put_down windows and 19 % of fall windows hold
under a tenth of the motion of the clip's busiest window, which is breathing only), and that label cannot be
seen in it: the same seated person is a ``stand_up`` window too. Only starts whose window holds at least
``min_window_motion`` of the busiest window's person motion are used (training draws among them; an
evaluation start moves to the nearest one); the motion comes from the pose track
(:func:`~.synthetic.person_motion`) before any frame is drawn. Partial actions stay: a window may still hold
only the start or the end of a transition.

Labels are balanced (item ``i`` has class ``i mod K``). Each item's camera geometry (``synthetic.geometries``,
"WxH") is drawn at random for training and cycled evenly for validation / test (so every class meets every
geometry). Clips are rendered natively at ``render_scale`` of the geometry (the figure, room and camera
are drawn at that resolution; it only changes how much detail there is before the frame is reduced to the
model input, e.g. 640x480 at 0.5 = 320x240 -> 112), never below ``data.resize_short`` on the short side
(so nothing is upscaled); the test split always renders at full size.

Geometry then follows the policy ``data.crop`` (data/transforms.py): training = :func:`random_geometry` +
flip policy + :class:`Photometric`; evaluation = :func:`eval_clip`, exactly ``Recognizer.preprocess``.
Items are ``(uint8 (3, T, S, S), label, index)`` like :class:`repflow_core.data.dataset.VideoClipDataset`,
and the epoch lives in shared memory, so DataLoader workers (also persistent ones) see :meth:`set_epoch`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .sampling import clip_span, test_clip_indices
from .transforms import FlipPolicy, Photometric, eval_clip, random_geometry

__all__ = ["SPLIT_CODES", "SyntheticStreamDataset", "check_window", "parse_geometry", "render_seed",
           "stream_datasets"]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_MIN_RENDER_SIDE = 16  # synthetic.MIN_SIZE


def parse_geometry(text: str) -> tuple[int, int]:
    """``"640x360"`` (width x height, as cameras are named) -> (height, width) = (360, 640)."""
    parts = str(text).lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"synthetic geometry {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if min(w, h) < _MIN_RENDER_SIDE or max(w, h) > 4096 or max(w, h) > 8 * min(w, h):
        raise ValueError(f"synthetic geometry {text!r}: sides must be {_MIN_RENDER_SIDE}-4096 px, aspect <= 8:1")
    return h, w


def check_window(clip_frames: int, clip_len: int, frame_stride: int) -> int:
    """The window span ``(clip_len - 1) * frame_stride + 1``; ValueError naming the keys if the clip is shorter."""
    span = clip_span(int(clip_len), int(frame_stride))
    if int(clip_frames) < span:
        raise ValueError(f"synthetic.clip_frames {clip_frames} is shorter than one window of data.clip_len "
                         f"{clip_len} frames every data.frame_stride {frame_stride} ({span} frames); raise "
                         f"synthetic.clip_frames to >= {span} or shorten the window")
    return span


def render_seed(seed: int, split: str, epoch: int, index: int) -> int:
    """The render seed of one item: a 62-bit hash of (seed, split, epoch, index) shifted left by 2, plus the
    split's code, so no seed is ever shared by two splits."""
    digest = hashlib.sha256(repr((int(seed), split, int(epoch), int(index))).encode()).digest()
    return ((int.from_bytes(digest[:8], "little") & ((1 << 60) - 1)) << 2) | SPLIT_CODES[split]


class SyntheticStreamDataset(Dataset):
    """``length`` generation-2 clips of ``classes``, rendered when asked for (see the module docstring)."""

    def __init__(self, classes: Sequence[str], data_cfg: Any, syn_cfg: Any, split: str, length: int,
                 seed: int = 0, render_scale: float | None = None) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
        from .synthetic import SynthConfig

        self.classes = list(classes)
        self.cfg, self.split, self.length, self.seed = data_cfg, split, int(length), int(seed)
        self.train = split == "train"
        self.generation = int(syn_cfg.generation)
        self.synth = SynthConfig.from_dict(dict(syn_cfg.generator or {})) if self.generation == 2 else None
        self.geometries = [parse_geometry(g) for g in syn_cfg.geometries]
        self.render_scale = float(syn_cfg.render_scale if render_scale is None else render_scale)
        self.clip_frames = int(syn_cfg.clip_frames)
        self.min_window_motion = float(getattr(syn_cfg, "min_window_motion", 0.0))
        self.span = check_window(self.clip_frames, data_cfg.clip_len, data_cfg.frame_stride)
        # Evaluation window starts: the file datasets' test views (evenly spread segment centres).
        self.eval_starts = [int(v[0]) for v in test_clip_indices(self.clip_frames, data_cfg.clip_len,
                                                                 data_cfg.frame_stride, max(1, data_cfg.test_clips))]
        self.flip = FlipPolicy.from_config(data_cfg, self.classes)
        self.photometric = Photometric.from_config(data_cfg)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self.length

    @property
    def labels(self) -> list[int]:
        return [i % len(self.classes) for i in range(self.length)]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (3, self.cfg.clip_len, self.cfg.size, self.cfg.size)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Training: select epoch ``epoch``'s clips (seen by running workers). Validation / test: no effect."""
        self._epoch[0] = int(epoch)

    def geometry(self, index: int, rng: np.random.Generator) -> tuple[int, int]:
        """(height, width) of item ``index``: random for training, cycled over the list for evaluation."""
        if self.train:
            return self.geometries[int(rng.integers(len(self.geometries)))]
        return self.geometries[(index // len(self.classes)) % len(self.geometries)]

    def allowed_starts(self, label: int, size: tuple[int, int], seed: int) -> np.ndarray:
        """Window starts whose window shows the action: with ``synthetic.min_window_motion`` m > 0 (generation
        2), the starts whose window holds at least m of the person's motion in the clip's busiest window
        (:func:`~.synthetic.person_motion`, from the pose track alone); otherwise every start."""
        starts = np.arange(self.clip_frames - self.span + 1)
        if self.generation != 2 or self.min_window_motion <= 0 or len(starts) == 1:
            return starts
        from .synthetic import person_motion, window_motion

        held = window_motion(person_motion(self.classes[label], self.clip_frames, size, seed, self.synth), self.span)
        keep = starts[held >= self.min_window_motion * held.max()]
        return keep if len(keep) else starts

    def window_start(self, index: int, rng: np.random.Generator, allowed: np.ndarray | None = None) -> int:
        """First frame of item ``index``'s window in its clip's timeline, among ``allowed`` starts (None: all).
        Training: uniform over them. Evaluation: block ``j = index // K`` (K classes; geometry ``j mod G``)
        aims at start ``(j // G + j mod G) mod V`` of the V evenly spread starts, so every G x V consecutive
        blocks hold each (class, geometry, start) once, and the first G blocks already hold min(G, V)
        different starts; an aimed start that is not allowed moves to the nearest allowed one (the earlier
        on a tie)."""
        if allowed is None:
            allowed = np.arange(self.clip_frames - self.span + 1)
        if self.train:
            return int(allowed[int(rng.integers(0, len(allowed)))])
        j, g = index // len(self.classes), len(self.geometries)
        aim = self.eval_starts[(j // g + j % g) % len(self.eval_starts)]
        return int(allowed[int(np.argmin(np.abs(allowed - aim)))])

    def window(self, index: int, rng: np.random.Generator, allowed: np.ndarray | None = None) -> np.ndarray:
        """Frame indices (into the ``clip_frames`` timeline) of item ``index``'s window."""
        steps = np.arange(self.cfg.clip_len, dtype=np.int64) * self.cfg.frame_stride
        return self.window_start(index, rng, allowed) + steps

    def render_size(self, geometry: tuple[int, int]) -> tuple[int, int]:
        h, w = geometry
        # Never below what the model input needs (short side resize_short) nor the generator's minimum.
        floor = min(1.0, max(self.cfg.resize_short, self.cfg.size, _MIN_RENDER_SIDE) / min(h, w))
        s = max(self.render_scale, floor)
        return max(_MIN_RENDER_SIDE, round(h * s)), max(_MIN_RENDER_SIDE, round(w * s))

    def plan(self, index: int) -> tuple[int, int, tuple[int, int], np.ndarray, np.random.Generator]:
        """What item ``index`` of the current epoch renders: (render seed, label, (H, W), window frame indices
        into the ``clip_frames`` timeline, the item's rng for the augmentations that follow).

        Draw order from the item's rng (training): geometry, window start, then the augmentations."""
        epoch = self.epoch if self.train else 0
        seed = render_seed(self.seed, self.split, epoch, index)
        rng = np.random.default_rng([seed, 1])  # augmentation draws independent of the renderer's stream
        size = self.render_size(self.geometry(index, rng))
        label = index % len(self.classes)
        return seed, label, size, self.window(index, rng, self.allowed_starts(label, size, seed)), rng

    def render(self, index: int) -> tuple[np.ndarray, int, np.random.Generator]:
        """The raw window (clip_len, H, W, 3) of item ``index`` in the current epoch, its label and its rng: the
        window's frames of the ``clip_frames`` clip, rendered alone (byte-identical to slicing the full clip)."""
        from .synthetic import render_clip

        seed, label, size, frames, rng = self.plan(index)
        clip = render_clip(self.classes[label], self.clip_frames, size, seed, generation=self.generation,
                           config=self.synth, frames=frames)
        return clip, label, rng

    def __getitem__(self, index: int):
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"item {index} of a synthetic stream of {self.length}")
        clip, label, rng = self.render(index)
        cfg = self.cfg
        if not self.train:
            return eval_clip(clip, cfg.size, max(cfg.resize_short, cfg.size), cfg.crop), label, index
        x = random_geometry(clip, cfg.size, cfg.crop, cfg.scale_jitter, cfg.aspect_jitter, rng)
        x, label = self.flip.apply(x, label, rng)
        return self.photometric(x, rng), int(label), index


def stream_datasets(cfg: Any) -> tuple[list[str], SyntheticStreamDataset, SyntheticStreamDataset | None,
                                       SyntheticStreamDataset | None]:
    """(classes, train, val, test) streams for a TrainConfig with ``data.layout: synthetic_stream``
    (val / test None when their size is 0). Classes: the generator's default ACTIONS."""
    from .synthetic import ACTIONS

    syn, d = cfg.synthetic, cfg.data
    classes = list(ACTIONS)
    train = SyntheticStreamDataset(classes, d, syn, "train", syn.train_clips, syn.seed)
    val = SyntheticStreamDataset(classes, d, syn, "val", syn.val_clips, syn.seed) if syn.val_clips else None
    test = (SyntheticStreamDataset(classes, d, syn, "test", syn.test_clips, syn.seed, render_scale=1.0)
            if syn.test_clips else None)
    return classes, train, val, test
