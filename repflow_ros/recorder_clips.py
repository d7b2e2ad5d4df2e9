"""The recorder's clips on its writer thread: frames decoded and encoded, a clip committed or discarded (no rclpy).

Part of :class:`repflow_ros.recorder_node.RecorderNode` (a mixin, so the node module stays about the ROS interface);
see that module's docstring for the threads. Ownership: a clip's :class:`~repflow_ros.clip_writer.ClipWriter` is used
by the writer thread only (frames, commit, discard arrive there in order), except that a transition which cannot wait
for the thread unlinks the temporary file (safe while the writer still holds it open). Its end is decided once, under
the node's lock (:meth:`ClipEnding._claim`), by whichever comes first: ``~/stop``, the timeout, a deactivate or
cleanup, the exit, a frame past ``first + seconds``, a disk or size problem.
"""

from __future__ import annotations

import threading
import time
import traceback

from .clip_writer import ClipWriter, append_index, dataset_bytes
from .image_decoding import ImageDecodeError

__all__ = ["ABORT_WAIT_S", "ClipEnding", "RecordingClip"]

ABORT_WAIT_S = 2.0  #: longest a transition or the exit waits for the writer to drop a discarded clip
_FREE_CHECK_EVERY = 15  #: frames between free-space checks while recording (statvfs is cheap, not free)


class RecordingClip:
    """The clip being recorded: its writer (used by the writer thread only), when it must end and how it ended."""

    def __init__(self, writer: ClipWriter, seconds: float):
        self.writer, self.seconds = writer, seconds
        self.started_mono = self.last_frame_mono = time.monotonic()  # last_frame_mono: a frame queued for it
        self.deadline_ns: int | None = None  # first stamp + seconds, set by the first decoded frame (writer thread)
        self.queued = self.processed = 0  # frames queued for it (executor), frames the writer thread has taken
        self.closed = False  # its end is decided (under the lock): no more frames are queued for it
        self.discarded = False  # ... and it is a discard: its queued frames are skipped (a commit writes them first)
        self.done = threading.Event()  # set once the commit or discard has happened on the writer thread
        self.result = None  # the ClipResult when written
        self.error = ""  # why it was not written


class ClipEnding:
    """The node's clip work (mixed into the recorder node). Uses the node's ``_lock`` (an RLock), ``_clip``,
    ``_writer`` (the :class:`~repflow_ros.clip_writer.WriterThread`), ``_counts``, ``_cfg``, ``_dataset_bytes``,
    ``_last_clip``, ``_drop(cause, message)``, ``_space_problem(bytes)``, ``_event(name, **fields)`` and
    ``get_logger()``."""

    def _write_frame(self, clip: RecordingClip, msg, decode, stamp_ns: int) -> None:
        """Writer thread: decode one queued frame and add it to its clip, or end the clip when the frame's stamp is
        past ``first + seconds`` (frames of a clip whose end is decided are skipped)."""
        try:
            if clip.discarded or clip.done.is_set():  # discarded, or committed by a frame past its end
                return
            try:
                rgb = decode(msg)
            except ImageDecodeError as exc:
                return self._drop(exc.cause, str(exc))
            except Exception as exc:
                return self._drop("other", f"decoder error: {exc}")
            writer = clip.writer
            if clip.deadline_ns is None:
                clip.deadline_ns = stamp_ns + int(round(clip.seconds * 1e9))
            elif stamp_ns >= clip.deadline_ns:
                if self._claim(clip):
                    self._finish_clip(clip, "complete")
                return
            elif stamp_ns < writer.last_stamp_ns:
                return self._drop("stamp_backwards", f"stamp {stamp_ns} ns is before the clip's previous frame")
            try:
                writer.add(rgb, stamp_ns, msg.header.frame_id)
            except ValueError as exc:
                return self._drop("size_change", str(exc))
            except OSError as exc:
                return self._discard_now(clip, str(exc))
            with self._lock:
                self._counts["frames_recorded"] += 1
            check_free = writer.frames % _FREE_CHECK_EVERY == 0
            problem = self._space_problem(writer.bytes_so_far()) \
                if (check_free or self._cfg.get("max_bytes")) else None
            if problem:
                self._discard_now(clip, problem)
        finally:
            clip.processed += 1

    def _claim(self, clip: RecordingClip, discard: bool = False) -> bool:
        """Decide the end of ``clip`` (once: False when a commit or discard already claimed it); it stops being the
        clip being recorded. A discard's frames still queued are skipped; a commit's are written first (the commit
        job is queued behind them)."""
        with self._lock:
            if clip.closed:
                return False
            clip.closed, clip.discarded = True, discard
            if self._clip is clip:
                self._clip = None
            return True

    def _commit_clip(self, why: str) -> RecordingClip | None:
        """Executor thread: end the current clip; the writer thread commits it after its queued frames (wait on
        ``clip.done`` for the outcome)."""
        with self._lock:
            clip, writer = self._clip, self._writer
            if clip is None or not self._claim(clip):
                return None
        if writer is None or not writer.put(lambda: self._finish_clip(clip, why)):
            self._finish_clip(clip, why)  # no writer thread (cannot happen while active): nothing else uses the clip
        return clip

    def _finish_clip(self, clip: RecordingClip, why: str) -> None:
        """Writer thread: commit ``clip`` (close, fsync, rename), index it and tell ~/events; discard it with the
        reason when that fails or no frame could be written."""
        try:
            if clip.writer.frames == 0:
                return self._discard_now(clip, "no frame of the clip could be decoded", claimed=True)
            try:
                limit = self._cfg.get("max_bytes", 0)
                result = clip.writer.commit(max(limit - self._dataset_bytes, 0) if limit else None)
                append_index(clip.writer.root, result.index_row(clip.writer.root))
            except Exception as exc:
                clip.writer.discard()
                clip.error = str(exc)
                with self._lock:
                    self._counts["clips_aborted"] += 1
                self.get_logger().error(f"clip {clip.writer.number} could not be written: {exc}")
                self._event("aborted", clip=clip.writer.number, label=clip.writer.label, reason=str(exc))
                return
            with self._lock:
                self._dataset_bytes = dataset_bytes(clip.writer.root)
                self._counts["clips_written"] += 1
                self._last_clip = str(result.path)
            clip.result = result
            self.get_logger().info(f"clip {clip.writer.number} ({why}): wrote {result.path}, {result.frames} frames "
                                   f"{result.width}x{result.height}")
            self._event("written", clip=clip.writer.number, label=result.label, path=str(result.path),
                        frames=result.frames, first_stamp_ns=result.first_stamp_ns,
                        last_stamp_ns=result.last_stamp_ns, frame_id=result.frame_id, bytes=result.bytes, why=why)
        finally:
            clip.done.set()

    def _discard_now(self, clip: RecordingClip, reason: str, claimed: bool = False) -> None:
        """Writer thread: drop ``clip`` (a disk or size problem found while writing it) and tell ~/events."""
        if not claimed and not self._claim(clip, discard=True):
            return
        clip.writer.discard()
        clip.error = reason
        with self._lock:
            self._counts["clips_aborted"] += 1
        self.get_logger().warning(f"clip {clip.writer.number} ('{clip.writer.label}') discarded: {reason}")
        self._event("aborted", clip=clip.writer.number, label=clip.writer.label, reason=reason)
        clip.done.set()

    def _abort_clip(self, reason: str, publish: bool = True, wait: bool = False) -> None:
        """Executor thread (or exit): discard the current clip now. Its queued frames are skipped and the writer thread
        removes the temporary file. ``wait`` (transitions, exit; never while holding the lock, which the writer
        may need first): wait for that at most ABORT_WAIT_S, then unlink the file from here (the writer may still
        hold it open: unlinking is safe, closing it from two threads is not)."""
        with self._lock:
            clip, writer = self._clip, self._writer
            if clip is None or not self._claim(clip, discard=True):
                return
            clip.error = reason
            self._counts["clips_aborted"] += 1
        if writer is None or not writer.put(lambda: self._drop_file(clip)):
            if writer is None:  # no thread: nothing else touches this writer
                self._drop_file(clip)
            wait = True
        if publish:
            self.get_logger().warning(f"clip {clip.writer.number} ('{clip.writer.label}') discarded: {reason}")
            self._event("aborted", clip=clip.writer.number, label=clip.writer.label, reason=reason)
        if wait and not clip.done.wait(ABORT_WAIT_S) and clip.writer.tmp_path is not None:
            try:
                clip.writer.tmp_path.unlink()
            except OSError:
                pass

    @staticmethod
    def _drop_file(clip: RecordingClip) -> None:
        """Writer thread: close and remove a discarded clip's temporary file."""
        try:
            clip.writer.discard()
        finally:
            clip.done.set()

    def _writer_failed(self, exc: BaseException) -> None:
        """A writer-thread job raised (a bug, not bad input: that is dropped and counted): say so, keep going."""
        self.get_logger().error(f"clip writer: {exc!r}\n{''.join(traceback.format_exception(exc))}")
