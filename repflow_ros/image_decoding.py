"""sensor_msgs ``Image`` / ``CompressedImage`` <-> RGB uint8 ``(H, W, 3)`` numpy arrays, without needing cv_bridge.

Decoding
--------
The built-in decoder, the size guards and the error types live in :mod:`repflow_core.data.image_codec` (no ROS
import, documented there: encodings, ``step`` padding, ``mono16``, compressed formats), shared with the bag reader
:mod:`repflow_core.data.rosbag`; this module re-exports every public name and adds cv_bridge and message building.
``ImageDecoder`` uses cv_bridge when it can be imported (a ROS 2 install / workspace provides it; PyPI's
``cv-bridge`` is a ROS 1 port and must not be used) and otherwise the built-in decoder, which needs only numpy and
OpenCV. The decode functions are duck-typed: they read only the message fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data`` / ``format``, ``data``), so any object with those attributes works.

Errors are :class:`ImageDecodeError` (a ``ValueError``) whose ``cause`` is one of the stable keys in
:data:`DECODE_ERROR_CAUSES`, meant for counting dropped frames by reason.

Compressed images go through ``cv2.imdecode``; the codec is detected from the bytes, the ``format`` string such as
``"jpeg"``, ``"png"`` or ``"rgb8; jpeg compressed bgr8"`` is only checked for ``compressedDepth``, which is rejected
as unsupported (it carries a depth header before the PNG). Only JPEG and PNG are accepted (what
compressed_image_transport publishes), because their declared size can be read before decoding (below).

Memory bound per frame (hostile input)
--------------------------------------
Every decoder here first checks the frame's declared size against :class:`FrameLimits` (``max_pixels``, default
4096 x 2160; ``max_aspect``, default 8) without decoding or allocating: :mod:`repflow_core.data.image_codec` holds the
limits, the errors :class:`FrameTooLarge` / :class:`BadAspect` and the JPEG/PNG header reader, re-exported here.

Encoding
--------
``rgb_to_image_msg`` / ``rgb_to_compressed_msg`` build messages for debug-image publishing and the demo camera.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

from repflow_core.data.image_codec import (
    DECODE_ERROR_CAUSES,
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_IMAGE_PIXELS,
    SUPPORTED_ENCODINGS,
    BadAspect,
    FrameLimits,
    FrameTooLarge,
    ImageDecodeError,
    check_compressed_size,
    check_frame_size,
    compressed_image_size,
    decode_compressed_image,
    decode_image,
    resize_rgb,
)

__all__ = [
    "SUPPORTED_ENCODINGS",
    "DECODE_ERROR_CAUSES",
    "ImageDecodeError",
    "FrameTooLarge",
    "BadAspect",
    "FrameLimits",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_ASPECT",
    "check_frame_size",
    "compressed_image_size",
    "check_compressed_size",
    "ImageDecoder",
    "cv_bridge_available",
    "decode_image",
    "decode_compressed_image",
    "resize_rgb",
    "rgb_to_image_msg",
    "rgb_to_compressed_msg",
]

# ---------------------------------------------------------------------------------------------------------------------
# cv_bridge (optional)


@functools.lru_cache(maxsize=1)
def _cv_bridge_class():
    """The ``cv_bridge.CvBridge`` class, or None when cv_bridge cannot be imported. Probed once (cached)."""
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]
    except ImportError:
        return None
    except Exception:  # a broken install (e.g. missing shared library raising OSError) counts as absent
        return None
    return CvBridge


def cv_bridge_available() -> bool:
    """Whether cv_bridge can be imported here (the result is cached after the first call)."""
    return _cv_bridge_class() is not None


class ImageDecoder:
    """Decodes ``Image`` / ``CompressedImage`` messages to RGB uint8 ``(H, W, 3)``.

    ``backend`` is ``"cv_bridge"`` when ``prefer_cv_bridge`` is true and cv_bridge is importable, else ``"builtin"``.
    With cv_bridge, a message it fails on is retried with the built-in decoder, so errors always come out as
    :class:`ImageDecodeError` with a precise ``cause``. Note that cv_bridge scales ``mono16`` by 255/65535 where the
    built-in decoder keeps the high byte; the results differ by at most one grey level.
    """

    def __init__(self, prefer_cv_bridge: bool = True, limits: FrameLimits | None = None):
        #: declared sizes are checked against these before any decoder (cv_bridge included) sees the frame
        self.limits = limits or FrameLimits()
        bridge_cls = _cv_bridge_class() if prefer_cv_bridge else None
        self._bridge = bridge_cls() if bridge_cls is not None else None
        self.backend = "cv_bridge" if self._bridge is not None else "builtin"

    def decode(self, msg: Any) -> np.ndarray:
        """Decode a raw ``sensor_msgs/Image`` (its declared size checked first: FrameTooLarge, BadAspect)."""
        if int(msg.height) > 0 and int(msg.width) > 0:  # empty frames: decode_image says "empty"
            check_frame_size(msg.width, msg.height, self.limits)
        if self._bridge is not None:
            try:
                img = self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
                return _as_owned_rgb(img)
            except Exception:
                pass  # fall through: the built-in decoder either handles it or says precisely why not
        return decode_image(msg, self.limits)

    def decode_compressed(self, msg: Any) -> np.ndarray:
        """Decode a ``sensor_msgs/CompressedImage`` (its header's size checked first: FrameTooLarge, BadAspect)."""
        if self._bridge is not None and msg.data is not None and len(msg.data) > 0:
            check_compressed_size(msg.data, self.limits)
            try:
                bgr = self._bridge.compressed_imgmsg_to_cv2(msg)
                if bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
                    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if bgr is not None and bgr.ndim == 2 and bgr.dtype == np.uint8:
                    return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
            except Exception:
                pass
        return decode_compressed_image(msg, self.limits)

    def __call__(self, msg: Any) -> np.ndarray:
        """Decode either message type (a ``format`` attribute marks a CompressedImage)."""
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):
            return self.decode_compressed(msg)
        return self.decode(msg)


def _as_owned_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
    if img.base is not None or not img.flags.c_contiguous or not img.flags.writeable:
        img = np.array(img, order="C", copy=True)
    return img


# ---------------------------------------------------------------------------------------------------------------------
# encoding (debug images, demo camera)


def _make_header(stamp: Any, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    header = Header()
    header.frame_id = str(frame_id)
    if stamp is None:
        return header
    if isinstance(stamp, Time):
        header.stamp = stamp
    elif hasattr(stamp, "to_msg"):  # rclpy.time.Time
        header.stamp = stamp.to_msg()
    elif hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        header.stamp = Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    else:  # seconds as a number
        seconds = float(stamp)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"stamp must be a finite, non-negative number of seconds, got {stamp!r}")
        sec = int(math.floor(seconds))
        nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
        header.stamp = Time(sec=sec, nanosec=nanosec)
    return header


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return rgb


_IMAGE_MSG_ENCODINGS = ("rgb8", "bgr8", "mono8")


def rgb_to_image_msg(rgb: np.ndarray, stamp: Any = None, frame_id: str = "", encoding: str = "rgb8"):
    """Build a ``sensor_msgs/Image`` from an RGB uint8 ``(H, W, 3)`` array, tightly packed (``step = width * bpp``).

    ``encoding`` is ``rgb8``, ``bgr8`` or ``mono8``. ``stamp`` may be None (zero), a ``builtin_interfaces/Time``, an
    ``rclpy.time.Time`` or seconds as a float.
    """
    import array

    from sensor_msgs.msg import Image

    rgb = _check_rgb(rgb)
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        pixels = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"unsupported output encoding {encoding!r} (supported: {', '.join(_IMAGE_MSG_ENCODINGS)})")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]

    msg = Image()
    msg.header = _make_header(stamp, frame_id)
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0])
    # array.array is assigned as-is by the generated setter (a list/bytes would be range-checked element by element).
    msg.data = array.array("B", pixels.tobytes())
    return msg


def rgb_to_compressed_msg(
    rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90, stamp: Any = None, frame_id: str = ""
):
    """Build a ``sensor_msgs/CompressedImage`` (``fmt`` ``"jpeg"`` or ``"png"``) from an RGB uint8 array.

    The ``format`` field follows compressed_image_transport (``"rgb8; jpeg compressed bgr8"``), which
    ``image_transport`` republishers and this module's decoder both read. ``quality`` is the JPEG quality (1-100);
    for PNG it is ignored (default compression level).
    """
    import array

    from sensor_msgs.msg import CompressedImage

    rgb = _check_rgb(rgb)
    kind = fmt.lower().strip()
    if kind in ("jpeg", "jpg"):
        ext, kind = ".jpg", "jpeg"
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(min(max(int(quality), 1), 100))]
    elif kind == "png":
        ext, params = ".png", []
    else:
        raise ValueError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {kind}")

    msg = CompressedImage()
    msg.header = _make_header(stamp, frame_id)
    msg.format = f"rgb8; {kind} compressed bgr8"
    msg.data = array.array("B", encoded.tobytes())
    return msg
