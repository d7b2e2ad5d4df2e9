"""Moved to :mod:`repflow_core.data.image_codec` (no ROS import), where the node and the bag reader share it.

This module re-exports the names it used to define, so existing imports keep working.
"""

from repflow_core.data.image_codec import (
    DECODE_ERROR_CAUSES,
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_IMAGE_PIXELS,
    BadAspect,
    FrameLimits,
    FrameTooLarge,
    ImageDecodeError,
    buffer_bytes,
    check_compressed_size,
    check_frame_size,
    compressed_image_size,
)

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
