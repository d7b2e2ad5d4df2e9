"""Thread-safe ring buffer of preprocessed frames -> fixed-length clip windows for the inference thread.

No ROS imports: the node's image callback ``push``es frames, the inference thread blocks in ``take_ready``.

Semantics (documented choices):

* A window is ``clip_len`` frames taken every ``frame_stride`` frames, ending at the newest frame, so it spans
  ``(clip_len - 1) * frame_stride + 1`` consecutive buffered frames (the deque's ``maxlen``; push is O(1)).
* The first window after a (re)start is ready as soon as the buffer is full; after that one every ``hop`` new frames.
  Windows therefore always end at the same frame positions whatever the timing (``span - 1 + k * hop`` counted from
  the start of the segment), exactly as an offline pass with the same hop would produce them.
* A window is snapshotted when it becomes ready (a list of references to the pushed frames: callers must not mutate a
  frame after pushing it). Only the newest ready window is kept: if a new one becomes ready before the previous was
  taken (inference busy), the older is dropped and counted in ``windows_skipped_busy``; the consumer never works
  through a stale backlog.
* The buffer resets (buffered frames and any pending window dropped, the ``epoch`` incremented, the reset counted by
  reason) when a frame's stamp is earlier than the previous one (``time_jump_backwards``: bag loop, clock jump), when
  the gap to the previous frame exceeds ``max_frame_gap`` seconds (``frame_gap``; ``None`` disables the check), or
  when the frame shape differs from the previous one (``size_change``). Only one reason is recorded per reset, in that
  order of precedence. Equal stamps are accepted. The frame that triggered the reset starts the new segment. A window
  that was pending at a reset is counted in ``windows_discarded`` (it belongs to a segment that has ended).
* ``epoch`` (in each :class:`Window`) changes at every reset and ``clear()``, so the consumer can reset per-stream
  state such as temporal smoothing.
* Each reset's :class:`PushResult` carries ``detail``, a sentence with the numbers behind the reason (how far the
  stamp went back, the gap, the two shapes). :class:`ResetReporter` turns results into log lines: the first reset of
  each reason is logged with its detail, later ones of the same reason only counted (a looping bag would otherwise
  log every loop), and a reason not seen before is logged too.

Stamps: :func:`stamp_to_ns` converts a ``builtin_interfaces/Time`` (``sec``, ``nanosec``) to integer nanoseconds and
refuses what the message definition does not allow (``nanosec`` outside ``[0, 1e9)``, which would otherwise read
4e9 ns as +4 s, and a negative ``sec``) with :class:`BadStamp` (``cause = "bad_stamp"``), for the node to drop and
count the frame before it reaches the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FrameWindow", "PushResult", "Window", "RESET_REASONS", "BadStamp", "stamp_to_ns", "ResetReporter"]

RESET_TIME_JUMP_BACKWARDS = "time_jump_backwards"
RESET_FRAME_GAP = "frame_gap"
RESET_SIZE_CHANGE = "size_change"

#: Every reason a push can reset the buffer, in order of precedence.
RESET_REASONS: tuple[str, ...] = (RESET_TIME_JUMP_BACKWARDS, RESET_FRAME_GAP, RESET_SIZE_CHANGE)

_NS_PER_S = 1_000_000_000


class BadStamp(ValueError):
    """A header stamp the message definition does not allow; ``cause`` is the drop counter's key."""

    cause = "bad_stamp"


def stamp_to_ns(sec: Any, nanosec: Any) -> int:
    """``builtin_interfaces/Time`` fields -> integer nanoseconds since the epoch.

    Raises :class:`BadStamp` for ``nanosec`` outside ``[0, 1e9)`` or a negative ``sec`` (the message defines
    ``nanosec`` as the fraction of a second; taking 4e9 at face value moves the frame 4 s ahead).
    """
    sec, nanosec = int(sec), int(nanosec)
    if not 0 <= nanosec < _NS_PER_S:
        raise BadStamp(f"invalid stamp: nanosec {nanosec} outside [0, 1e9) (sec {sec})")
    if sec < 0:
        raise BadStamp(f"invalid stamp: negative sec {sec} (nanosec {nanosec})")
    return sec * _NS_PER_S + nanosec


@dataclass(frozen=True)
class PushResult:
    """Outcome of one ``push``."""

    reset: bool  #: the buffer was reset before this frame was added
    reason: str | None  #: one of RESET_REASONS when reset, else None
    window_ready: bool  #: this frame completed a window (now pending for take_ready)
    buffered: int  #: frames buffered after the push
    gap: float | None  #: stamp minus the previous frame's stamp (seconds), None for the first frame of a segment
    detail: str | None = None  #: when reset: the numbers behind the reason, for a log line


@dataclass(frozen=True)
class Window:
    """One clip, oldest frame first."""

    frames: list[Any]
    stamps: list[float]
    stamp: float  #: the newest frame's stamp
    frame_id: str  #: the newest frame's frame_id
    seq: int  #: 1, 2, ... for every window that became ready (skipped ones included) over the object's life
    epoch: int  #: segment number; changes at every reset / clear()
    skipped_before: int  #: ready windows dropped unconsumed since the previous take (inference was busy)
    ready_monotonic: float = field(compare=False)  #: time.monotonic() when the window became ready


class FrameWindow:
    """Buffers frames and hands the newest complete ``clip_len``-frame window to a consumer thread."""

    def __init__(self, clip_len: int, frame_stride: int = 1, hop: int = 4, max_frame_gap: float | None = 0.5):
        if int(clip_len) < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        if int(frame_stride) < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        if max_frame_gap is not None and not (float(max_frame_gap) > 0):
            raise ValueError(f"max_frame_gap must be > 0 seconds or None, got {max_frame_gap}")
        self.clip_len = int(clip_len)
        self.frame_stride = int(frame_stride)
        self.span = (self.clip_len - 1) * self.frame_stride + 1
        self.max_frame_gap = None if max_frame_gap is None else float(max_frame_gap)
        self._hop = self._check_hop(hop)

        self._cond = threading.Condition(threading.Lock())
        self._buf: deque[tuple[Any, float, str, tuple[int, ...]]] = deque(maxlen=self.span)
        self._since_ready: int | None = None  # frames since the last ready window; None: none yet this segment
        self._pending: Window | None = None
        self._skipped_since_take = 0
        self._seq = 0
        self._epoch = 0
        self._closed = False

        self._frames_in = 0
        self._windows_ready = 0
        self._windows_taken = 0
        self._windows_skipped_busy = 0
        self._windows_discarded = 0
        self._resets: dict[str, int] = {reason: 0 for reason in RESET_REASONS}

    @staticmethod
    def _check_hop(hop: int) -> int:
        if int(hop) < 1:
            raise ValueError(f"hop must be >= 1, got {hop}")
        return int(hop)

    # -- producer -----------------------------------------------------------------------------------------------------

    def push(self, frame: Any, stamp: float, frame_id: str = "") -> PushResult:
        """Add a frame (anything with ``.shape``) stamped ``stamp`` seconds. O(1), except O(clip_len) when it
        completes a window."""
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        shape = tuple(frame.shape)
        with self._cond:
            self._frames_in += 1
            reason, detail, gap = None, None, None
            if self._buf:
                _, last_stamp, _, last_shape = self._buf[-1]
                gap = stamp - last_stamp
                reason, detail = self._reset_reason(gap, last_stamp, stamp, last_shape, shape)
            if reason is not None:
                self._resets[reason] += 1
                self._restart_locked()
                gap = None

            self._buf.append((frame, stamp, str(frame_id), shape))
            ready = False
            if len(self._buf) == self.span:
                if self._since_ready is None or self._since_ready + 1 >= self._hop:
                    self._make_ready_locked()
                    ready = True
                else:
                    self._since_ready += 1
            return PushResult(
                reset=reason is not None, reason=reason, window_ready=ready, buffered=len(self._buf), gap=gap,
                detail=detail,
            )

    def _reset_reason(self, gap: float, last_stamp: float, stamp: float, last_shape: tuple[int, ...],
                      shape: tuple[int, ...]) -> tuple[str | None, str | None]:
        """(reason, detail) when this frame must restart the window, in RESET_REASONS' order of precedence."""
        if gap < 0:
            return RESET_TIME_JUMP_BACKWARDS, f"stamp went back {-gap:.3f} s ({last_stamp:.3f} -> {stamp:.3f})"
        if self.max_frame_gap is not None and gap > self.max_frame_gap:
            return RESET_FRAME_GAP, f"{gap:.3f} s between frames, over max_frame_gap {self.max_frame_gap:g} s"
        if shape != last_shape:
            return RESET_SIZE_CHANGE, f"frame shape changed from {last_shape} to {shape}"
        return None, None

    def _restart_locked(self) -> None:
        self._buf.clear()
        self._since_ready = None
        if self._pending is not None:
            self._pending = None
            self._windows_discarded += 1
        self._epoch += 1

    def _make_ready_locked(self) -> None:
        self._since_ready = 0
        picked = list(self._buf)[:: self.frame_stride]  # len(buf) == span, so this ends at the newest frame
        self._seq += 1
        self._windows_ready += 1
        if self._pending is not None:
            self._windows_skipped_busy += 1
            self._skipped_since_take += 1
        newest = picked[-1]
        self._pending = Window(
            frames=[entry[0] for entry in picked],
            stamps=[entry[1] for entry in picked],
            stamp=newest[1],
            frame_id=newest[2],
            seq=self._seq,
            epoch=self._epoch,
            skipped_before=self._skipped_since_take,
            ready_monotonic=time.monotonic(),
        )
        self._cond.notify_all()

    # -- consumer -----------------------------------------------------------------------------------------------------

    def take_ready(self, timeout: float | None = None) -> Window | None:
        """Wait until a window is ready and return the newest one, marking it consumed.

        Returns None on timeout or once ``close()`` was called. ``timeout=None`` waits indefinitely, ``0`` polls.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._closed, timeout)
            if self._closed or self._pending is None:
                return None
            window = self._pending
            self._pending = None
            self._skipped_since_take = 0
            self._windows_taken += 1
            return window

    def close(self) -> None:
        """Wake every waiter; from now on take_ready returns None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    # -- control ------------------------------------------------------------------------------------------------------

    def set_hop(self, hop: int) -> None:
        """Change the cadence: the next window is ready once ``hop`` frames have passed since the last one (at once on
        the next frame if that many already have)."""
        hop = self._check_hop(hop)
        with self._cond:
            self._hop = hop

    @property
    def hop(self) -> int:
        with self._cond:
            return self._hop

    def clear(self) -> None:
        """Drop buffered frames and any pending window (counted in ``windows_discarded``; not counted as a reset)."""
        with self._cond:
            self._restart_locked()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters: frames_in, windows_ready, windows_taken, windows_skipped_busy,
        windows_discarded, resets (dict by reason), resets_total, plus the current buffered / pending / epoch / hop."""
        with self._cond:
            return {
                "frames_in": self._frames_in,
                "windows_ready": self._windows_ready,
                "windows_taken": self._windows_taken,
                "windows_skipped_busy": self._windows_skipped_busy,
                "windows_discarded": self._windows_discarded,
                "resets": dict(self._resets),
                "resets_total": sum(self._resets.values()),
                "buffered": len(self._buf),
                "pending": self._pending is not None,
                "epoch": self._epoch,
                "hop": self._hop,
            }

    def __len__(self) -> int:
        with self._cond:
            return len(self._buf)


class ResetReporter:
    """Log lines for window resets: the first of each reason with its detail, later ones of that reason only
    counted (in :meth:`FrameWindow.stats`), a new reason logged again. Not thread-safe: call from the thread that
    pushes (the node's image callback)."""

    def __init__(self):
        self._logged: dict[str, int] = {}

    def message(self, result: PushResult) -> str | None:
        """The line to log for this push, or None (no reset, or a reason already logged)."""
        if not result.reset or result.reason is None:
            return None
        if result.reason in self._logged:
            self._logged[result.reason] += 1
            return None
        self._logged[result.reason] = 1
        return (f"frame window reset ({result.reason}): {result.detail or 'no detail'}; further "
                f"'{result.reason}' resets are counted in /diagnostics (window_resets_{result.reason})")

    def reset(self) -> None:
        """Forget what was logged (e.g. at a new activation), so the next reset of each reason is logged again."""
        self._logged.clear()
