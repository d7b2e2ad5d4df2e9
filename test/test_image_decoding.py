"""repflow_ros.image_decoding: the built-in decoder (no cv_bridge) on real sensor_msgs messages."""

import array
import sys
import types

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from repflow_ros import image_decoding as idec
from repflow_ros.image_decoding import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    ImageDecoder,
    decode_compressed_image,
    decode_image,
    resize_rgb,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)

# 3 rows x 4 columns, every pixel a distinct colour.
RGB = np.array(
    [
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]],
        [[0, 0, 0], [10, 20, 30], [200, 100, 50], [1, 2, 3]],
        [[128, 64, 32], [32, 64, 128], [250, 5, 125], [77, 177, 7]],
    ],
    dtype=np.uint8,
)
H, W = RGB.shape[:2]


def make_image(pixels, encoding, step=None, is_bigendian=0, pad_value=0xEE):
    """A real sensor_msgs/Image holding `pixels` (H, W[, C]) with optional row padding up to `step` bytes."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    row_bytes = rows.shape[1]
    step = row_bytes if step is None else step
    padded = np.full((height, step), pad_value, dtype=np.uint8)
    padded[:, :row_bytes] = rows
    msg = Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.step, msg.is_bigendian = step, is_bigendian
    msg.data = array.array("B", padded.tobytes())
    return msg


def _compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = array.array("B", data)
    return msg


def test_supported_encodings_lists_the_required_ones():
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        assert enc in SUPPORTED_ENCODINGS


def test_rgb8_decodes_to_same_values_as_a_fresh_array():
    msg = make_image(RGB, "rgb8")
    out = decode_image(msg)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, RGB)
    out[0, 0] = 7  # the result is writable and does not alias the message buffer
    assert msg.data[0] == 255


def test_bgr8_decodes_to_rgb():
    np.testing.assert_array_equal(decode_image(make_image(RGB[..., ::-1], "bgr8")), RGB)


def test_rgba8_drops_alpha():
    rgba = np.dstack([RGB, np.full((H, W), 99, np.uint8)])
    np.testing.assert_array_equal(decode_image(make_image(rgba, "rgba8")), RGB)


def test_bgra8_decodes_to_rgb():
    bgra = np.dstack([RGB[..., ::-1], np.full((H, W), 3, np.uint8)])
    np.testing.assert_array_equal(decode_image(make_image(bgra, "bgra8")), RGB)


def test_mono8_is_replicated_to_three_channels():
    grey = RGB[..., 0]
    out = decode_image(make_image(grey, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_opencv_type_names_are_mono8_and_bgr8():
    np.testing.assert_array_equal(decode_image(make_image(RGB[..., ::-1], "8UC3")), RGB)
    np.testing.assert_array_equal(decode_image(make_image(RGB[..., 1], "8UC1"))[..., 0], RGB[..., 1])


def test_mono16_keeps_high_byte_little_and_big_endian():
    values = (RGB[..., 0].astype(np.uint16) << 8) | RGB[..., 1].astype(np.uint16)  # high byte = R, low byte = G
    little = decode_image(make_image(values.astype("<u2"), "mono16", is_bigendian=0))
    big = decode_image(make_image(values.astype(">u2"), "mono16", is_bigendian=1))
    expected = np.repeat(RGB[..., :1], 3, axis=2)
    np.testing.assert_array_equal(little, expected)
    np.testing.assert_array_equal(big, expected)


def test_mono16_endianness_flag_is_honoured():
    values = np.full((H, W), 0x1234, np.uint16)
    wrong = decode_image(make_image(values.astype("<u2"), "mono16", is_bigendian=1))
    assert (wrong == 0x34).all()  # read big-endian, the little-endian bytes give the low byte


def _yuv_planes():
    rng = np.random.default_rng(0)
    y = rng.integers(16, 236, size=(H, W), dtype=np.uint8)
    u = rng.integers(16, 241, size=(H, W // 2), dtype=np.uint8)  # one U, V per horizontal pixel pair
    v = rng.integers(16, 241, size=(H, W // 2), dtype=np.uint8)
    return y, u, v


def _bt601_reference(y, u, v):
    u_full = np.repeat(u, 2, axis=1).astype(np.float64) - 128
    v_full = np.repeat(v, 2, axis=1).astype(np.float64) - 128
    yy = 1.164 * (y.astype(np.float64) - 16)
    rgb = np.dstack([yy + 1.596 * v_full, yy - 0.391 * u_full - 0.813 * v_full, yy + 2.018 * u_full])
    return np.clip(np.round(rgb), 0, 255)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy"])
def test_uyvy_decodes_like_opencv_and_bt601(encoding):
    y, u, v = _yuv_planes()
    packed = np.empty((H, W * 2), np.uint8)  # U0 Y0 V0 Y1 per pixel pair
    packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    out = decode_image(make_image(packed.reshape(H, W, 2), encoding))
    np.testing.assert_array_equal(out, cv2.cvtColor(packed.reshape(H, W, 2), cv2.COLOR_YUV2RGB_UYVY))
    assert np.abs(out.astype(np.float64) - _bt601_reference(y, u, v)).max() <= 3


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "yuyv"])
def test_yuyv_decodes_like_opencv_and_bt601(encoding):
    y, u, v = _yuv_planes()
    packed = np.empty((H, W * 2), np.uint8)  # Y0 U0 Y1 V0 per pixel pair
    packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    out = decode_image(make_image(packed.reshape(H, W, 2), encoding))
    np.testing.assert_array_equal(out, cv2.cvtColor(packed.reshape(H, W, 2), cv2.COLOR_YUV2RGB_YUYV))
    assert np.abs(out.astype(np.float64) - _bt601_reference(y, u, v)).max() <= 3


@pytest.mark.parametrize("encoding,pixels", [("rgb8", RGB), ("bgr8", RGB[..., ::-1]), ("mono8", RGB[..., 2])])
def test_step_padding_is_skipped(encoding, pixels):
    row_bytes = W * (1 if encoding == "mono8" else 3)
    out = decode_image(make_image(pixels, encoding, step=row_bytes + 5))
    expected = RGB if encoding != "mono8" else np.repeat(RGB[..., 2:3], 3, axis=2)
    np.testing.assert_array_equal(out, expected)


def test_mono16_step_padding_is_skipped():
    values = RGB[..., 0].astype(np.uint16) << 8
    out = decode_image(make_image(values.astype("<u2"), "mono16", step=W * 2 + 6))
    np.testing.assert_array_equal(out[..., 0], RGB[..., 0])


def test_bytes_and_list_data_are_accepted():
    msg = make_image(RGB, "rgb8")
    duck = types.SimpleNamespace(
        height=msg.height, width=msg.width, encoding="rgb8", step=msg.step, is_bigendian=0, data=bytes(msg.data)
    )
    np.testing.assert_array_equal(decode_image(duck), RGB)
    duck.data = list(msg.data)
    np.testing.assert_array_equal(decode_image(duck), RGB)


def test_truncated_data_raises_truncated():
    msg = make_image(RGB, "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDecodeError) as err:
        decode_image(msg)
    assert err.value.cause == "truncated"
    assert f"data has {H * W * 3 - 1} bytes, expected {H} rows x step {W * 3} = {H * W * 3}" in str(err.value)


def test_unsupported_encoding_raises_unsupported_encoding():
    msg = make_image(RGB[..., 0], "bayer_rggb8")
    with pytest.raises(ImageDecodeError) as err:
        decode_image(msg)
    assert err.value.cause == "unsupported_encoding"
    assert "'bayer_rggb8'" in str(err.value) and "rgb8" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_step_smaller_than_row_raises_bad_step():
    msg = make_image(RGB, "rgb8")
    msg.step = W * 3 - 1
    with pytest.raises(ImageDecodeError) as err:
        decode_image(msg)
    assert err.value.cause == "bad_step"


def test_empty_image_raises_empty():
    with pytest.raises(ImageDecodeError) as err:
        decode_image(Image())
    assert err.value.cause == "empty"


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt):
    rng = np.random.default_rng(1)
    smooth = cv2.resize(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), (48, 32), interpolation=cv2.INTER_LINEAR)
    msg = rgb_to_compressed_msg(smooth, fmt=fmt, quality=95, stamp=1.5, frame_id="cam")
    assert isinstance(msg, CompressedImage) and fmt in msg.format
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000
    out = decode_compressed_image(msg)
    assert out.shape == smooth.shape and out.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(out, smooth)
    else:
        assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 4


def test_compressed_plain_jpeg_from_opencv_is_rgb():
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    ok, buf = cv2.imencode(".jpg", bgr)
    out = decode_compressed_image(_compressed(buf.tobytes(), "rgb8; jpeg compressed bgr8"))
    assert out[..., 0].min() > 240 and out[..., 1:].max() < 15


def test_corrupt_compressed_raises_compressed_decode_failed():
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed_image(_compressed(b"\xff\xd8\xff\xe0 definitely not a jpeg", "jpeg"))
    assert err.value.cause == "compressed_decode_failed"


def test_empty_compressed_raises_empty():
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed_image(_compressed(b"", "png"))
    assert err.value.cause == "empty"


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rgb_to_image_msg_round_trip(encoding):
    msg = rgb_to_image_msg(RGB, stamp=12.25, frame_id="camera_optical", encoding=encoding)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (H, W, encoding, W * 3)
    assert msg.header.frame_id == "camera_optical"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 250_000_000)
    np.testing.assert_array_equal(decode_image(msg), RGB)


def test_rgb_to_image_msg_rejects_non_rgb_input():
    with pytest.raises(ValueError):
        rgb_to_image_msg(RGB.astype(np.float32))


def test_resize_rgb_down_uses_area_and_up_uses_linear():
    img = np.zeros((4, 4, 3), np.uint8)
    img[::2, ::2] = 255  # a checkerboard of single pixels: area averaging gives the mean
    down = resize_rgb(img, (2, 2))
    assert down.shape == (2, 2, 3) and (down == 64).all()
    up = resize_rgb(RGB, (6, 8))
    np.testing.assert_array_equal(up, cv2.resize(RGB, (8, 6), interpolation=cv2.INTER_LINEAR))
    assert resize_rgb(RGB, (H, W)) is RGB


def test_decoder_without_cv_bridge_uses_builtin(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # import cv_bridge -> ImportError
    idec._cv_bridge_class.cache_clear()
    try:
        assert not idec.cv_bridge_available()
        decoder = ImageDecoder()
        assert decoder.backend == "builtin"
        np.testing.assert_array_equal(decoder(make_image(RGB[..., ::-1], "bgr8")), RGB)
        with pytest.raises(ImageDecodeError):
            decoder(make_image(RGB, "bayer_rggb8"))
    finally:
        idec._cv_bridge_class.cache_clear()


def test_decoder_uses_cv_bridge_when_importable_and_can_opt_out(monkeypatch):
    calls = []

    class FakeBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            calls.append(desired_encoding)
            return decode_image(msg)

        def compressed_imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            calls.append("compressed")
            return cv2.cvtColor(decode_compressed_image(msg), cv2.COLOR_RGB2BGR)

    monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=FakeBridge))
    idec._cv_bridge_class.cache_clear()
    try:
        assert idec.cv_bridge_available()
        decoder = ImageDecoder(prefer_cv_bridge=True)
        assert decoder.backend == "cv_bridge"
        np.testing.assert_array_equal(decoder.decode(make_image(RGB, "rgb8")), RGB)
        png = rgb_to_compressed_msg(RGB, fmt="png")
        np.testing.assert_array_equal(decoder.decode_compressed(png), RGB)
        assert calls == ["rgb8", "compressed"]
        assert ImageDecoder(prefer_cv_bridge=False).backend == "builtin"
    finally:
        idec._cv_bridge_class.cache_clear()
