"""Spatial clip transforms and the horizontal-flip policy.

Inputs are uint8 RGB clips: numpy (T, H, W, 3), or torch uint8 in (T, H, W, 3) or (3, T, H, W)
layout (a torch tensor whose last dimension is 3 is read as (T, H, W, 3)). Crops return torch uint8
(3, T, S, S); the float conversion and normalisation happen later, on the training device, with
:func:`normalize_on_device` (uint8 batches are 4x smaller to move than float32).

Geometry is the same for every frame of a clip. :func:`random_resized_crop` takes a square of side
``s * min(H, W)`` with ``s ~ U(scale_jitter)`` at a random position and resizes it to ``size``. Since
that is a fraction of the short side, it gives the same result at any input resolution, so training
can skip the separate ``resize_short_side`` step (one resize per frame instead of two).

Horizontal flips and direction-dependent classes: see :class:`FlipPolicy`.

Geometry policy (the checkpoint's ``input_spec.crop``; one implementation for training, evaluation and the
Recognizer, :func:`preprocess_frame`):

* ``center``: short side resized to ``resize_short``, then the central ``size`` crop (the original
  policy; a 16:9 frame loses its side thirds).
* ``full``: the whole frame, resized with its aspect kept to fit the ``size`` square and letterboxed; the
  pad colour is the normalisation mean (:func:`pad_value`), so padding is ~0 after normalisation.

Training draws geometry consistent with the policy (:func:`random_geometry`): ``center``: crops of
``scale_jitter`` of the short side with aspect jitter; ``full``: a random letterbox (content scaled by
``scale_jitter`` of the fitting size, aspect jitter, random position in the square). :class:`Photometric`
adds colour jitter, blur, noise and JPEG compression, all deterministic per ``rng``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "CROP_POLICIES",
    "FlipPolicy",
    "Photometric",
    "eval_clip",
    "pad_value",
    "preprocess_frame",
    "random_geometry",
    "as_numpy_clip",
    "center_crop",
    "hflip",
    "normalize_on_device",
    "random_resized_crop",
    "resize_short_side",
    "three_crops",
    "to_tensor",
]

# Kinetics statistics, as used by torchvision's video models: the one home of the normalisation constants
# (checkpoint.InputSpec defaults and training read them from here).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
CROP_POLICIES = ("center", "full")


# ------------------------------------------------------------------------------------------ layout


def as_numpy_clip(clip) -> np.ndarray:
    """uint8 numpy (T, H, W, 3) view/copy of a numpy or torch clip."""
    if isinstance(clip, torch.Tensor):
        if clip.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 clip, got {clip.dtype}")
        t = clip.detach().cpu()
        if t.ndim == 4 and t.shape[-1] != 3 and t.shape[0] == 3:
            t = t.permute(1, 2, 3, 0)
        clip = t.numpy()
    clip = np.asarray(clip)
    if clip.dtype != np.uint8:
        raise TypeError(f"expected a uint8 clip, got {clip.dtype}")
    if clip.ndim != 4 or clip.shape[-1] != 3 or min(clip.shape) == 0:
        raise ValueError(f"expected a clip of shape (T, H, W, 3), got {tuple(clip.shape)}")
    return clip


def to_tensor(clip) -> torch.Tensor:
    """numpy (T, H, W, 3) uint8 -> contiguous torch uint8 (3, T, H, W)."""
    arr = np.ascontiguousarray(as_numpy_clip(clip))
    return torch.from_numpy(arr).permute(3, 0, 1, 2).contiguous()


def _resize_frames(clip: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    t, h, w, _ = clip.shape
    if (h, w) == (out_h, out_w):
        return clip
    interp = cv2.INTER_AREA if out_h * out_w < h * w else cv2.INTER_LINEAR
    out = np.empty((t, out_h, out_w, 3), dtype=np.uint8)
    for i in range(t):
        out[i] = cv2.resize(np.ascontiguousarray(clip[i]), (out_w, out_h), interpolation=interp)
    return out


def _short_side_shape(h: int, w: int, short: int) -> tuple[int, int]:
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short


# ---------------------------------------------------------------------------------------- geometry


def resize_short_side(clip, short: int) -> np.ndarray:
    """Resize every frame so that min(H, W) == ``short`` (aspect kept) -> numpy (T, H', W', 3)."""
    if short < 1:
        raise ValueError(f"short side must be >= 1, got {short}")
    arr = as_numpy_clip(clip)
    oh, ow = _short_side_shape(arr.shape[1], arr.shape[2], short)
    return _resize_frames(arr, oh, ow)


def random_resized_crop(clip, size: int, scale_jitter: Sequence[float],
                        rng: np.random.Generator) -> torch.Tensor:
    """Scale-jittered random square crop, identical for all frames -> torch uint8 (3, T, S, S).

    Crop side ``round(s * min(H, W))`` with ``s ~ U(lo, hi)``, top-left corner uniform over the
    valid positions, then resized to ``size`` x ``size``."""
    lo, hi = float(scale_jitter[0]), float(scale_jitter[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale_jitter must satisfy 0 < lo <= hi <= 1, got {scale_jitter}")
    arr = as_numpy_clip(clip)
    _, h, w, _ = arr.shape
    s = rng.uniform(lo, hi) if hi > lo else lo
    side = int(min(max(1, round(s * min(h, w))), h, w))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = arr[:, y0:y0 + side, x0:x0 + side]
    return to_tensor(_resize_frames(crop, size, size))


def _fit(arr: np.ndarray, size: int) -> np.ndarray:
    """Upscale so both sides are >= size (no-op for big enough clips)."""
    _, h, w, _ = arr.shape
    if min(h, w) < size:
        arr = _resize_frames(arr, *_short_side_shape(h, w, size))
    return arr


def center_crop(clip, size: int) -> torch.Tensor:
    """Central ``size`` x ``size`` crop -> torch uint8 (3, T, S, S) (clips smaller than ``size`` are
    first upscaled so their short side equals ``size``)."""
    arr = _fit(as_numpy_clip(clip), size)
    _, h, w, _ = arr.shape
    y0, x0 = (h - size) // 2, (w - size) // 2
    return to_tensor(arr[:, y0:y0 + size, x0:x0 + size])


def three_crops(clip, size: int) -> list[torch.Tensor]:
    """Three ``size`` x ``size`` crops along the long side: left/centre/right for landscape (and
    square) frames, top/centre/bottom for portrait frames -> three torch uint8 (3, T, S, S)."""
    arr = _fit(as_numpy_clip(clip), size)
    _, h, w, _ = arr.shape
    out = []
    if w >= h:
        y0 = (h - size) // 2
        for x0 in (0, (w - size) // 2, w - size):
            out.append(to_tensor(arr[:, y0:y0 + size, x0:x0 + size]))
    else:
        x0 = (w - size) // 2
        for y0 in (0, (h - size) // 2, h - size):
            out.append(to_tensor(arr[:, y0:y0 + size, x0:x0 + size]))
    return out


def hflip(clip):
    """Mirror left-right. torch (3, T, H, W) flips the last dim; numpy (T, H, W, 3) flips axis 2."""
    if isinstance(clip, torch.Tensor):
        return clip.flip(-1)
    arr = np.asarray(clip)
    return np.ascontiguousarray(arr[:, :, ::-1])


# ------------------------------------------------------------------------------- geometry policy


def pad_value(mean: Sequence[float] = KINETICS_MEAN) -> tuple[int, int, int]:
    """The letterbox colour of ``crop: full``: the normalisation mean in uint8 RGB, so pad pixels are
    (round(255 m) / 255 - m) / s, i.e. within 0.01 of zero, after normalisation."""
    return tuple(int(round(255.0 * float(m))) for m in mean)  # type: ignore[return-value]


def preprocess_frame(frame: np.ndarray, size: tuple[int, int], resize_short: int, crop: str = "center",
                     mean: Sequence[float] = KINETICS_MEAN) -> np.ndarray:
    """One RGB uint8 frame (H, W, 3) -> (size[0], size[1], 3) uint8 by the geometry policy ``crop``.

    The single implementation behind ``Recognizer.preprocess`` and the evaluation transform of training.
    Memory is bounded by the caller's shape check: ``center`` resizes to at most ``aspect x resize_short^2``
    pixels, ``full`` to at most the model input (plus the output itself)."""
    h, w = frame.shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if crop == "center":
        scale = resize_short / min(h, w)
        new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
        if (new_h, new_w) != (h, w):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            frame = cv2.resize(frame, (new_w, new_h), interpolation=interp)
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        return np.ascontiguousarray(frame[top: top + out_h, left: left + out_w])
    if crop != "center" and crop != "full":
        raise ValueError(f"unknown crop policy {crop!r}; expected one of {CROP_POLICIES}")
    scale = min(out_h / h, out_w / w)
    new_h, new_w = min(out_h, max(1, round(h * scale))), min(out_w, max(1, round(w * scale)))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interp)
    if (new_h, new_w) == (out_h, out_w):
        return np.ascontiguousarray(frame)
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    out[:] = pad_value(mean)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    out[top: top + new_h, left: left + new_w] = frame
    return out


def eval_clip(clip, size: int, resize_short: int, crop: str = "center",
              mean: Sequence[float] = KINETICS_MEAN) -> torch.Tensor:
    """The evaluation transform: :func:`preprocess_frame` on every frame (exactly what the Recognizer
    does at run time) -> torch uint8 (3, T, S, S)."""
    arr = as_numpy_clip(clip)
    out = np.stack([preprocess_frame(np.ascontiguousarray(f), (size, size), resize_short, crop, mean)
                    for f in arr])
    return to_tensor(out)


def _log_uniform(rng: np.random.Generator, ratio: Sequence[float]) -> float:
    lo, hi = float(ratio[0]), float(ratio[1])
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo


def random_geometry(clip, size: int, crop: str, scale_jitter: Sequence[float], aspect_jitter: Sequence[float],
                    rng: np.random.Generator, mean: Sequence[float] = KINETICS_MEAN) -> torch.Tensor:
    """Training geometry consistent with the policy ``crop`` -> torch uint8 (3, T, S, S), same for every frame.

    ``center``: a crop of area ``(s * min(H, W))^2`` (``s ~ U(scale_jitter)``) with width/height ratio
    ``a ~ logU(aspect_jitter)`` at a random position, resized to the square (with ``aspect_jitter`` (1, 1)
    this is :func:`random_resized_crop` with the same random draws). ``full``: the whole frame scaled to
    ``s`` of its letterbox fit, its aspect stretched by ``a``, placed at a random position in the square on
    the mean colour."""
    if (float(aspect_jitter[0]), float(aspect_jitter[1])) == (1.0, 1.0) and crop == "center":
        return random_resized_crop(clip, size, scale_jitter, rng)
    arr = as_numpy_clip(clip)
    t, h, w, _ = arr.shape
    s = rng.uniform(float(scale_jitter[0]), float(scale_jitter[1]))
    a = _log_uniform(rng, aspect_jitter)
    if crop == "center":
        side = s * min(h, w)
        cw = int(min(w, max(1, round(side * np.sqrt(a)))))
        ch = int(min(h, max(1, round(side / np.sqrt(a)))))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return to_tensor(_resize_frames(arr[:, y0:y0 + ch, x0:x0 + cw], size, size))
    if crop != "full":
        raise ValueError(f"unknown crop policy {crop!r}; expected one of {CROP_POLICIES}")
    fit = size / max(h, w)
    nw = int(min(size, max(1, round(w * fit * s * np.sqrt(a)))))
    nh = int(min(size, max(1, round(h * fit * s / np.sqrt(a)))))
    y0, x0 = int(rng.integers(0, size - nh + 1)), int(rng.integers(0, size - nw + 1))
    out = np.empty((t, size, size, 3), dtype=np.uint8)
    out[:] = pad_value(mean)
    out[:, y0:y0 + nh, x0:x0 + nw] = _resize_frames(arr, nh, nw)
    return to_tensor(out)


@dataclass
class Photometric:
    """Camera-like appearance augmentation of a whole clip (the same draw for every frame), on the fly.

    ``colour``: brightness, contrast and saturation factors in [1 - colour, 1 + colour] and a per-channel
    gain in [1 - colour / 3, 1 + colour / 3]; ``blur_prob``: Gaussian blur, sigma U(0.3, 1.5) px;
    ``noise_std``: Gaussian sensor noise with std U(0, noise_std) (in 0-255 units); ``jpeg_prob``: JPEG
    compression at a quality drawn from ``jpeg_quality``. All zero = identity (and no random draws)."""

    colour: float = 0.0
    blur_prob: float = 0.0
    noise_std: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)

    @classmethod
    def from_config(cls, data_cfg) -> Photometric:
        """The augmentation a DataConfig asks for (``colour_jitter``, ``blur_prob``, ``noise_std``, ``jpeg_prob``)."""
        return cls(colour=data_cfg.colour_jitter, blur_prob=data_cfg.blur_prob, noise_std=data_cfg.noise_std,
                   jpeg_prob=data_cfg.jpeg_prob)

    @property
    def active(self) -> bool:
        return self.colour > 0 or self.blur_prob > 0 or self.noise_std > 0 or self.jpeg_prob > 0

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 (3, T, H, W) -> uint8 (3, T, H, W)."""
        if not self.active:
            return clip
        x = clip.permute(1, 2, 3, 0).numpy().astype(np.float32)  # (T, H, W, 3)
        if self.colour > 0:
            c = self.colour
            bright, contrast, sat = (rng.uniform(1 - c, 1 + c) for _ in range(3))
            gain = rng.uniform(1 - c / 3, 1 + c / 3, size=3).astype(np.float32)
            grey = x.mean(axis=-1, keepdims=True)
            x = grey + (x - grey) * sat
            x = (x - x.mean()) * contrast + x.mean()
            x = x * bright * gain
        if self.blur_prob > 0 and rng.random() < self.blur_prob:
            sigma = rng.uniform(0.3, 1.5)
            x = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in x])
        if self.noise_std > 0:
            std = rng.uniform(0, self.noise_std)
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * std
        out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
        if self.jpeg_prob > 0 and rng.random() < self.jpeg_prob:
            q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            out = np.stack([_jpeg(f, q) for f in out])
        return torch.from_numpy(np.ascontiguousarray(out)).permute(3, 0, 1, 2).contiguous()


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else frame


# --------------------------------------------------------------------------------------- flipping

# Words whose meaning a horizontal mirror reverses, and what they become.
_MIRROR_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("right",),
    "right": ("left",),
    "clockwise": ("counterclockwise", "anticlockwise"),
    "counterclockwise": ("clockwise",),
    "anticlockwise": ("clockwise",),
    "cw": ("ccw",),
    "ccw": ("cw",),
}
_TOKEN_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[0].isupper():
        return word.capitalize()
    return word


def _directional_tokens(name: str) -> list[re.Match]:
    return [m for m in _TOKEN_RE.finditer(name) if m.group(0).lower() in _MIRROR_WORDS]


def _mirror_names(name: str) -> list[str]:
    """Names the mirrored action could have ("walk_left" -> ["walk_right"]); [] if not directional."""
    toks = _directional_tokens(name)
    if not toks:
        return []
    out = [""]
    pos = 0
    for m in toks:
        alts = _MIRROR_WORDS[m.group(0).lower()]
        prefix = name[pos:m.start()]
        out = [o + prefix + _match_case(a, m.group(0)) for o in out for a in alts]
        pos = m.end()
    return [o + name[pos:] for o in out]


@dataclass
class FlipPolicy:
    """Random horizontal flip that respects direction-dependent classes.

    A mirrored "walk_left" video shows walking right, so flipping it while keeping its label teaches
    the wrong class. For each class:

    * in ``swap`` (``swap[a] = b``): flipping is allowed and the label changes with the flip
      (a flipped "walk_left" clip is labelled "walk_right"); this is what keeps flip usable as an
      augmentation on datasets with left/right classes;
    * in ``forbidden``: never flipped (direction matters but there is no mirrored class);
    * otherwise: flipped with probability ``p``, label unchanged.

    :meth:`from_classes` builds ``swap`` from the configured ``hflip_pairs`` plus, with ``auto``,
    every class whose name has a direction word (left/right, clockwise/counterclockwise/anticlockwise,
    cw/ccw; words split on separators and camelCase) and whose mirrored name is also a class (e.g.
    "Pushing something from left to right" <-> "... from right to left", "SwipeLeft" <->
    "SwipeRight", "rotate_cw" <-> "rotate_ccw"). A class with a direction word but no mirrored class
    is forbidden automatically (a wrong guess can only disable flipping, never mislabel), as are
    ``hflip_forbidden`` classes. Directions the names do not reveal need ``hflip_pairs`` /
    ``hflip_forbidden`` in the config.
    """

    enabled: bool = True
    swap: dict[int, int] = field(default_factory=dict)
    forbidden: set[int] = field(default_factory=set)
    p: float = 0.5

    def __post_init__(self) -> None:
        for a, b in self.swap.items():
            if self.swap.get(b) != a:
                raise ValueError(f"FlipPolicy.swap must be symmetric: {a}->{b} but {b}->{self.swap.get(b)}")
        both = set(self.swap) & set(self.forbidden)
        if both:
            raise ValueError(f"classes {sorted(both)} are both swapped and forbidden")

    @classmethod
    def from_classes(cls, classes: Sequence[str], enabled: bool = True,
                     pairs: Iterable[Sequence[str]] = (), forbidden: Iterable[str] = (),
                     auto: bool = True, p: float = 0.5) -> FlipPolicy:
        index = {c: i for i, c in enumerate(classes)}

        def idx(name: str, what: str) -> int:
            if name not in index:
                raise ValueError(f"{what}: unknown class {name!r}")
            return index[name]

        swap: dict[int, int] = {}
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"hflip_pairs: expected [class_a, class_b], got {list(pair)!r}")
            a, b = idx(pair[0], "hflip_pairs"), idx(pair[1], "hflip_pairs")
            if a == b:
                raise ValueError(f"hflip_pairs: class {pair[0]!r} paired with itself")
            for k, v in ((a, b), (b, a)):
                if swap.get(k, v) != v:
                    raise ValueError(f"hflip_pairs: class {classes[k]!r} appears in two pairs")
                swap[k] = v
        forbid = {idx(n, "hflip_forbidden") for n in forbidden}
        clash = forbid & set(swap)
        if clash:
            raise ValueError(f"classes {[classes[i] for i in sorted(clash)]} are both in hflip_pairs "
                             f"and hflip_forbidden")
        if auto:
            for i, name in enumerate(classes):
                mirrors = _mirror_names(name)
                if i in swap or i in forbid or not mirrors:
                    continue
                js = [index[m] for m in mirrors if m in index]
                j = js[0] if js else None
                if j is not None and j != i and j not in swap and j not in forbid:
                    swap[i], swap[j] = j, i
                else:
                    forbid.add(i)
        return cls(enabled=bool(enabled), swap=swap, forbidden=forbid, p=p)

    @classmethod
    def from_config(cls, cfg, classes: Sequence[str]) -> FlipPolicy:
        """From a DataConfig (``hflip``, ``hflip_pairs``, ``hflip_forbidden``)."""
        return cls.from_classes(classes, enabled=cfg.hflip, pairs=cfg.hflip_pairs,
                                forbidden=getattr(cfg, "hflip_forbidden", ()))

    def can_flip(self, label: int) -> bool:
        return self.enabled and label not in self.forbidden

    def apply(self, clip, label: int, rng: np.random.Generator):
        """Flip with probability ``p`` where allowed -> (clip, label), label swapped for pairs.
        One random number is drawn whatever the outcome, so random streams stay aligned."""
        u = rng.random()
        if not self.can_flip(label) or u >= self.p:
            return clip, label
        return hflip(clip), self.swap.get(label, label)

    def describe(self, classes: Sequence[str]) -> str:
        if not self.enabled:
            return "horizontal flip: off"
        pairs = sorted({tuple(sorted((a, b))) for a, b in self.swap.items()})
        parts = ["horizontal flip: on"]
        if pairs:
            parts.append("swapped " + ", ".join(f"{classes[a]}<->{classes[b]}" for a, b in pairs))
        if self.forbidden:
            parts.append("never flipped " + ", ".join(classes[i] for i in sorted(self.forbidden)))
        return "; ".join(parts)


# ---------------------------------------------------------------------------------- normalisation


def normalize_on_device(x: torch.Tensor, mean: Sequence[float] = KINETICS_MEAN,
                        std: Sequence[float] = KINETICS_STD,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 clips with channels at dim -4 ((B, 3, T, H, W) or (B, V, 3, T, H, W)), on any device ->
    ``(x / 255 - mean) / std`` as ``dtype`` on the same device."""
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_on_device expects uint8 input, got {x.dtype}")
    if x.ndim < 4 or x.shape[-4] != 3:
        raise ValueError(f"expected channels (3) at dim -4, got shape {tuple(x.shape)}")
    m = torch.as_tensor(mean, dtype=torch.float64)
    s = torch.as_tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * s)).to(dtype=dtype, device=x.device).view(3, 1, 1, 1)
    shift = (-m / s).to(dtype=dtype, device=x.device).view(3, 1, 1, 1)
    return x.to(dtype).mul_(scale).add_(shift)
