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

__all__ = ["STATS_HISTORY", "STAMP_HISTORY", "SLOW_INFERENCE_S", "QOS_LOSS_WARN", "NodeStats", "stamp_rates",
           "diagnostic_status", "diagnostic_array"]

STATS_HISTORY = 200  #: inference / latency samples kept for the mean and percentiles
STAMP_HISTORY = 120  #: spacings between the stamps of consecutive received frames kept for the expected rate
MAX_STAMP_SPACING_S = 5.0  #: longer spacings are pauses of the camera, not its frame period (ignored)
SLOW_INFERENCE_S = 5.0  #: one window in inference for longer than this is a warning in /diagnostics
QOS_LOSS_WARN = 0.2  #: warn when more than this fraction of the frames the stamps announce never arrives


def stamp_rates(spacings: Sequence[float]) -> tuple[float, float]:
    """(expected, received) frame rates in Hz from the spacings (s) between the stamps of consecutive received frames.

    A camera stamps its frames at its frame period; a frame lost in transport (best-effort QoS dropping fragments
    of a large frame, a full queue) shows up as a spacing of two or more periods. The period is taken as the 10th
    percentile of the spacings (robust to jitter and to the lost frames themselves), the received rate as the
    number of spacings over their sum. Both 0.0 with fewer than 5 spacings."""
    values = sorted(x for x in spacings if 0.0 < x <= MAX_STAMP_SPACING_S)
    if len(values) < 5:
        return 0.0, 0.0
    period = values[len(values) // 10]
    return 1.0 / period, len(values) / sum(values)


class NodeStats:
    """Counters of frames and windows since configure, and the recent inference times and latencies."""

    def __init__(self, drop_causes: Sequence[str]):
        self._lock = threading.Lock()
        self.drop_causes = tuple(drop_causes)
        self.frames_in = 0
        self.frames_ignored_paused = 0
        self.frames_no_stamp = 0
        self.frames_received = 0  #: every message the intake callback saw while configured, paused ones included
        self.dropped: dict[str, int] = {cause: 0 for cause in self.drop_causes}
        self.windows_inferred = 0
        self.inference_errors = 0
        self.inference_nonfinite = 0
        self._infer_started: float | None = None  # time.monotonic() when the window now in inference started
        self._last_stamp: float | None = None
        self._spacings: deque = deque(maxlen=STAMP_HISTORY)
        self._infer_ms: deque = deque(maxlen=STATS_HISTORY)
        self._latency_ms: deque = deque(maxlen=STATS_HISTORY)
        self._prev: tuple[float, ...] | None = None  # the previous snapshot's time and counters

    def count(self, name: str) -> int:
        """Increment ``frames_received``, ``frames_in``, ``frames_ignored_paused``, ``frames_no_stamp``,
        ``inference_errors`` or ``inference_nonfinite``; returns the new value."""
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

    def stamp(self, stamp_s: float) -> None:
        """The (valid, camera-given) stamp of a received frame, for the expected rate (see :func:`stamp_rates`)."""
        with self._lock:
            if self._last_stamp is not None:
                spacing = stamp_s - self._last_stamp
                if 0.0 < spacing <= MAX_STAMP_SPACING_S:  # a reset (jump back, long pause) is not a frame period
                    self._spacings.append(spacing)
            self._last_stamp = stamp_s

    def inference_started(self) -> None:
        with self._lock:
            self._infer_started = time.monotonic()

    def inference_finished(self) -> None:
        with self._lock:
            self._infer_started = None

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
                "frames_received": self.frames_received,
                "windows_inferred": self.windows_inferred, "inference_errors": self.inference_errors,
                "inference_nonfinite": self.inference_nonfinite,
                "infer_ms": list(self._infer_ms), "latency_ms": list(self._latency_ms),
                "inference_in_progress_ms": (now - self._infer_started) * 1000.0 if self._infer_started else 0.0,
                "spacings": list(self._spacings),
            }
            prev, self._prev = self._prev, (now, self.frames_in, self.windows_inferred, dropped_total,
                                            self.inference_errors, self.inference_nonfinite, self.frames_received)
        dt = now - prev[0] if prev is not None else 0.0
        if dt <= 0:
            snap.update(input_rate_hz=0.0, windows_per_s=0.0, new_drops=dropped_total,
                        new_errors=snap["inference_errors"], new_nonfinite=snap["inference_nonfinite"],
                        new_received=snap["frames_received"])
        else:
            snap.update(input_rate_hz=(snap["frames_in"] - prev[1]) / dt,
                        windows_per_s=(snap["windows_inferred"] - prev[2]) / dt,
                        new_drops=dropped_total - prev[3], new_errors=snap["inference_errors"] - prev[4],
                        new_nonfinite=snap["inference_nonfinite"] - prev[5],
                        new_received=snap["frames_received"] - prev[6])
        snap["first"] = prev is None
        snap["input_rate_hz_expected"], snap["input_rate_hz_stamps"] = stamp_rates(snap.pop("spacings"))
        return snap


def diagnostic_status(snap: dict[str, Any], window_stats: dict[str, Any] | None, reset_reasons: Sequence[str],
                      info: dict[str, str], state: str, receiving_expected: bool) -> tuple[bool, str, dict[str, str]]:
    """(warn, message, key/values) of one diagnostics period.

    ``info`` holds the descriptive keys (device, precision, model, clip_len, frame_stride, hop, image_topic, decoder);
    ``state`` is active / paused / the lifecycle state; ``receiving_expected`` says whether no input is a problem
    (active and enabled)."""
    infer_ms, latency = snap["infer_ms"], snap["latency_ms"]
    expected, from_stamps = snap["input_rate_hz_expected"], snap["input_rate_hz_stamps"]
    loss = max(0.0, 1.0 - from_stamps / expected) if expected > 0 else 0.0
    kv = {
        "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
        # From the header stamps of the frames received: the camera's rate (its frame period) and the rate that
        # arrived; the difference is frames lost before the node saw them (QoS, network), see stamp_rates.
        "input_rate_hz_expected": f"{expected:.2f}",
        "input_rate_hz_stamps": f"{from_stamps:.2f}",
        "input_loss_pct": f"{100.0 * loss:.1f}",
        "inference_in_progress_ms": f"{snap['inference_in_progress_ms']:.0f}",
        "windows_per_s": f"{snap['windows_per_s']:.2f}",
        "inference_ms_mean": f"{(sum(infer_ms) / len(infer_ms)) if infer_ms else 0.0:.2f}",
        "inference_ms_p95": f"{percentile(infer_ms, 95):.2f}",
        "latency_ms_p50": f"{percentile(latency, 50):.2f}",
        "latency_ms_p95": f"{percentile(latency, 95):.2f}",
        "frames_in": str(snap["frames_in"]),
        "frames_received": str(snap["frames_received"]),
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
    kv["inference_nonfinite"] = str(snap["inference_nonfinite"])
    # model_id: name@sha256 prefix of the loaded model (changes at a swap, repflow_ros.model_swap)
    for key in ("device", "precision", "model", "model_id", "clip_len", "frame_stride", "hop", "image_topic",
                "decoder"):
        kv[key] = str(info.get(key, ""))
    kv["state"] = state

    problems: list[str] = []
    if snap["new_drops"] > 0:
        problems.append(f"dropping frames ({', '.join(c for c, n in snap['dropped'].items() if n)})")
    # "no images" only when no message at all reached the intake in the period (hostile frames that are dropped
    # still arrived: they are reported as drops above, not as silence).
    if receiving_expected and not snap["first"] and snap["input_rate_hz"] == 0.0 and snap["new_received"] == 0:
        problems.append(f"no images on {info.get('image_topic', '')}")
    if loss > QOS_LOSS_WARN:
        problems.append(f"frames lost before the node: {from_stamps:.1f} of {expected:.1f} fps by their stamps "
                        f"({100.0 * loss:.0f}% lost; see image_qos)")
    if snap["inference_in_progress_ms"] > SLOW_INFERENCE_S * 1000.0:
        problems.append(f"one window in inference for {snap['inference_in_progress_ms'] / 1000.0:.1f} s")
    if snap["new_errors"] > 0:
        problems.append("inference errors")
    if snap["new_nonfinite"] > 0:
        problems.append("non-finite model outputs (nothing published for those windows)")
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
