"""The recognizer's intake: camera message -> checked, decoded, preprocessed frame in the :class:`FrameWindow`.

Runs on the executor thread (its own mutually exclusive callback group) and never waits for inference: it only
checks the stamp, decodes (the declared size is checked first: the memory bound per frame), preprocesses and pushes.
Every refusal is counted by cause (:data:`DROP_CAUSES`) and logged once; a window reset is logged once per reason.
"""

from __future__ import annotations

from .frame_window import BadStamp, ResetReporter, stamp_to_ns
from .image_decoding import DECODE_ERROR_CAUSES, FrameLimits, ImageDecodeError, ImageDecoder
from .node_qos import subscribe_images
from .prediction import Frame

__all__ = ["DROP_CAUSES", "IntakeMixin"]

#: Reasons a frame is dropped: the decode causes (too_large and bad_aspect: the memory bound per frame, checked before
#: decoding), bad_stamp (nanosec >= 1e9 or a negative sec), bad_shape (a frame preprocess refuses) and ``other``
#: (unexpected decoder or preprocessing failures).
DROP_CAUSES = tuple(DECODE_ERROR_CAUSES) + ("bad_stamp", "bad_shape", "other")


def _frame_shape_error() -> type[Exception]:
    """``repflow_core.recognizer.FrameShapeError``, imported when first needed (torch is loaded by then)."""
    from repflow_core.recognizer import FrameShapeError

    return FrameShapeError


class IntakeMixin:
    """The image callback of :class:`repflow_ros.recognizer_node.RecognizerNode`. Uses the node's ``_cfg``,
    ``_stats``, ``_stop``, ``_pubs``, ``_recognition_enabled``, ``_intake_group``, ``_pipeline()`` (recognizer,
    window, predictor read together: a model swap replaces them together) and the rclpy node API."""

    def _subscribe(self) -> None:
        """Intake set-up at activation: the decoder with this configuration's frame limits (the memory bound per
        frame), reset logging from scratch, the recognizer's one-time warnings into this node's log, the
        subscription."""
        cfg = self._cfg
        self._decoder = ImageDecoder(limits=FrameLimits(max_pixels=int(cfg["max_image_pixels"]),
                                                        max_aspect=float(cfg["max_aspect"])))
        self._reset_reporter = ResetReporter()
        if self._recognizer is not None:
            self._recognizer.on_warning = self.get_logger().warning
        self._image_topic, self._image_sub = subscribe_images(self, cfg["image_transport"], cfg["image_qos"],
                                                              self._decoder, self._on_image, self._intake_group)

    def _drop(self, cause: str, message: str) -> None:
        cause, first = self._stats.drop(cause)
        if first:  # once per cause; afterwards only counted (see /diagnostics)
            self.get_logger().warning(
                f"dropping frame ({cause}): {message}; further '{cause}' drops are only counted in /diagnostics")

    def _on_image(self, msg, decode) -> None:
        """Stamp check, decode, preprocess, push (see the module docstring)."""
        (recognizer, window, _), stats = self._pipeline(), self._stats  # a model swap replaces them together
        if recognizer is None or window is None or self._stop.is_set():  # not active (or stopping)
            return
        stats.count("frames_received")
        if not self._recognition_enabled:
            stats.count("frames_ignored_paused")
            return
        stats.count("frames_in")
        try:  # before decoding: a frame with an invalid stamp costs nothing
            stamp_ns = stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        except BadStamp as exc:
            return self._drop(exc.cause, str(exc))
        try:
            rgb = decode(msg)
        except ImageDecodeError as exc:  # too_large / bad_aspect among them: refused before any allocation
            return self._drop(exc.cause, str(exc))
        except Exception as exc:
            return self._drop("other", f"decoder error: {exc}")
        if stamp_ns == 0:
            stamp_ns = self.get_clock().now().nanoseconds
            if stats.count("frames_no_stamp") == 1:
                self.get_logger().warning(
                    f"images on {self._image_topic} have no header stamp: using this node's clock "
                    "(latency figures then exclude transport); counted as frames_no_stamp")
        else:
            stats.stamp(stamp_ns * 1e-9)  # the camera's own stamps give the rate it sends at (QoS losses)
        try:
            pixels = recognizer.preprocess(rgb)
        except _frame_shape_error() as exc:
            return self._drop("bad_shape", str(exc))
        except Exception as exc:
            return self._drop("other", f"preprocessing failed for a {rgb.shape} frame: {exc}")
        debug = self._pubs.get("debug")
        raw = rgb if debug is not None and debug.get_subscription_count() > 0 else None
        result = window.push(Frame(pixels, tuple(rgb.shape), stamp_ns, raw), stamp_ns * 1e-9, msg.header.frame_id)
        line = self._reset_reporter.message(result)
        if line is not None:  # the first reset of each reason, with its numbers; the rest are counted
            self.get_logger().warning(line)
