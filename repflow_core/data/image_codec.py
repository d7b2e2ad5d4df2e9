"""sensor_msgs ``Image`` / ``CompressedImage`` fields -> RGB uint8 ``(H, W, 3)``, with the per-frame memory bound.

No ROS import: everything here is duck-typed on the message fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data`` for an Image; ``format``, ``data`` for a CompressedImage), so rclpy messages,
``rosbags`` messages read from a bag and plain ``types.SimpleNamespace`` objects all work. The ROS node
(:mod:`repflow_ros.image_decoding`, which adds cv_bridge and message building) and the bag reader
(:mod:`repflow_core.data.rosbag`) share this one decoder.

Guards (before anything is decoded or allocated)
------------------------------------------------
A frame's declared size is checked against :class:`FrameLimits`: for an ``Image`` its ``height`` x ``width`` (the
decoder then checks ``step`` and the data length), for a ``CompressedImage`` the size in its header, read without
decoding (:func:`compressed_image_size`: the PNG ``IHDR`` chunk, the JPEG ``SOFn`` segment). A 690-byte JPEG may
declare 30000 x 30000 pixels and would decode to 2.7 GB; it is refused instead.

* ``max_pixels`` (default :data:`DEFAULT_MAX_IMAGE_PIXELS` = 4096 x 2160, DCI 4K, which covers UHD 3840 x 2160):
  larger frames raise :class:`FrameTooLarge` (cause ``too_large``). The decoded RGB frame is then at most 26.5 MB.
* ``max_aspect`` (default :data:`DEFAULT_MAX_ASPECT` = 8): ``max(h, w) / min(h, w)`` above it raises
  :class:`BadAspect` (cause ``bad_aspect``). Cameras are 4:3 to 32:9 (3.6); 8 leaves room for stitched panoramas,
  and refuses line-like frames (1 x 30000) whose short-side resize to the model input would be enormous.

Decoding (documented choices)
-----------------------------
* Encodings (:data:`SUPPORTED_ENCODINGS`): ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8`` (alpha dropped), ``mono8``,
  ``mono16``, the packed 4:2:2 YUV formats ``yuv422`` / ``uyvy`` (byte order U Y0 V Y1, which is what ROS
  ``image_encodings::YUV422`` means) and ``yuv422_yuy2`` / ``yuyv`` (Y0 U Y1 V), converted with OpenCV's BT.601
  limited-range formulas. The OpenCV type names ``8UC1`` / ``8UC3`` / ``8UC4`` are accepted as ``mono8`` / ``bgr8``
  / ``bgra8`` (the same assumption cv_bridge makes: 3-channel OpenCV images are BGR). Packed YUV needs an even
  width (odd -> ``bad_step``). Encoding names are matched case-insensitively.
* ``mono16`` is reduced to 8 bit by keeping the high byte (``>> 8``), a fixed mapping so brightness does not flicker
  from frame to frame as a per-frame min-max stretch would. A camera that uses only the low bits of the 16 (e.g. 10
  or 12 bit sensors) will therefore look dark; ``is_bigendian`` selects the byte order of the samples.
* Row padding: ``step`` (bytes per row) may exceed ``width * bytes_per_pixel``; the padding is skipped. The data must
  hold at least ``height * step`` bytes (extra trailing bytes are ignored). ``step < width * bytes_per_pixel`` is an
  error (``bad_step``), including ``step == 0``.
* The result is always a fresh, C-contiguous, writable array that does not alias the message buffer.
* Compressed images go through ``cv2.imdecode``; the codec is detected from the bytes, the ``format`` string such as
  ``"jpeg"``, ``"png"`` or ``"rgb8; jpeg compressed bgr8"`` is only checked for ``compressedDepth``, which is
  rejected as unsupported (it carries a depth header before the PNG). Only JPEG and PNG are accepted (what
  compressed_image_transport publishes), because their declared size can be read before decoding.

Errors are :class:`ImageDecodeError` (a ``ValueError``) whose ``cause`` is one of the stable keys in
:data:`DECODE_ERROR_CAUSES`, meant for counting dropped frames by reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DECODE_ERROR_CAUSES",
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "SUPPORTED_ENCODINGS",
    "BadAspect",
    "FrameLimits",
    "FrameTooLarge",
    "ImageDecodeError",
    "buffer_bytes",
    "check_compressed_size",
    "check_frame_size",
    "compressed_image_size",
    "decode_compressed_image",
    "decode_image",
    "decode_any",
    "resize_rgb",
]

#: Every value ``ImageDecodeError.cause`` can take.
DECODE_ERROR_CAUSES: tuple[str, ...] = (
    "empty",
    "unsupported_encoding",
    "bad_step",
    "truncated",
    "compressed_decode_failed",
    "too_large",
    "bad_aspect",
)

#: Default ``FrameLimits.max_pixels``: DCI 4K (4096 x 2160; UHD 3840 x 2160 fits). 26.5 MB as RGB uint8.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 2160
#: Default ``FrameLimits.max_aspect``: max(h, w) / min(h, w). Cameras are 4:3 to 32:9; 8 admits panoramas.
DEFAULT_MAX_ASPECT = 8.0


class ImageDecodeError(ValueError):
    """A frame that cannot be decoded. ``cause`` is a short stable key (see :data:`DECODE_ERROR_CAUSES`)."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


class FrameTooLarge(ImageDecodeError):
    """The frame declares more pixels than ``FrameLimits.max_pixels`` (cause ``too_large``); nothing was decoded."""

    def __init__(self, message: str):
        super().__init__("too_large", message)


class BadAspect(ImageDecodeError):
    """The frame's aspect ratio exceeds ``FrameLimits.max_aspect`` (cause ``bad_aspect``); nothing was decoded."""

    def __init__(self, message: str):
        super().__init__("bad_aspect", message)


@dataclass(frozen=True)
class FrameLimits:
    """The memory bound per frame: declared sizes are checked against it before decoding (module docstring)."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT

    def __post_init__(self):
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_image_pixels must be a positive integer, got {self.max_pixels!r}")
        aspect = self.max_aspect
        if isinstance(aspect, bool) or not isinstance(aspect, (int, float)) or not (1.0 <= aspect < math.inf):
            raise ValueError(f"max_aspect must be a finite number >= 1, got {aspect!r}")


def check_frame_size(width: int, height: int, limits: FrameLimits | None = None, what: str = "image") -> None:
    """Refuse a declared ``width`` x ``height`` over the limits: :class:`FrameTooLarge`, :class:`BadAspect` (or
    ``empty`` for a non-positive side). Pure arithmetic: call it before decoding or allocating anything."""
    limits = limits or FrameLimits()
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageDecodeError("empty", f"empty {what}: declared {width}x{height}")
    pixels = width * height
    if pixels > limits.max_pixels:
        raise FrameTooLarge(f"{what} declares {width}x{height} = {pixels} pixels, over max_image_pixels "
                            f"{limits.max_pixels} (refused before decoding)")
    aspect = max(width, height) / min(width, height)
    if aspect > limits.max_aspect:
        raise BadAspect(f"{what} declares {width}x{height}: aspect ratio {aspect:.1f} over max_aspect "
                        f"{limits.max_aspect:g} (refused before decoding)")


def buffer_bytes(data: Any) -> np.ndarray:
    """A 1-D uint8 view of ``data`` (array.array('B'), bytes, bytearray, memoryview, numpy array) without per-element
    Python work; a list / tuple of ints (rare) is converted once with numpy."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:  # not a buffer (list, tuple, ...)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------------
# compressed headers: the declared size, read without decoding

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# markers without a length field: TEM, RST0..7, SOI
_JPEG_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])


def _header_error(kind: str, detail: str) -> ImageDecodeError:
    return ImageDecodeError("compressed_decode_failed", f"malformed {kind} header: {detail}")


def _png_size(b: memoryview) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec puts first, right after the signature."""
    if len(b) < 24 or bytes(b[12:16]) != b"IHDR":
        raise _header_error("PNG", "no IHDR chunk after the signature")
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def _jpeg_size(b: memoryview) -> tuple[int, int]:
    """(width, height) from the first SOFn segment (ITU T.81 B.2.2: length, precision, Y, X), walking the segments
    from SOI by their length fields (O(segments), no copy)."""
    n, i = len(b), 2
    while i < n:
        if b[i] != 0xFF:
            raise _header_error("JPEG", f"expected a marker at byte {i}")
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = b[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI, or scan data before any frame header
            raise _header_error("JPEG", "no frame header (SOFn) before the image data")
        if i + 2 > n:
            break
        length = (b[i] << 8) | b[i + 1]
        if length < 2:
            raise _header_error("JPEG", f"segment length {length} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                break
            height, width = (b[i + 3] << 8) | b[i + 4], (b[i + 5] << 8) | b[i + 6]
            if height == 0:  # height defined later by a DNL marker: rare, and not bounded here
                raise _header_error("JPEG", "height 0 (defined by a DNL marker) is not supported")
            return width, height
        i += length
    raise _header_error("JPEG", f"no frame header (SOFn) within the {n} bytes")


def compressed_image_size(data: Any) -> tuple[str, int, int]:
    """``(kind, width, height)`` a compressed image declares, from its header only (nothing is decoded).

    ``kind`` is ``"png"`` or ``"jpeg"``. Other formats raise :class:`ImageDecodeError` ``unsupported_encoding``
    (their size cannot be bounded before decoding); a malformed header raises ``compressed_decode_failed``.
    """
    buf = buffer_bytes(data)
    b = memoryview(buf)
    if len(b) >= 8 and bytes(b[:8]) == _PNG_SIGNATURE:
        return ("png", *_png_size(b))
    if len(b) >= 3 and b[0] == 0xFF and b[1] == 0xD8 and b[2] == 0xFF:
        return ("jpeg", *_jpeg_size(b))
    raise ImageDecodeError(
        "unsupported_encoding",
        f"unsupported compressed image (starts with {bytes(b[:8])!r}): only JPEG and PNG are accepted, whose "
        "declared size is checked before decoding",
    )


def check_compressed_size(data: Any, limits: FrameLimits | None = None) -> tuple[int, int]:
    """Read a compressed image's declared (width, height) and refuse it over ``limits`` (before decoding)."""
    kind, width, height = compressed_image_size(data)
    check_frame_size(width, height, limits, what=f"{kind.upper()} image")
    return width, height


# ---------------------------------------------------------------------------------------------------------------------
# decoding tables

#: Encodings the built-in decoder reads (``Image.encoding``, matched case-insensitively).
SUPPORTED_ENCODINGS: tuple[str, ...] = (
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "yuv422",
    "uyvy",
    "yuv422_yuy2",
    "yuyv",
    "8UC1",
    "8UC3",
    "8UC4",
)

# encoding (lower case) -> (bytes per pixel, canonical name)
_ENCODING_INFO = {
    "rgb8": (3, "rgb8"),
    "bgr8": (3, "bgr8"),
    "rgba8": (4, "rgba8"),
    "bgra8": (4, "bgra8"),
    "mono8": (1, "mono8"),
    "mono16": (2, "mono16"),
    "yuv422": (2, "uyvy"),
    "uyvy": (2, "uyvy"),
    "yuv422_yuy2": (2, "yuyv"),
    "yuyv": (2, "yuyv"),
    "8uc1": (1, "mono8"),
    "8uc3": (3, "bgr8"),
    "8uc4": (4, "bgra8"),
}

_CVT_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}

# OpenCV >= 4.11 can decode straight to RGB; older builds decode to BGR and we convert.
_IMREAD_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


# ---------------------------------------------------------------------------------------------------------------------
# built-in decoder


def _supported_list() -> str:
    return ", ".join(SUPPORTED_ENCODINGS)


def decode_image(msg: Any, limits: FrameLimits | None = None) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image`` (or any object with its fields) to RGB uint8 ``(H, W, 3)``.

    Raises :class:`ImageDecodeError` (cause ``empty``, ``too_large``, ``bad_aspect``, ``unsupported_encoding``,
    ``bad_step`` or ``truncated``); the size is checked against ``limits`` (default :class:`FrameLimits`) first.
    """
    height = int(msg.height)
    width = int(msg.width)
    encoding = str(msg.encoding)
    step = int(msg.step)
    data = msg.data

    if height <= 0 or width <= 0 or data is None or len(data) == 0:
        raise ImageDecodeError(
            "empty", f"empty image: {width}x{height} {encoding!r} with {0 if data is None else len(data)} bytes"
        )
    check_frame_size(width, height, limits, what=f"{encoding!r} image")
    info = _ENCODING_INFO.get(encoding.lower())
    if info is None:
        raise ImageDecodeError(
            "unsupported_encoding", f"unsupported encoding {encoding!r} (supported: {_supported_list()})"
        )
    bpp, canonical = info
    if canonical in ("uyvy", "yuyv") and width % 2:
        raise ImageDecodeError("bad_step", f"{encoding!r} needs an even width (pixel pairs share U/V), got {width}")

    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step",
            f"bad step {step} for {encoding!r}: rows need at least width {width} x {bpp} bytes/pixel = {row_bytes}",
        )

    buf = buffer_bytes(data)
    needed = height * step
    if buf.size < needed:
        raise ImageDecodeError(
            "truncated",
            f"truncated image: data has {buf.size} bytes, expected {height} rows x step {step} = {needed}",
        )

    rows = buf[:needed].reshape(height, step)[:, :row_bytes]  # a view; padding skipped

    if canonical == "rgb8":
        return np.array(rows.reshape(height, width, 3), order="C", copy=True)
    if canonical == "mono16":
        # value >> 8 is the sample's most significant byte: the first byte of each pair when big-endian.
        high = rows[:, 0::2] if msg.is_bigendian else rows[:, 1::2]
        return cv2.cvtColor(np.ascontiguousarray(high), cv2.COLOR_GRAY2RGB)
    if canonical == "mono8":
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_GRAY2RGB)
    channels = 2 if canonical in ("uyvy", "yuyv") else bpp
    return cv2.cvtColor(rows.reshape(height, width, channels), _CVT_TO_RGB[canonical])


def decode_compressed_image(msg: Any, limits: FrameLimits | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to RGB uint8 ``(H, W, 3)``.

    Raises :class:`ImageDecodeError` (cause ``empty``, ``unsupported_encoding`` for ``compressedDepth`` and other
    formats, ``too_large`` / ``bad_aspect`` from the header before decoding, or ``compressed_decode_failed``).
    """
    fmt = str(getattr(msg, "format", "") or "")
    if "compresseddepth" in fmt.lower():
        raise ImageDecodeError(
            "unsupported_encoding", f"unsupported compressed format {fmt!r} (compressedDepth is not a colour image)"
        )
    data = msg.data
    if data is None or len(data) == 0:
        raise ImageDecodeError("empty", f"empty compressed image (format {fmt!r})")
    buf = buffer_bytes(data)
    check_compressed_size(buf, limits)
    flag = _IMREAD_COLOR_RGB if _IMREAD_COLOR_RGB is not None else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error as exc:
        raise ImageDecodeError(
            "compressed_decode_failed", f"cannot decode compressed image (format {fmt!r}, {buf.size} bytes): {exc}"
        ) from exc
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ImageDecodeError(
            "compressed_decode_failed", f"cannot decode compressed image (format {fmt!r}, {buf.size} bytes)"
        )
    if _IMREAD_COLOR_RGB is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


# ---------------------------------------------------------------------------------------------------------------------
# resizing


def resize_rgb(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an image to ``(height, width)``: ``INTER_AREA`` when either side shrinks (no aliasing), ``INTER_LINEAR``
    when only enlarging. Returns the input unchanged when it already has that size."""
    out_h, out_w = (int(v) for v in size_hw)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size_hw must be positive, got {size_hw!r}")
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return img
    interp = cv2.INTER_AREA if (out_h < in_h or out_w < in_w) else cv2.INTER_LINEAR
    return cv2.resize(img, (out_w, out_h), interpolation=interp)


def decode_any(msg: Any, limits: FrameLimits | None = None) -> np.ndarray:
    """Decode either message type: an object with ``format`` and no ``encoding`` is a CompressedImage."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed_image(msg, limits)
    return decode_image(msg, limits)
