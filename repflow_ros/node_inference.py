"""The recognizer's inference thread: newest complete window -> model -> prediction -> lifecycle publishers.

A plain ``threading.Thread`` (not an executor callback), so intake never waits for inference and windows that became
stale while the model was busy are skipped and counted (:class:`~repflow_ros.frame_window.FrameWindow`). Smoothing,
threshold and top-k are :class:`~repflow_ros.prediction.Predictor`'s; a model swapped in at run time
(:mod:`repflow_ros.model_swap`) is picked up between two windows, and the old one is released here.
"""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np
from std_msgs.msg import String

from .frame_window import FrameWindow
from .image_decoding import rgb_to_image_msg
from .prediction import Frame, Prediction, Predictor, debug_overlay, fill_classification

try:  # optional: only where vision_msgs is installed
    from vision_msgs.msg import Classification, ObjectHypothesis
except Exception:  # ImportError, or a broken install
    Classification = ObjectHypothesis = None

__all__ = ["Classification", "InferenceMixin", "debug_image_msg"]

_ERROR_LOG_EVERY_S = 10.0  # repeated inference failures: one log line (with the count) per this many seconds


def _non_finite_output() -> type[Exception]:
    """``repflow_core.recognizer.NonFiniteOutput``, imported when first needed (torch is loaded by then)."""
    from repflow_core.recognizer import NonFiniteOutput

    return NonFiniteOutput


def debug_image_msg(frame: Frame, prediction: Prediction):
    """The newest frame of the window with the label and score drawn on it (sensor_msgs/Image rgb8)."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(prediction.stamp_ns, 1_000_000_000)
    return rgb_to_image_msg(debug_overlay(frame.raw if frame.raw is not None else frame.pixels, prediction),
                            stamp=Time(sec=sec, nanosec=nanosec), frame_id=prediction.frame_id)


class InferenceMixin:
    """The inference thread of :class:`repflow_ros.recognizer_node.RecognizerNode`. Uses the node's ``_stats``,
    ``_pubs``, ``_predictor``, ``_recognition_enabled``, ``_pipeline()`` and the rclpy node API."""

    def _inference_loop(self, window: FrameWindow, recognizer, stop: threading.Event) -> None:
        """Newest ready window -> model -> publish, until ``stop``; then release the model (so a window in flight at
        shutdown is finished here, never waited for by the caller)."""
        last_error_log = 0.0
        predictor = self._predictor
        try:
            while not stop.is_set():
                ready = window.take_ready(timeout=0.25)
                current = self._pipeline()
                if current[0] is not None and current[0] is not recognizer:  # swapped in (model_swap): the new
                    recognizer.release()  # model takes this window on; this thread is the old one's only user
                    same_window, (recognizer, window, predictor) = current[1] is window, current
                    if not same_window:  # the input spec changed: a window of the old spec is dropped
                        continue
                if ready is None and window.closed:
                    break
                if ready is None or not self._recognition_enabled:
                    continue
                try:
                    self._infer(ready, recognizer, predictor, stop)
                except _non_finite_output() as exc:  # never published: counted, logged once
                    if self._stats.count("inference_nonfinite") == 1:
                        self.get_logger().error(f"{exc}; nothing is published for such windows (counted as "
                                                "inference_nonfinite in /diagnostics)")
                except Exception as exc:
                    if stop.is_set() or not self.context.ok():  # stopping, or Ctrl-C shut the context down first
                        break
                    errors = self._stats.count("inference_errors")
                    if time.monotonic() - last_error_log > _ERROR_LOG_EVERY_S:
                        last_error_log = time.monotonic()
                        self.get_logger().error(f"inference failed ({errors} so far): {exc}\n"
                                                f"{traceback.format_exc()}")
        finally:
            recognizer.release()

    def _infer(self, ready, recognizer, predictor: Predictor | None, stop: threading.Event) -> None:
        """One window through the model, published unless the node is stopping meanwhile."""
        clip = np.stack([frame.pixels for frame in ready.frames])
        start = time.perf_counter()
        self._stats.inference_started()  # /diagnostics shows a window that takes long while it runs
        try:
            probs = np.asarray(recognizer.predict(clip), dtype=np.float64)
        finally:
            self._stats.inference_finished()
        infer_ms = (time.perf_counter() - start) * 1000.0
        if not stop.is_set():
            self._publish(ready, probs, infer_ms, predictor)

    def _publish(self, ready, probs: np.ndarray, infer_ms: float, predictor: Predictor | None = None) -> None:
        newest: Frame = ready.frames[-1]
        prediction = (predictor or self._predictor).update(probs, ready.epoch, ready.seq, newest.stamp_ns,
                                                           ready.frame_id, self.get_clock().now().nanoseconds)
        self._stats.inferred(infer_ms, prediction.latency_ms)
        pubs = self._pubs
        pubs["label"].publish(String(data=prediction.label))
        if "actions" in pubs:
            pubs["actions"].publish(fill_classification(Classification(), ObjectHypothesis, prediction))
        pubs["prediction"].publish(String(data=prediction.to_json()))
        debug = pubs.get("debug")
        if debug is not None and debug.get_subscription_count() > 0:
            debug.publish(debug_image_msg(newest, prediction))
