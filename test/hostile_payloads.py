"""Small compressed images whose headers lie about their size: the decompression-bomb and line-image payloads
of issue 11, shared by the decoder tests (test_hostile_frames.py) and the DDS tests (test_node_hostile_input.py)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, rows: int = 4) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB) with the first few rows of zeros in its IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * ((3 * width + 1) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 baseline JPEG whose SOF0 segment is patched to declare width x height."""
    ok, enc = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8), [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    assert ok
    data = bytearray(enc.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 7] = struct.pack(">H", height)
    data[i + 7:i + 9] = struct.pack(">H", width)
    return bytes(data)


def png_1x30000() -> bytes:
    """A real 1 x 30000 PNG of a few hundred bytes."""
    ok, enc = cv2.imencode(".png", np.zeros((1, 30000, 3), np.uint8), [int(cv2.IMWRITE_PNG_COMPRESSION), 9])
    assert ok
    return enc.tobytes()
