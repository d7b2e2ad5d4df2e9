"""What a frame passes before it is decoded: the decode error type, the memory bound per frame, and the size a
compressed image declares, read from its header. No ROS import (duck-typed on message fields), numpy only.

A frame's declared size is checked against :class:`FrameLimits` *before* anything is decoded or allocated: for an
``Image`` its ``height`` x ``width`` (the decoder then checks ``step`` and the data length), for a
``CompressedImage`` the size in its header, read without decoding (:func:`compressed_image_size`: the PNG ``IHDR``
chunk, the JPEG ``SOFn`` segment). A 690-byte JPEG may declare 30000 x 30000 pixels and would decode to 2.7 GB;
it is refused instead.

* ``max_pixels`` (default :data:`DEFAULT_MAX_IMAGE_PIXELS` = 4096 x 2160, DCI 4K, which covers UHD 3840 x 2160):
  larger frames raise :class:`FrameTooLarge` (cause ``too_large``). The decoded RGB frame is then at most 26.5 MB.
* ``max_aspect`` (default :data:`DEFAULT_MAX_ASPECT` = 8): ``max(h, w) / min(h, w)`` above it raises
  :class:`BadAspect` (cause ``bad_aspect``). Cameras are 4:3 to 32:9 (3.6); 8 leaves room for stitched panoramas,
  and refuses line-like frames (1 x 30000) whose short-side resize to the model input would be enormous.

:mod:`repflow_ros.image_decoding` re-exports every public name here; the decoders there call these checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DECODE_ERROR_CAUSES",
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "BadAspect",
    "FrameLimits",
    "FrameTooLarge",
    "ImageDecodeError",
    "buffer_bytes",
    "check_compressed_size",
    "check_frame_size",
    "compressed_image_size",
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
