"""From class probabilities of successive windows to the published prediction (no ROS import).

* :class:`Predictor` keeps the smoothing history and the run-time settings (``smoothing``, ``score_threshold``,
  ``top_k``) and turns one window's probabilities into a :class:`Prediction`.
* :class:`Prediction` is the record the node publishes: ``action_label`` carries :attr:`Prediction.label`,
  ``~/prediction`` :meth:`Prediction.to_json`, ``actions`` (vision_msgs/Classification) is filled by
  :func:`fill_classification`.

Choices:

* ``smoothing``: the label is the arg-max of the mean class probabilities of the last ``smoothing`` windows of the
  current stream segment; the history restarts when the window's ``epoch`` changes (the frame window was reset or
  cleared), so a label never mixes two streams. ``actions``, ``~/prediction`` and the debug image carry the same
  smoothed scores.
* ``score_threshold``: when the smoothed top-1 score is below it the label is :data:`UNKNOWN_LABEL` rather than
  nothing, so consumers can tell "uncertain" from "no input"; the record keeps the real top-1 score and the top-k.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["UNKNOWN_LABEL", "Frame", "Prediction", "Predictor", "rank", "fill_classification", "debug_overlay",
           "percentile"]

UNKNOWN_LABEL = "unknown"


class Frame:
    """A preprocessed frame in the window. ``shape`` is the *source* image shape, so the FrameWindow's size-change
    reset sees the camera's size, not the (constant) model input size. ``raw`` is kept only for the debug image."""

    __slots__ = ("pixels", "shape", "stamp_ns", "raw")

    def __init__(self, pixels: np.ndarray, shape: tuple[int, ...], stamp_ns: int, raw: np.ndarray | None):
        self.pixels = pixels
        self.shape = shape
        self.stamp_ns = stamp_ns
        self.raw = raw


@dataclass(frozen=True)
class Prediction:
    """One published result: ``label`` (or :data:`UNKNOWN_LABEL`), the smoothed top-1 ``score``, the stamp and
    frame_id of the newest frame in the window, the top-k ``(class, score)`` pairs, the latency from that frame's
    stamp to now, and the window's sequence number (gaps = windows skipped while inference was busy)."""

    label: str
    score: float
    stamp_ns: int
    frame_id: str
    topk: tuple[tuple[str, float], ...]
    latency_ms: float
    window_seq: int

    def to_dict(self) -> dict:
        """The ``~/prediction`` JSON fields: label, score, stamp (s), frame_id, topk, latency_ms, window_seq."""
        return {
            "label": self.label,
            "score": float(self.score),
            "stamp": self.stamp_ns / 1e9,
            "frame_id": self.frame_id,
            "topk": [[name, float(p)] for name, p in self.topk],
            "latency_ms": round(self.latency_ms, 3),
            "window_seq": int(self.window_seq),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def rank(probs: np.ndarray, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable ``(label, probability)`` pairs, best first (k capped to the number of classes)."""
    order = np.argsort(-np.asarray(probs))[: max(1, min(int(k), len(labels)))]
    return [(labels[i], float(probs[i])) for i in order]


class Predictor:
    """Smoothing history + threshold + top-k; thread-safe (the inference thread calls :meth:`update` while
    parameter callbacks change the settings).

    ``ranker(probs, k)`` returns the top-k ``(label, score)`` pairs (the Recognizer's ``top_k``, or :func:`rank`)."""

    def __init__(self, ranker: Callable[[np.ndarray, int], list[tuple[str, float]]], smoothing: int = 3,
                 score_threshold: float = 0.0, top_k: int = 5):
        self._ranker = ranker
        self._lock = threading.Lock()
        self._history: deque = deque(maxlen=int(smoothing))
        self._epoch: int | None = None
        self.score_threshold = float(score_threshold)
        self.top_k = int(top_k)

    @property
    def smoothing(self) -> int:
        return int(self._history.maxlen)

    def set(self, name: str, value: Any) -> None:
        """Change a run-time setting: ``smoothing`` (keeps the newest entries), ``score_threshold`` or ``top_k``."""
        with self._lock:
            if name == "smoothing":
                self._history = deque(self._history, maxlen=int(value))
            elif name == "score_threshold":
                self.score_threshold = float(value)
            elif name == "top_k":
                self.top_k = int(value)
            else:
                raise KeyError(f"not a run-time setting of the predictor: {name!r}")

    def clear(self) -> None:
        """Forget the smoothing history (pause, activation)."""
        with self._lock:
            self._history.clear()
            self._epoch = None

    def update(self, probs: np.ndarray, epoch: int, window_seq: int, stamp_ns: int, frame_id: str,
               now_ns: int) -> Prediction:
        """Add one window's class probabilities (of segment ``epoch``) and return the smoothed prediction."""
        with self._lock:
            if epoch != self._epoch:  # the frame window was reset: a new stream segment
                self._history.clear()
                self._epoch = epoch
            self._history.append(np.asarray(probs, dtype=np.float64))
            smoothed = np.mean(np.stack(self._history), axis=0)
            threshold, top_k = self.score_threshold, self.top_k
        ranked = self._ranker(smoothed, top_k)
        best_label, best_score = ranked[0]
        return Prediction(
            label=best_label if best_score >= threshold else UNKNOWN_LABEL,
            score=float(best_score),
            stamp_ns=int(stamp_ns),
            frame_id=frame_id,
            topk=tuple((name, float(p)) for name, p in ranked),
            latency_ms=(now_ns - stamp_ns) / 1e6,
            window_seq=int(window_seq),
        )


def fill_classification(msg: Any, hypothesis: Callable[..., Any], prediction: Prediction) -> Any:
    """Fill a vision_msgs/Classification ``msg`` (header = the newest frame's stamp and frame_id, results = top-k);
    ``hypothesis`` is the ObjectHypothesis class. Duck-typed, so it needs no ROS import."""
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(prediction.stamp_ns, 1_000_000_000)
    msg.header.frame_id = prediction.frame_id
    msg.results = [hypothesis(class_id=name, score=float(p)) for name, p in prediction.topk]
    return msg


def debug_overlay(img: np.ndarray, prediction: Prediction) -> np.ndarray:
    """A copy of an RGB frame with ``label score`` drawn on it, enlarged to 240 rows when smaller so the text stays
    legible (``~/debug_image``)."""
    import cv2

    if img.shape[0] < 240:
        scale = 240.0 / img.shape[0]
        img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), 240), interpolation=cv2.INTER_NEAREST)
    else:
        img = img.copy()
    text = f"{prediction.label} {prediction.score:.2f}"
    font_scale = max(0.5, img.shape[0] / 480.0)
    org = (8, int(28 * font_scale) + 4)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 0), 1, cv2.LINE_AA)
    return img


def percentile(values, q: float) -> float:
    """The ``q``-th percentile of ``values`` (0.0 when empty)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0
