"""The recognizer node's counters and its ``/diagnostics`` status.

:class:`NodeStats` is thread-safe (the image callback, the inference thread and the 1 Hz timer all touch it) and has
no ROS import; :func:`diagnostic_status` turns a snapshot into the key/values, level and message, and
:func:`diagnostic_array` into a diagnostic_msgs/DiagnosticArray (the only ROS part, imported lazily).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from .prediction import percentile

__all__ = ["STATS_HISTORY", "NodeStats", "diagnostic_status", "diagnostic_array"]

STATS_HISTORY = 200  #: inference / latency samples kept for the mean and percentiles


class NodeStats:
    """Counters of frames and windows since configure, and the recent inference times and latencies."""

    def __init__(self, drop_causes: Sequence[str]):
        self._lock = threading.Lock()
        self.drop_causes = tuple(drop_causes)
        self.frames_in = 0
        self.frames_ignored_paused = 0
        self.frames_no_stamp = 0
        self.dropped: dict[str, int] = {cause: 0 for cause in self.drop_causes}
        self.windows_inferred = 0
        self.inference_errors = 0
        self._infer_ms: deque = deque(maxlen=STATS_HISTORY)
        self._latency_ms: deque = deque(maxlen=STATS_HISTORY)
        self._prev: tuple[float, int, int, int, int] | None = None  # the previous rate() sample

    def count(self, name: str) -> int:
        """Increment ``frames_in``, ``frames_ignored_paused``, ``frames_no_stamp`` or ``inference_errors``;
        returns the new value."""
        with self._lock:
            value = getattr(self, name) + 1
            setattr(self, name, value)
            return value

    def drop(self, cause: str) -> tuple[str, bool]:
        """Count a dropped frame (unknown causes count as ``other``); returns (cause, first drop of that cause)."""
        with self._lock:
            cause = cause if cause in self.dropped else "other"
            self.dropped[cause] = self.dropped.get(cause, 0) + 1
            return cause, self.dropped[cause] == 1

    def inferred(self, infer_ms: float, latency_ms: float) -> None:
        with self._lock:
            self.windows_inferred += 1
            self._infer_ms.append(infer_ms)
            self._latency_ms.append(latency_ms)

    def snapshot(self) -> dict[str, Any]:
        """Every counter plus the rates and new drops / errors since the previous snapshot (the 1 Hz period):
        ``input_rate_hz``, ``windows_per_s``, ``new_drops``, ``new_errors`` and ``first`` (no previous sample)."""
        now = time.monotonic()
        with self._lock:
            dropped_total = sum(self.dropped.values())
            snap = {
                "frames_in": self.frames_in, "frames_ignored_paused": self.frames_ignored_paused,
                "frames_no_stamp": self.frames_no_stamp, "dropped": dict(self.dropped),
                "windows_inferred": self.windows_inferred, "inference_errors": self.inference_errors,
                "infer_ms": list(self._infer_ms), "latency_ms": list(self._latency_ms),
            }
            prev, self._prev = self._prev, (now, self.frames_in, self.windows_inferred, dropped_total,
                                            self.inference_errors)
        dt = now - prev[0] if prev is not None else 0.0
        if dt <= 0:
            snap.update(input_rate_hz=0.0, windows_per_s=0.0, new_drops=dropped_total,
                        new_errors=snap["inference_errors"])
        else:
            snap.update(input_rate_hz=(snap["frames_in"] - prev[1]) / dt,
                        windows_per_s=(snap["windows_inferred"] - prev[2]) / dt,
                        new_drops=dropped_total - prev[3], new_errors=snap["inference_errors"] - prev[4])
        snap["first"] = prev is None
        return snap


def diagnostic_status(snap: dict[str, Any], window_stats: dict[str, Any] | None, reset_reasons: Sequence[str],
                      info: dict[str, str], state: str, receiving_expected: bool) -> tuple[bool, str, dict[str, str]]:
    """(warn, message, key/values) of one diagnostics period.

    ``info`` holds the descriptive keys (device, precision, model, clip_len, frame_stride, hop, image_topic, decoder);
    ``state`` is active / paused / the lifecycle state; ``receiving_expected`` says whether no input is a problem
    (active and enabled)."""
    infer_ms, latency = snap["infer_ms"], snap["latency_ms"]
    kv = {
        "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
        "windows_per_s": f"{snap['windows_per_s']:.2f}",
        "inference_ms_mean": f"{(sum(infer_ms) / len(infer_ms)) if infer_ms else 0.0:.2f}",
        "inference_ms_p95": f"{percentile(infer_ms, 95):.2f}",
        "latency_ms_p50": f"{percentile(latency, 50):.2f}",
        "latency_ms_p95": f"{percentile(latency, 95):.2f}",
        "frames_in": str(snap["frames_in"]),
    }
    for cause, count in snap["dropped"].items():
        kv[f"frames_dropped_{cause}"] = str(count)
    kv["frames_no_stamp"] = str(snap["frames_no_stamp"])
    kv["frames_ignored_paused"] = str(snap["frames_ignored_paused"])
    kv["windows_inferred"] = str(snap["windows_inferred"])
    kv["windows_skipped_busy"] = str(window_stats["windows_skipped_busy"] if window_stats else 0)
    for reason in reset_reasons:
        kv[f"window_resets_{reason}"] = str(window_stats["resets"].get(reason, 0) if window_stats else 0)
    kv["inference_errors"] = str(snap["inference_errors"])
    for key in ("device", "precision", "model", "clip_len", "frame_stride", "hop", "image_topic", "decoder"):
        kv[key] = str(info.get(key, ""))
    kv["state"] = state

    problems: list[str] = []
    if snap["new_drops"] > 0:
        problems.append(f"dropping frames ({', '.join(c for c, n in snap['dropped'].items() if n)})")
    if receiving_expected and not snap["first"] and snap["input_rate_hz"] == 0.0:
        problems.append(f"no images on {info.get('image_topic', '')}")
    if snap["new_errors"] > 0:
        problems.append("inference errors")
    message = "; ".join(problems) if problems else f"{state}, {snap['input_rate_hz']:.1f} fps in"
    return bool(problems), message, kv


def diagnostic_array(name: str, hardware_id: str, warn: bool, message: str, kv: dict[str, str], stamp):
    """A diagnostic_msgs/DiagnosticArray with one status (OK or WARN)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = hardware_id
    status.level = DiagnosticStatus.WARN if warn else DiagnosticStatus.OK
    status.message = message
    status.values = [KeyValue(key=k, value=v) for k, v in kv.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
