"""Real bags for the tests, written with ``rosbags`` (ROS 2 sqlite3 / mcap, ROS 1), with sensor_msgs/Image in any
encoding (optionally with a padded ``step``) or sensor_msgs/CompressedImage (jpeg / png)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

STORAGES = ("sqlite3", "mcap", "ros1")


def _typestore(storage: str):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if storage == "ros1" else Stores.ROS2_HUMBLE)


def _pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    # anything else: bytes of the right size for a 3-byte encoding (used for unsupported encodings)
    return rgb


def image_msg(ts, storage: str, rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8", pad: int = 0):
    """A rosbags sensor_msgs message: Image (``encoding``, ``pad`` garbage bytes per row) or CompressedImage
    (``encoding`` 'jpeg' / 'png')."""
    types = ts.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    header_t = types["std_msgs/msg/Header"]
    header = header_t(seq=0, stamp=time, frame_id="cam") if storage == "ros1" else header_t(stamp=time,
                                                                                            frame_id="cam")
    if encoding in ("jpeg", "png"):
        ok, buf = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return types["sensor_msgs/msg/CompressedImage"](header=header, format=f"rgb8; {encoding} compressed bgr8",
                                                         data=np.frombuffer(buf.tobytes(), np.uint8).copy())
    px = np.ascontiguousarray(_pixels(rgb, encoding))
    h, w = px.shape[:2]
    rows = px.reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xEE, np.uint8)], axis=1)  # garbage in the padding
    return types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                          step=rows.shape[1], data=rows.reshape(-1).copy())


def write_bag(path: Path, storage: str, topic: str, frames: Sequence[np.ndarray], times_s: Sequence[float],
              encoding: str = "rgb8", pad: int = 0, t0_ns: int = 1_700_000_000 * 10**9,
              extra_topic: bool = True) -> Path:
    """Write ``frames`` at ``times_s`` (seconds after ``t0_ns``) on ``topic``; plus a std_msgs/String topic
    ``/chatter`` when ``extra_topic``. Returns the bag path (folder for ROS 2, .bag file for ROS 1)."""
    ts = _typestore(storage)
    kind = "sensor_msgs/msg/CompressedImage" if encoding in ("jpeg", "png") else "sensor_msgs/msg/Image"
    if storage == "ros1":
        from rosbags.rosbag1 import Writer

        path = path.with_suffix(".bag")
        writer = Writer(path)
        serialize = ts.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(path, version=9, storage_plugin=plugin)
        serialize = ts.serialize_cdr
    with writer as w:
        con = w.add_connection(topic, kind, typestore=ts)
        chat = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts) if extra_topic else None
        for rgb, t in zip(frames, times_s):
            stamp = t0_ns + int(round(t * 1e9))
            w.write(con, stamp, serialize(image_msg(ts, storage, rgb, stamp, encoding, pad), kind))
            if chat is not None:
                msg = ts.types["std_msgs/msg/String"](data="hi")
                w.write(chat, stamp, serialize(msg, "std_msgs/msg/String"))
    return path


def storage_file(bag: Path) -> Path:
    """The file holding the messages (.db3 / .mcap in a ROS 2 folder, or the ROS 1 .bag itself)."""
    if bag.is_file():
        return bag
    files = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap")]
    assert len(files) == 1, files
    return files[0]


def colour_frames(colours: Sequence[tuple[int, int, int]], n_each: int, h: int = 48, w: int = 64) -> list:
    """Solid-colour frames, ``n_each`` of each colour, with a white left quarter (shows a sheared decode)."""
    out = []
    for c in colours:
        for _ in range(n_each):
            f = np.empty((h, w, 3), np.uint8)
            f[:] = c
            f[:, : w // 4] = 255
            out.append(f)
    return out
