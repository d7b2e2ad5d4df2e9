"""Video decoding and encoding with OpenCV.

A "video" is either a container file that ``cv2.VideoCapture`` can decode (.avi, .mp4, ...) or a
*pre-extracted frame folder*: a directory of .jpg/.jpeg/.png/.bmp images, one per frame, ordered by
natural sort (``frame_1, frame_2, ..., frame_10``). All frames are returned as uint8 RGB arrays of
shape (T, H, W, 3).

Damaged files
-------------
* A missing path, a file OpenCV cannot open, or a file with zero decodable frames raises
  :class:`VideoReadError` (the message names the path).
* A *truncated* file whose decoding stops before the container's advertised frame count is not an
  error for :func:`read_video` as long as at least one frame decoded: the decoded frames are returned
  (and a warning is logged); pass ``strict=True`` to raise instead when fewer than
  ``TRUNCATION_TOLERANCE`` (90 %) of the advertised frames decode.
* :func:`read_frames` raises when a requested frame lies well past the end of what decodes
  (more than ``max(2, 10 %)`` frames short); a shortfall of a frame or two (containers whose frame
  count is slightly optimistic) is absorbed by repeating the last decoded frame.
* :func:`probe_video` is cheap by default (opens the file, decodes the first frame, trusts the
  container's frame count); ``verify=True`` decodes every frame and raises for truncated files.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTS",
    "TRUNCATION_TOLERANCE",
    "VideoInfo",
    "VideoReadError",
    "VideoWriteError",
    "is_frame_folder",
    "list_frame_files",
    "natural_key",
    "probe_video",
    "read_frames",
    "read_video",
    "write_frames",
    "write_video",
]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
# A decode that yields fewer than this fraction of the advertised frames counts as truncated.
TRUNCATION_TOLERANCE = 0.9

# FFmpeg when OpenCV has it (never the image-sequence backend, which would treat "%d" in a file name
# as a pattern); otherwise whatever OpenCV picks.
_BACKEND = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


class VideoReadError(RuntimeError):
    """A video (file or frame folder) could not be read; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


class VideoWriteError(RuntimeError):
    """A video could not be written; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float  # 0.0 when unknown (frame folders, or containers without a rate)
    height: int
    width: int


_NUM_RE = re.compile(r"(\d+)")


def natural_key(name: str | os.PathLike) -> tuple:
    """Sort key ordering embedded numbers numerically: ``frame_2`` < ``frame_10``."""
    parts = _NUM_RE.split(os.fspath(name))
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order (hidden files ignored)."""
    folder = Path(folder)
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    except OSError as exc:
        raise VideoReadError(folder, f"cannot list frame folder ({exc})") from exc
    names = [e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS]
    names.sort(key=natural_key)
    return [folder / n for n in names]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding at least one frame image."""
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        with os.scandir(path) as it:
            for e in it:
                if (
                    not e.name.startswith(".")
                    and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS
                    and e.is_file()
                ):
                    return True
    except OSError:
        return False
    return False


# ----------------------------------------------------------------------------------------- reading


def _open_capture(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if not path.is_file():
        raise VideoReadError(path, "not a file or frame folder")
    cap = cv2.VideoCapture(str(path), _BACKEND)
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(path, "OpenCV cannot open it (corrupt, truncated or unsupported codec)")
    return cap


def _reported_count(cap: cv2.VideoCapture) -> int:
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    if not np.isfinite(n) or n <= 0 or n > 1e8:
        return 0
    return int(round(n))


def _to_rgb(frame_bgr: np.ndarray) -> np.ndarray:
    if frame_bgr.ndim == 2:
        return cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2RGB)
    if frame_bgr.shape[2] == 4:
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def _imread_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoReadError(path, "cannot decode frame image")
    return _to_rgb(img)


def _stack(frames: list[np.ndarray], path: Path) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoReadError(path, f"frames have different sizes {sorted(shapes)}")
    return np.stack(frames, axis=0)


def read_video(path: str | os.PathLike, strict: bool = False) -> np.ndarray:
    """Decode a whole video (file or frame folder) to uint8 RGB of shape (T, H, W, 3).

    Raises :class:`VideoReadError` for a missing/unopenable file or when no frame decodes. A file
    that stops decoding early returns the frames that did decode (logged as a warning), unless
    ``strict`` is set and fewer than ``TRUNCATION_TOLERANCE`` of the advertised frames decoded.
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise VideoReadError(path, "frame folder holds no images")
        return _stack([_imread_rgb(f) for f in files], path)

    cap = _open_capture(path)
    try:
        reported = _reported_count(cap)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frames.append(_to_rgb(frame))
    finally:
        cap.release()
    if not frames:
        raise VideoReadError(path, "no decodable frames")
    if reported and len(frames) < TRUNCATION_TOLERANCE * reported:
        if strict:
            raise VideoReadError(path, f"truncated: decoded {len(frames)} of {reported} frames")
        log.warning("%s: decoded only %d of %d frames (truncated?)", path, len(frames), reported)
    return _stack(frames, path)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode only the frames at ``indices`` (any order, repeats allowed) -> (len(indices), H, W, 3).

    Container files are decoded sequentially with ``grab()`` up to the largest index and
    ``retrieve()`` only for the wanted frames (seeking is unreliable across codecs). Frame folders
    read just the wanted images. Raises :class:`VideoReadError` when the video cannot be read, an
    index is negative, or decoding ends more than ``max(2, 10 %)`` frames before the largest index;
    a smaller shortfall repeats the last decoded frame.
    """
    path = Path(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read_frames: no indices given")
    if idx.min() < 0:
        raise VideoReadError(path, f"negative frame index {int(idx.min())}")
    wanted = np.unique(idx)
    need = int(wanted[-1]) + 1

    got: dict[int, np.ndarray] = {}
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise VideoReadError(path, "frame folder holds no images")
        available = len(files)
        for i in wanted:
            if i < available:
                got[int(i)] = _imread_rgb(files[int(i)])
    else:
        cap = _open_capture(path)
        available = 0
        try:
            wanted_set = set(int(i) for i in wanted)
            for i in range(need):
                if not cap.grab():
                    break
                if i in wanted_set:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        break
                    got[i] = _to_rgb(frame)
                available = i + 1
            if available == 0:
                # Nothing decoded: distinguish "empty stream" from an index past the end.
                raise VideoReadError(path, "no decodable frames")
        finally:
            cap.release()

    if available < need:
        shortfall = need - available
        if shortfall > max(2, int(0.1 * need)) or available == 0:
            raise VideoReadError(
                path, f"decoding stopped after {available} frames but frame {need - 1} was requested"
            )
        # Fill the few missing trailing frames with the last decoded one.
        if path.is_dir():
            last = _imread_rgb(list_frame_files(path)[available - 1])
        else:
            last = got.get(available - 1)
            if last is None:
                frames_all = read_frames(path, [available - 1])
                last = frames_all[0]
        for i in wanted:
            if int(i) >= available:
                got[int(i)] = last
    return _stack([got[int(i)] for i in idx], path)


def probe_video(path: str | os.PathLike, verify: bool = False) -> VideoInfo:
    """Frame count, fps and frame size of a video file or frame folder.

    Default: open the file, decode the first frame (catches files whose header opens but whose
    stream is garbage) and trust ``CAP_PROP_FRAME_COUNT``; when that is missing or <= 0 the frames
    are counted by grabbing. ``verify=True`` always grabs every frame, reports the decoded count and
    raises :class:`VideoReadError` for a truncated file (< ``TRUNCATION_TOLERANCE`` of the advertised
    frames). Frame folders count images and read the first image (and, with ``verify``, all images).
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise VideoReadError(path, "frame folder holds no images")
        first = _imread_rgb(files[0])
        if verify:
            for f in files[1:]:
                img = _imread_rgb(f)
                if img.shape != first.shape:
                    raise VideoReadError(path, f"frame {f.name} has size {img.shape[:2]}, "
                                               f"expected {first.shape[:2]}")
        return VideoInfo(len(files), 0.0, int(first.shape[0]), int(first.shape[1]))

    cap = _open_capture(path)
    try:
        reported = _reported_count(cap)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps < 0 or fps > 1e4:
            fps = 0.0
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoReadError(path, "no decodable frames")
        h, w = frame.shape[:2]
        count = reported
        if verify or reported <= 0:
            count = 1
            while cap.grab():
                count += 1
            if verify and reported and count < TRUNCATION_TOLERANCE * reported:
                raise VideoReadError(path, f"truncated: decoded {count} of {reported} frames")
    finally:
        cap.release()
    return VideoInfo(int(count), fps, int(h), int(w))


# ----------------------------------------------------------------------------------------- writing


def _fourcc_for(path: Path) -> str:
    return "mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"


def _as_frames(frames_rgb) -> np.ndarray:
    try:
        import torch

        if isinstance(frames_rgb, torch.Tensor):
            frames_rgb = frames_rgb.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency of the package
        pass
    arr = np.asarray(frames_rgb)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"expected frames of shape (T, H, W, 3) with T >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {arr.dtype}")
    return arr


def write_video(path: str | os.PathLike, frames_rgb, fps: float = 30.0) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) to ``path``: MJPG for .avi (and anything else), mp4v for
    .mp4/.m4v/.mov. The parent folder must exist. Raises :class:`VideoWriteError` when OpenCV cannot
    open a writer (missing folder, unsupported container). Note: mp4v may round odd sizes to even."""
    path = Path(path)
    arr = _as_frames(frames_rgb)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not path.parent.is_dir():
        raise VideoWriteError(path, f"folder {path.parent} does not exist")
    h, w = arr.shape[1:3]
    fourcc = _fourcc_for(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(w), int(h)))
    if not writer.isOpened():
        writer.release()
        raise VideoWriteError(path, f"OpenCV VideoWriter would not open (codec {fourcc}, {w}x{h})")
    try:
        for frame in arr:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_frames(folder: str | os.PathLike, frames_rgb, ext: str = ".png",
                 pattern: str = "frame_{:05d}") -> list[Path]:
    """Write a pre-extracted frame folder (created if needed): one image per frame, numbered from 1."""
    folder = Path(folder)
    arr = _as_frames(frames_rgb)
    if not ext.startswith("."):
        ext = "." + ext
    if ext.lower() not in IMAGE_EXTS:
        raise ValueError(f"unsupported frame image extension {ext!r}; use one of {IMAGE_EXTS}")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, frame in enumerate(arr, start=1):
        p = folder / (pattern.format(i) + ext)
        if not cv2.imwrite(str(p), cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)):
            raise VideoWriteError(p, "cv2.imwrite failed")
        out.append(p)
    return out

