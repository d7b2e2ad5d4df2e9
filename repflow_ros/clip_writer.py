"""Labelled clips written atomically into a ``folders`` dataset, and its index CSV (no ROS import).

Used by :mod:`repflow_ros.recorder_node`; kept free of rclpy so it is tested and reused without a ROS graph.

Layout written (what ``data.layout=folders`` of :mod:`repflow_core.train` reads directly)::

    dataset_dir/<label>/<label>_<first stamp, UTC>_<n>.avi      one clip, MJPG, the camera's native size
    dataset_dir/index.csv                                        path,label,first_stamp,last_stamp,frames,frame_id,...

Atomicity: a clip is streamed into a hidden sibling ``.<name>.part.avi`` (hidden, so the folders layout and frame-folder
scans skip it; ``.avi`` at the end only because OpenCV picks the container from the extension), then closed, fsynced
and renamed to its final name. A recorder killed at any moment (SIGKILL, power loss) therefore leaves either a
complete clip or a hidden temporary file that no loader reads; the next recorder configured on the folder removes such
stale temporaries (:func:`remove_stale_temps`). The clip is renamed before its index row is written, so the index never
names a clip that does not exist (a kill between the two leaves a clip without a row; the folders layout still reads
it). The index is rewritten whole (temp + rename, :mod:`repflow_core.atomic_io`), never appended in place, so it is
never half a row.

:class:`WriterThread` is the recorder's encoding thread: the node's image callback only checks a frame and queues it
(a bounded queue), the thread decodes and encodes it, so the executor that answers ``~/stop`` and runs the clip timeout
is never busy encoding (and the recorder can spin one executor thread, see :mod:`repflow_ros.recorder_node`).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# _fsync_dir: the one copy of "make a rename durable", shared with every atomic writer of the project.
from repflow_core.atomic_io import _fsync_dir, atomic_write_text, default_file_mode
from repflow_core.data.rosbag import BagError, check_label

__all__ = ["INDEX_NAME", "INDEX_COLUMNS", "TEMP_PREFIX", "TEMP_SUFFIX", "ClipWriter", "ClipResult", "ClipTooLarge",
           "LabelError", "check_clip_label", "append_index", "read_index", "dataset_bytes", "free_bytes",
           "remove_stale_temps", "clip_stem", "WriterThread"]

INDEX_NAME = "index.csv"
#: Columns of the index; ``path,label`` first, so the index is also a ``data.layout=csv`` list (relative paths).
INDEX_COLUMNS = ("path", "label", "first_stamp", "last_stamp", "frames", "frame_id", "width", "height", "fps")
TEMP_PREFIX = "."  #: hidden: skipped by repflow_core.data.layouts (and by list_frame_files)
TEMP_SUFFIX = ".part.avi"


class ClipTooLarge(OSError):
    """A finished clip that does not fit under ``max_bytes`` (it was removed)."""


class LabelError(ValueError):
    """A label that cannot name a class folder; the message says why."""


def check_clip_label(label: object) -> str:
    """``label`` when it is a safe class-folder name, else :class:`LabelError` with the reason (the rules of
    :func:`repflow_core.data.rosbag.check_label`: no ``/``, no leading dot, not empty, not train/test/val...)."""
    try:
        return check_label(label, where="label")
    except BagError as exc:
        raise LabelError(str(exc)) from None


def clip_stem(label: str, first_stamp_ns: int, n: int) -> str:
    """``<label>_<YYYYmmdd-HHMMSS.mmm>_<n>`` from the first frame's stamp (UTC): sortable, unique per recorder run."""
    sec, rem = divmod(int(first_stamp_ns), 1_000_000_000)
    return f"{label}_{time.strftime('%Y%m%d-%H%M%S', time.gmtime(sec))}.{rem // 1_000_000:03d}_{n}"


def dataset_bytes(root: Path) -> int:
    """Bytes of every regular file under ``root`` (temporaries included: they take disk space too)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def free_bytes(root: Path) -> int:
    """Bytes available to this (unprivileged) user on the filesystem holding ``root``."""
    return int(shutil.disk_usage(root).free)


def remove_stale_temps(root: Path) -> list[Path]:
    """Remove clip temporaries left by a recorder that was killed (``<label>/.*.part.avi``); returns them."""
    removed = []
    if not root.is_dir():
        return removed
    for sub in root.iterdir():
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        for path in sub.iterdir():
            if path.name.startswith(TEMP_PREFIX) and path.name.endswith(TEMP_SUFFIX) and path.is_file():
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


@dataclass(frozen=True)
class ClipResult:
    """A committed clip: ``path`` relative to the dataset folder in ``index_row``."""

    path: Path
    label: str
    first_stamp_ns: int
    last_stamp_ns: int
    frames: int
    frame_id: str
    width: int
    height: int
    fps: float
    bytes: int

    def index_row(self, root: Path) -> dict[str, str]:
        return {"path": self.path.relative_to(root).as_posix(), "label": self.label,
                "first_stamp": _seconds(self.first_stamp_ns), "last_stamp": _seconds(self.last_stamp_ns),
                "frames": str(self.frames), "frame_id": self.frame_id, "width": str(self.width),
                "height": str(self.height), "fps": f"{self.fps:.3f}"}


class ClipWriter:
    """Streams RGB frames of one clip into a hidden temporary AVI (MJPG) and commits it by rename.

    The writer opens on the first frame (its size is the clip's size: the camera's native size, never resized);
    frames of another size are refused with ValueError (a VideoWriter cannot change size)."""

    def __init__(self, root: Path, label: str, clip_number: int, fps: float):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.root, self.label, self.number, self.fps = Path(root), check_clip_label(label), int(clip_number), fps
        self.folder = self.root / self.label
        self.frames = 0
        self.first_stamp_ns = self.last_stamp_ns = 0
        self.frame_id = ""
        self.size: tuple[int, int] | None = None  # (height, width)
        self.tmp_path: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._stem = ""

    def add(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        """Append one uint8 RGB (H, W, 3) frame."""
        if self._writer is None:
            self._open(rgb, stamp_ns, frame_id)
        elif tuple(rgb.shape[:2]) != self.size:
            raise ValueError(f"frame size {rgb.shape[1]}x{rgb.shape[0]} differs from the clip's "
                             f"{self.size[1]}x{self.size[0]}")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1
        self.last_stamp_ns = int(stamp_ns)

    def _open(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.first_stamp_ns, self.frame_id, self.size = int(stamp_ns), str(frame_id), tuple(rgb.shape[:2])
        self._stem = clip_stem(self.label, stamp_ns, self.number)
        n = 0
        while (self.folder / f"{self._stem}.avi").exists():  # a second recorder on the same folder, same stamp
            n += 1
            self._stem = f"{clip_stem(self.label, stamp_ns, self.number)}-{n}"
        self.tmp_path = self.folder / f"{TEMP_PREFIX}{self._stem}{TEMP_SUFFIX}"
        height, width = self.size
        # OpenCV's own MJPEG writer writes through in 32 KiB blocks, so the file size tracks the clip (max_bytes is
        # checked while recording); FFmpeg's muxer buffers far more. Either writes the same readable AVI.
        fourcc, size = cv2.VideoWriter_fourcc(*"MJPG"), (int(width), int(height))
        writer = cv2.VideoWriter(str(self.tmp_path), cv2.CAP_OPENCV_MJPEG, fourcc, float(self.fps), size)
        if not writer.isOpened():
            writer.release()
            writer = cv2.VideoWriter(str(self.tmp_path), fourcc, float(self.fps), size)
        if not writer.isOpened():
            writer.release()
            raise OSError(f"OpenCV cannot open a video writer on {self.tmp_path} (MJPG, {width}x{height})")
        self._writer = writer

    def bytes_so_far(self) -> int:
        try:
            return os.stat(self.tmp_path).st_size if self.tmp_path is not None else 0
        except OSError:
            return 0

    def commit(self, max_bytes: int | None = None) -> ClipResult:
        """Close, fsync, give the file the ordinary mode and rename it to its final name. ``max_bytes``: a closed
        file larger than this is removed instead (:class:`ClipTooLarge`)."""
        if self._writer is None or self.frames == 0:
            raise ValueError("no frames to write")
        self._writer.release()
        self._writer = None
        size = self.bytes_so_far()
        if max_bytes is not None and size > max_bytes:
            self.discard()
            raise ClipTooLarge(f"max_bytes reached: the clip takes {size} bytes, {max_bytes} were left")
        final = self.folder / f"{self._stem}.avi"
        fd = os.open(self.tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self.tmp_path, default_file_mode())
        os.replace(self.tmp_path, final)
        _fsync_dir(self.folder)
        size = os.stat(final).st_size
        return ClipResult(final, self.label, self.first_stamp_ns, self.last_stamp_ns, self.frames, self.frame_id,
                          self.size[1], self.size[0], self.fps, size)

    def discard(self) -> None:
        """Drop the clip: close the writer and remove the temporary file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.tmp_path is not None:
            try:
                self.tmp_path.unlink()
            except OSError:
                pass
            self._remove_folder_if_empty()

    def _remove_folder_if_empty(self) -> None:
        """A class folder without a clip makes the dataset unloadable (``train`` refuses an empty class), so the
        folder this clip's first frame created goes with the clip. ``rmdir`` removes only an empty folder: the
        clips of earlier recordings, or another recorder's temporary file, keep it."""
        try:
            self.folder.rmdir()
        except OSError:
            pass


def read_index(root: Path) -> list[dict[str, str]]:
    """The rows of ``root/index.csv`` (empty when it does not exist)."""
    path = Path(root) / INDEX_NAME
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_index(root: Path, row: dict[str, str]) -> Path:
    """Add one row to ``root/index.csv``, rewriting the whole file atomically (temp + rename): a kill leaves the old
    index or the new one, never a half row. Rows of an index with other columns are kept (unknown columns dropped)."""
    rows = read_index(root) + [row]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(INDEX_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in INDEX_COLUMNS})
    return atomic_write_text(Path(root) / INDEX_NAME, out.getvalue())


def _seconds(stamp_ns: int) -> str:
    """Exact decimal seconds of a stamp (a float would round nanoseconds away at epoch magnitudes)."""
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return f"{sec}.{nsec:09d}"


class WriterThread:
    """One thread running queued jobs in order: frames (bounded: :meth:`offer` refuses when full) and control jobs
    (commit, discard: :meth:`put`, never refused, so a clip's end is never lost behind a full queue).

    Why one thread and FIFO order: a clip's frames, then its commit, reach its :class:`ClipWriter` in arrival order
    from one thread, so the writer needs no lock of its own. ``on_error(exc)`` is told of a job that raised (the
    thread carries on with the next job). :meth:`stop` runs what is already queued, then ends; it waits at most
    ``timeout`` s for that (the thread is a daemon: a stuck encoder never blocks a process exit)."""

    def __init__(self, name: str, max_frames: int, max_bytes: int, on_error: Callable[[BaseException], None]):
        if max_frames < 1 or max_bytes < 1:
            raise ValueError(f"queue bounds must be >= 1, got max_frames={max_frames}, max_bytes={max_bytes}")
        self.max_frames, self.max_bytes, self._on_error = int(max_frames), int(max_bytes), on_error
        self._jobs: deque = deque()  # (job, frame bytes or None for a control job)
        self._frames = self._bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queued_frames(self) -> int:
        return self._frames

    def offer(self, job: Callable[[], None], nbytes: int) -> bool:
        """Queue a frame job of ``nbytes``; False (nothing queued) when the queue holds ``max_frames`` frames or the
        frame would take it past ``max_bytes`` (a frame is always accepted into an empty queue), or when stopping."""
        with self._cond:
            if self._stopping or self._frames >= self.max_frames or \
                    (self._frames and self._bytes + nbytes > self.max_bytes):
                return False
            self._jobs.append((job, int(nbytes)))
            self._frames += 1
            self._bytes += int(nbytes)
            self._cond.notify()
            return True

    def put(self, job: Callable[[], None]) -> bool:
        """Queue a control job after everything queued so far; False when the thread is stopping."""
        with self._cond:
            if self._stopping:
                return False
            self._jobs.append((job, None))
            self._cond.notify()
            return True

    def stop(self, timeout: float) -> bool:
        """Finish what is queued, then end; True when the thread ended within ``timeout`` s."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                job, nbytes = self._jobs.popleft()
                if nbytes is not None:
                    self._frames -= 1
                    self._bytes -= nbytes
            try:
                job()
            except Exception as exc:  # one bad job must not end the thread: the next clip still records
                try:
                    self._on_error(exc)
                except Exception:
                    pass
