"""Issue 11, decoding side: declared sizes are checked before decoding, so tiny hostile frames cannot allocate
gigabytes. The hostile messages are real sensor_msgs messages; peak memory is the decoding process's own
counter (ru_maxrss) in a fresh subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_payloads import jpeg_claiming, png_1x30000, png_claiming  # noqa: E402

from repflow_ros.image_decoding import (
    DECODE_ERROR_CAUSES,
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_IMAGE_PIXELS,
    BadAspect,
    FrameLimits,
    FrameTooLarge,
    ImageDecodeError,
    ImageDecoder,
    check_frame_size,
    compressed_image_size,
    decode_compressed_image,
    decode_image,
)

REPO = Path(__file__).resolve().parents[1]


def _image(width, height, encoding="rgb8", bpp=3, data_bytes=None):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.width, msg.height, msg.encoding, msg.step = width, height, encoding, width * bpp
    msg.data = bytes(width * height * bpp if data_bytes is None else data_bytes)
    return msg


def _compressed(data: bytes, fmt: str):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    msg.format, msg.data = fmt, data
    return msg


def test_defaults_are_documented_values():
    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 2160 >= 3840 * 2160 and DEFAULT_MAX_ASPECT == 8.0
    assert {"too_large", "bad_aspect"} <= set(DECODE_ERROR_CAUSES)
    assert issubclass(FrameTooLarge, ImageDecodeError) and issubclass(BadAspect, ImageDecodeError)


def test_the_hostile_payloads_are_as_small_as_reported():
    assert len(png_1x30000()) < 400
    assert len(jpeg_claiming(30000, 30000)) < 1000
    assert len(png_claiming(20000, 20000)) < 400


def test_line_image_refused_as_bad_aspect():
    msg = _image(30000, 1)
    for decode in (decode_image, ImageDecoder(prefer_cv_bridge=False).decode, ImageDecoder().decode):
        with pytest.raises(BadAspect) as err:
            decode(msg)
        assert err.value.cause == "bad_aspect" and "30000x1" in str(err.value)


def test_huge_declared_image_refused_before_the_data_is_looked_at():
    with pytest.raises(FrameTooLarge) as err:  # too_large, not truncated: the size is checked first
        decode_image(_image(30000, 30000, data_bytes=16))
    assert err.value.cause == "too_large" and "max_image_pixels" in str(err.value)


def test_png_line_refused_as_bad_aspect():
    assert compressed_image_size(png_1x30000()) == ("png", 30000, 1)
    with pytest.raises(BadAspect):
        decode_compressed_image(_compressed(png_1x30000(), "png"))


@pytest.mark.parametrize("side", [20000, 30000])
def test_png_bomb_refused_as_too_large(side):
    data = png_claiming(side, side)
    assert compressed_image_size(data) == ("png", side, side)
    for decode in (decode_compressed_image, ImageDecoder().decode_compressed):
        with pytest.raises(FrameTooLarge):
            decode(_compressed(data, "png"))


def test_jpeg_bomb_refused_as_too_large():
    data = jpeg_claiming(30000, 30000)
    assert compressed_image_size(data) == ("jpeg", 30000, 30000)
    with pytest.raises(FrameTooLarge):
        ImageDecoder().decode_compressed(_compressed(data, "rgb8; jpeg compressed bgr8"))


@pytest.mark.parametrize("shape", [(1, 1), (17, 5), (480, 640), (720, 1280), (31, 257)])
@pytest.mark.parametrize("kind", ["jpeg", "progressive", "png"])
def test_header_size_agrees_with_opencv(shape, kind):
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ext, params = (".png", []) if kind == "png" else (".jpg", [int(cv2.IMWRITE_JPEG_PROGRESSIVE), int(kind != "jpeg")])
    ok, enc = cv2.imencode(ext, img, params)
    assert ok
    h, w = cv2.imdecode(enc, cv2.IMREAD_COLOR).shape[:2]
    assert compressed_image_size(enc.tobytes()) == ("png" if kind == "png" else "jpeg", w, h)


def test_limits_are_configurable_and_inclusive():
    check_frame_size(100, 10, FrameLimits(max_pixels=1000, max_aspect=10))  # exactly at both bounds: accepted
    with pytest.raises(FrameTooLarge):
        check_frame_size(101, 10, FrameLimits(max_pixels=1000, max_aspect=11))
    with pytest.raises(BadAspect):
        check_frame_size(100, 9, FrameLimits(max_pixels=1000, max_aspect=10))
    small = ImageDecoder(prefer_cv_bridge=False, limits=FrameLimits(max_pixels=64 * 64))
    assert small.decode(_image(64, 64)).shape == (64, 64, 3)
    with pytest.raises(FrameTooLarge):
        small.decode(_image(65, 64))


@pytest.mark.parametrize("bad", [{"max_pixels": 0}, {"max_pixels": 1.5}, {"max_pixels": True},
                                 {"max_aspect": 0.5}, {"max_aspect": float("inf")}, {"max_aspect": float("nan")}])
def test_invalid_limits_name_the_parameter(bad):
    with pytest.raises(ValueError, match="max_image_pixels|max_aspect"):
        FrameLimits(**bad)


@pytest.mark.parametrize("data,cause", [
    (b"BM" + b"\x00" * 60, "unsupported_encoding"),                  # BMP: size not bounded before decoding
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX" + b"\x00" * 13, "compressed_decode_failed"),
    (b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20, "compressed_decode_failed"),   # scan before any frame header
    (b"\xff\xd8\xff\xe0\x00\x01", "compressed_decode_failed"),        # segment length < 2
])
def test_unbounded_or_malformed_compressed_refused(data, cause):
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed_image(_compressed(data, "jpeg"))
    assert err.value.cause == cause


_RSS_SCRIPT = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from hostile_payloads import jpeg_claiming, png_1x30000, png_claiming
from test_hostile_frames import _compressed, _image
from repflow_ros.image_decoding import ImageDecodeError, ImageDecoder
msgs = [("image 1x30000", _image(30000, 1)), ("image 30000^2 declared", _image(30000, 30000, data_bytes=64)),
        ("png 1x30000", _compressed(png_1x30000(), "png")),
        ("jpeg 30000^2", _compressed(jpeg_claiming(30000, 30000), "jpeg")),
        ("png 20000^2", _compressed(png_claiming(20000, 20000), "png")),
        ("png 30000^2", _compressed(png_claiming(30000, 30000), "png"))]
decoders = [ImageDecoder(), ImageDecoder(prefer_cv_bridge=False)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
causes = {}
for name, msg in msgs:
    for dec in decoders:
        try:
            dec(msg)
            causes[name] = "accepted"
        except ImageDecodeError as exc:
            causes[name] = exc.cause
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"causes": causes, "rss_before_kb": before, "rss_after_kb": after}))
"""


def test_hostile_frames_do_not_raise_peak_memory():
    result = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(REPO / "test")], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["causes"] == {"image 1x30000": "bad_aspect", "image 30000^2 declared": "too_large",
                             "png 1x30000": "bad_aspect", "jpeg 30000^2": "too_large", "png 20000^2": "too_large",
                             "png 30000^2": "too_large"}, out
    grew_mb = (out["rss_after_kb"] - out["rss_before_kb"]) / 1024  # Linux: ru_maxrss in KiB
    assert grew_mb < 100, out  # decoding any of them would have needed 90 KB * 128 ... 2.7 GB


def test_soak_hostile_set_is_refused_by_decoder_or_stamp_check():
    """Every frame the soak benchmark injects is dropped with a specific cause before it reaches the window."""
    from builtin_interfaces.msg import Time

    from repflow_ros.bench_soak import hostile_images
    from repflow_ros.frame_window import BadStamp, stamp_to_ns

    decoder = ImageDecoder()
    causes = {}
    for kind, msg in hostile_images(lambda: Time(sec=1_700_000_000, nanosec=5)):
        try:
            decoder(msg)
            stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
            causes[kind] = "accepted"
        except (ImageDecodeError, BadStamp) as exc:
            causes[kind] = exc.cause
    assert causes == {"line_1x30000": "bad_aspect", "declared_30000x30000": "too_large",
                      "unsupported_encoding": "unsupported_encoding", "truncated": "truncated",
                      "nanosec_4e9": "bad_stamp", "negative_sec": "bad_stamp"}


def test_soak_slope_and_json_helpers(tmp_path):
    from repflow_ros.bench_soak import slope_per_minute
    from repflow_ros.graph_runner import write_json

    assert slope_per_minute([(0, 100.0), (30, 100.5), (60, 101.0)]) == pytest.approx(1.0)
    assert slope_per_minute([(0, 1.0)]) is None
    write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(ValueError):
        write_json(tmp_path / "b.json", {"x": float("nan")})  # RFC 8259 has no NaN
    assert not (tmp_path / "b.json").exists()


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
