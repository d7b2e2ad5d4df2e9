"""Generation 2's robot camera: ego-motion (pan/tilt/zoom/shake) and the image pipeline (motion blur, defocus,
exposure/contrast/gamma/colour cast/flicker, sensor noise, JPEG compression).

The scene is drawn in *world* pixels (frame 0's camera, plus a margin); each frame is cut out of it by an
affine warp (:func:`camera_track` gives the matrices), so robot motion puts a global, sub-pixel motion into
every frame as it would into a real robot's flow. All sizes scale with the frame (ranges are given per frame
width/height or at 480 lines), so a 112 px and a 1080 px render see the same relative effects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class CameraConfig:
    """Camera factors; each ``(lo, hi)`` is a uniform range drawn once per clip.

    ``motion`` switches the ego-motion off altogether; ``motion_prob`` is the share of clips with a moving
    robot when it is on. ``blur`` and ``compression`` scale the blur ranges and the JPEG quality loss
    (0 = off, 1 = the default ranges, 2 = stronger); ``low_light`` draws a dark, noisy exposure.
    """

    motion: bool = True
    motion_prob: float = 0.75
    pan_speed: tuple[float, float] = (0.0005, 0.004)  # frame widths per frame, either direction
    tilt_speed: tuple[float, float] = (0.0, 0.002)  # frame heights per frame
    zoom_speed: tuple[float, float] = (0.0, 0.004)  # relative scale change per frame, in or out
    shake: tuple[float, float] = (0.0, 0.004)  # shake amplitude, frame diagonals
    blur: float = 1.0
    exposure_share: tuple[float, float] = (0.3, 1.0)  # motion blur length / displacement between frames
    defocus: tuple[float, float] = (0.0, 1.6)  # Gaussian sigma, pixels at 480 lines
    noise: tuple[float, float] = (1.0, 6.0)  # Gaussian sensor noise, grey levels
    brightness: tuple[float, float] = (0.7, 1.25)  # gain
    contrast: tuple[float, float] = (0.75, 1.2)
    gamma: tuple[float, float] = (0.75, 1.35)
    colour_cast: tuple[float, float] = (0.88, 1.12)  # per-channel gain
    flicker_prob: float = 0.3
    flicker: tuple[float, float] = (0.02, 0.08)  # relative gain amplitude (mains light on a rolling sensor)
    low_light: bool = False
    low_light_gain: tuple[float, float] = (0.25, 0.45)  # replaces brightness when low_light
    compression: float = 1.0
    compression_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (40, 95)  # at compression level 1

    def validate(self) -> CameraConfig:
        for name in ("motion_prob", "flicker_prob", "compression_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"camera.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("blur", "compression"):
            if getattr(self, name) < 0:
                raise ValueError(f"camera.{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        return self


@dataclass
class CameraTrack:
    """Per-frame inverse warps (output pixel -> world pixel) and the clip's image-pipeline draws."""

    matrices: np.ndarray  # (T, 2, 3) float64, or empty when the camera is still
    margin: tuple[int, int]  # world canvas margin (x, y) around the frame
    exposure: float
    defocus_sigma: float
    noise_sigma: float
    lut: np.ndarray  # (T, 1, 256, 3) uint8 per-frame tone curves (exposure, contrast, gamma, cast, flicker)
    jpeg_quality: int  # 0 = no compression


def camera_track(rng: np.random.Generator, cfg: CameraConfig, num_frames: int, height: int, width: int,
                 clean: bool) -> CameraTrack:
    """Draw the clip's camera: ego-motion path and image-pipeline settings (``clean``: none of them)."""
    T = num_frames
    t = np.arange(T, dtype=float)
    diag = math.hypot(height, width)
    moving = cfg.motion and rng.random() < cfg.motion_prob
    sgn = lambda: 1.0 if rng.random() < 0.5 else -1.0  # noqa: E731
    pan = sgn() * rng.uniform(*cfg.pan_speed) * width
    tilt = sgn() * rng.uniform(*cfg.tilt_speed) * height
    zoom = sgn() * rng.uniform(*cfg.zoom_speed)
    shake_amp = rng.uniform(*cfg.shake) * diag
    shake = np.zeros((T, 2))
    for axis in range(2):  # two sinusoids per axis, 3-12 frame periods: a robot's vibration
        for _ in range(2):
            period = rng.uniform(3, 12)
            shake[:, axis] += 0.5 * shake_amp * rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * t / period
                                                                              + rng.uniform(0, 2 * math.pi))
    exposure = rng.uniform(*cfg.exposure_share)
    defocus = rng.uniform(*cfg.defocus) * cfg.blur * height / 480.0
    noise = rng.uniform(*cfg.noise)
    gain = rng.uniform(*(cfg.low_light_gain if cfg.low_light else cfg.brightness))
    if cfg.low_light:
        noise *= 2.0  # a dark frame is amplified: more noise
    contrast, gamma = rng.uniform(*cfg.contrast), rng.uniform(*cfg.gamma)
    cast = rng.uniform(*cfg.colour_cast, size=3)
    flick = rng.uniform(*cfg.flicker) if rng.random() < cfg.flicker_prob else 0.0
    flick_gain = 1.0 + flick * np.sin(2 * math.pi * t / rng.uniform(2.5, 6.0) + rng.uniform(0, 2 * math.pi))
    q_lo, q_hi = cfg.jpeg_quality
    quality = 0
    if cfg.compression > 0 and rng.random() < cfg.compression_prob:
        lo = max(5.0, q_hi - (q_hi - q_lo) * cfg.compression)
        quality = int(round(rng.uniform(lo, q_hi)))
    if clean:
        return CameraTrack(np.zeros((0, 2, 3)), (0, 0), 0.0, 0.0, 0.0, _tone_luts(np.ones(T), 1.0, 1.0, np.ones(3)),
                           0)
    if not moving:
        return CameraTrack(np.zeros((0, 2, 3)), (0, 0), 0.0, defocus, noise,
                           _tone_luts(flick_gain, contrast, gamma, cast * gain), quality)
    offsets = np.stack([pan * t, tilt * t], 1) + shake
    offsets -= offsets.mean(0)  # centre the path on the world frame: the person stays where placed on average
    scales = (1.0 + zoom) ** (t - t.mean())
    # Margin: the largest excursion of a frame corner from the world frame, plus a pixel for interpolation.
    corner = np.abs(offsets).max(0) + np.abs(1.0 / scales - 1.0).max() * np.array([width, height]) / 2
    mx, my = (int(math.ceil(v)) + 2 for v in corner)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    mats = np.zeros((T, 2, 3))
    for i in range(T):  # world = c + (out - c) / scale + offset, shifted by the margin
        inv = 1.0 / scales[i]
        mats[i] = [[inv, 0.0, cx - inv * cx + offsets[i, 0] + mx], [0.0, inv, cy - inv * cy + offsets[i, 1] + my]]
    return CameraTrack(mats, (mx, my), exposure * cfg.blur, defocus, noise,
                       _tone_luts(flick_gain, contrast, gamma, cast * gain), quality)


def _tone_luts(frame_gain: np.ndarray, contrast: float, gamma: float, channel_gain: np.ndarray) -> np.ndarray:
    """Per-frame, per-channel tone curves: v -> 255 * clip(g_t * g_c * ((v/255 - 0.5) * contrast + 0.5)) ** gamma."""
    v = np.arange(256, dtype=np.float64) / 255.0
    base = np.clip((v - 0.5) * contrast + 0.5, 0.0, 1.0)
    lin = frame_gain[:, None, None] * channel_gain[None, None, :] * base[None, :, None]  # (T, 256, 3)
    out = 255.0 * np.clip(lin, 0.0, 1.0) ** gamma
    return np.rint(out).astype(np.uint8)[:, None]


def _motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    """Normalised line kernel along (dx, dy) pixels, or None below a pixel of smear."""
    length = math.hypot(dx, dy)
    if length < 1.0:
        return None
    k = int(math.ceil(length)) | 1
    ker = np.zeros((k, k), np.float32)
    c = (k - 1) / 2.0
    sh = 4
    p0 = (int(round((c - dx / 2) * 16)), int(round((c - dy / 2) * 16)))
    p1 = (int(round((c + dx / 2) * 16)), int(round((c + dy / 2) * 16)))
    cv2.line(ker, p0, p1, 1.0, 1, cv2.LINE_AA, sh)
    s = float(ker.sum())
    return ker / s if s > 0 else None


class CameraPipeline:
    """Applies a :class:`CameraTrack` to world frames, one at a time (the same object for a whole clip)."""

    def __init__(self, track: CameraTrack, rng: np.random.Generator, height: int, width: int):
        self.track, self.h, self.w = track, height, width
        self.noise_pool: np.ndarray | None = None
        if track.noise_sigma > 0:
            pad = 8  # one pre-drawn noise image cut at random offsets per frame: cheap, still varies per frame
            self.noise_pool = rng.normal(0.0, track.noise_sigma, (height + 2 * pad, width + 2 * pad, 3)).astype(
                np.int16)
            self.noise_off = rng.integers(0, 2 * pad + 1, (max(len(track.lut), 1), 2))

    def warp(self, world: np.ndarray, i: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Frame ``i``'s view of a world canvas (a crop when the camera is still)."""
        tr = self.track
        if len(tr.matrices) == 0:
            mx, my = tr.margin
            return np.ascontiguousarray(world[my : my + self.h, mx : mx + self.w])
        return cv2.warpAffine(world, tr.matrices[i], (self.w, self.h), flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)

    def finish(self, img: np.ndarray, i: int) -> np.ndarray:
        """Motion blur, defocus, tone, noise and compression of output frame ``i`` (uint8 RGB)."""
        tr = self.track
        if tr.exposure > 0 and 0 < i < len(tr.matrices):
            d = (tr.matrices[i][:, 2] - tr.matrices[i - 1][:, 2]) * tr.exposure
            ker = _motion_kernel(float(d[0]), float(d[1]))
            if ker is not None:
                img = cv2.filter2D(img, -1, ker, borderType=cv2.BORDER_REFLECT)
        if tr.defocus_sigma >= 0.3:
            img = cv2.GaussianBlur(img, (0, 0), tr.defocus_sigma)
        img = cv2.LUT(img, tr.lut[i])
        if self.noise_pool is not None:
            oy, ox = int(self.noise_off[i, 0]), int(self.noise_off[i, 1])
            img = cv2.add(img, self.noise_pool[oy : oy + self.h, ox : ox + self.w], dtype=cv2.CV_8U)
        if tr.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, tr.jpeg_quality])
            if ok:
                img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return img
