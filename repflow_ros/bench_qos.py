"""Which image QoS keeps a camera's frames: ``python -m repflow_ros.bench --qos`` (issue 11).

For each cell -- Fast DDS transport (``FASTDDS_BUILTIN_TRANSPORTS``: ``DEFAULT`` = shared memory + UDP on one host,
``UDPv4`` = what a remote camera gets), frame format (raw rgb8 640x480 and 1280x720, JPEG 1280x720), rate (15, 30
fps) and subscription QoS (``sensor_data`` = best effort keep-last 5, ``reliable`` keep-last 5, ``reliable1`` =
reliable keep-last 1) -- a publisher process (RELIABLE keep-last 10, like camera drivers) sends frames for
``--qos-seconds`` while a subscriber process with that QoS receives them doing the node's per-frame work (decode and
resize to the model's short side); the cell's figure is frames received / frames sent. Both are fresh processes on a
private ``ROS_DOMAIN_ID`` with host-local discovery. The load average is recorded with the results: on a shared
machine read the ratios, not the absolute rates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["QOS_CHOICES", "FORMATS", "run_qos_matrix", "print_qos"]

QOS_CHOICES = ("sensor_data", "reliable", "reliable1")
FORMATS = {"raw640": (640, 480, "raw"), "raw1280": (1280, 720, "raw"), "jpeg1280": (1280, 720, "jpeg")}
TRANSPORTS = ("DEFAULT", "UDPv4")
TOPIC = "/qos_bench/image_raw"


def _qos(name: str):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if name == "sensor_data":
        return qos_profile_sensor_data
    depth = 1 if name == "reliable1" else 5
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth)


def _frame(width: int, height: int, i: int):
    """A smooth moving test picture (compresses like a camera image, unlike noise)."""
    import numpy as np

    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = (x + y + 8 * i) % 256
    return np.stack([base, np.flipud(base), (base * 0.5 + 64) % 256], axis=2).astype(np.uint8)


def _publisher(fmt: str, fps: float, seconds: float) -> dict[str, Any]:
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from .image_decoding import rgb_to_compressed_msg, rgb_to_image_msg

    width, height, kind = FORMATS[fmt]
    rclpy.init()
    node = rclpy.create_node("qos_bench_camera")
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
    topic = TOPIC + "/compressed" if kind == "jpeg" else TOPIC
    from sensor_msgs.msg import Image

    pub = node.create_publisher(CompressedImage if kind == "jpeg" else Image, topic, qos)
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # let the match settle on both sides before counting
    frames = [_frame(width, height, i) for i in range(8)]
    msgs = [rgb_to_compressed_msg(f, "jpeg") if kind == "jpeg" else rgb_to_image_msg(f) for f in frames]
    size = len(msgs[0].data)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        msg = msgs[sent % len(msgs)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = str(sent)
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / fps - time.monotonic()))
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # reliable retransmissions
    node.destroy_node()
    rclpy.try_shutdown()
    return {"sent": sent, "sent_fps": sent / elapsed, "bytes": size}


def _subscriber(fmt: str, qos: str, seconds: float) -> dict[str, Any]:
    import cv2
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    width, height, kind = FORMATS[fmt]
    rclpy.init()
    node = rclpy.create_node("qos_bench_subscriber")
    seqs: set[int] = set()
    first = [0.0]

    def on_msg(msg) -> None:  # the node's intake work: decode, resize the short side to 128
        if kind == "jpeg":
            rgb = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        else:
            rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        scale = 128.0 / min(rgb.shape[:2])
        cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        first[0] = first[0] or time.monotonic()
        seqs.add(int(msg.header.frame_id))

    topic = TOPIC + "/compressed" if kind == "jpeg" else TOPIC
    node.create_subscription(CompressedImage if kind == "jpeg" else Image, topic, on_msg, _qos(qos))
    print("ready", flush=True)
    deadline = time.monotonic() + 60.0
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if first[0] and time.monotonic() - first[0] > seconds + 2.0:
            break
    node.destroy_node()
    rclpy.try_shutdown()
    return {"received": len(seqs)}


def _child_env(transport: str, domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FASTDDS_BUILTIN_TRANSPORTS=transport, ROS_DOMAIN_ID=str(domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return env


def run_cell(transport: str, fmt: str, fps: float, qos: str, seconds: float, domain: int) -> dict[str, Any]:
    env = _child_env(transport, domain)
    base = [sys.executable, "-m", "repflow_ros.bench_qos", "--child"]
    sub = subprocess.Popen(base + ["sub", fmt, qos, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("the subscriber did not start")
        pub = subprocess.run(base + ["pub", fmt, str(fps), str(seconds)], env=env, capture_output=True, text=True,
                             timeout=seconds + 120)
        sent = json.loads(pub.stdout.strip().splitlines()[-1])
        out, _ = sub.communicate(timeout=seconds + 90)
        received = json.loads(out.strip().splitlines()[-1])
    finally:
        if sub.poll() is None:
            sub.kill()
    cell = {"transport": transport, "format": fmt, "fps": fps, "qos": qos, **sent, **received}
    cell["ratio"] = received["received"] / sent["sent"] if sent["sent"] else 0.0
    return cell


def run_qos_matrix(seconds: float = 5.0, transports: Sequence[str] = TRANSPORTS,
                   formats: Sequence[str] = tuple(FORMATS), rates: Sequence[float] = (15.0, 30.0),
                   qos_choices: Sequence[str] = QOS_CHOICES, log=print) -> dict[str, Any]:
    """Every cell of the matrix (module docstring); returns {"cells": [...], "load_before", "load_after", ...}."""
    domain = 101 + os.getpid() % 100  # Fast DDS accepts up to 232; kept apart from the tests' 1..100
    result: dict[str, Any] = {"seconds_per_cell": seconds, "load_before": os.getloadavg(),
                              "cpus": os.cpu_count(), "cells": []}
    for transport in transports:
        for fmt in formats:
            for fps in rates:
                for qos in qos_choices:
                    cell = run_cell(transport, fmt, fps, qos, seconds, domain)
                    result["cells"].append(cell)
                    log(f"{transport:8s} {fmt:9s} {fps:4.0f} fps {qos:12s} received {cell['received']:4d} / "
                        f"{cell['sent']:4d} = {100 * cell['ratio']:5.1f}%  ({cell['bytes'] / 1e6:.2f} MB/frame, "
                        f"load {os.getloadavg()[0]:.1f})")
    result["load_after"] = os.getloadavg()
    return result


def print_qos(result: dict[str, Any]) -> None:
    """A table: one row per transport/format/rate, one column per QoS (% of frames received)."""
    cells = result["cells"]
    qos_names = list(dict.fromkeys(c["qos"] for c in cells))
    print(f"\n=== frames received / sent ({result['seconds_per_cell']:.0f} s per cell; load "
          f"{result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f} on {result['cpus']} CPUs) ===")
    print(f"{'transport':9s} {'format':9s} {'fps':>4s} " + " ".join(f"{q:>12s}" for q in qos_names))
    rows = dict.fromkeys((c["transport"], c["format"], c["fps"]) for c in cells)
    for transport, fmt, fps in rows:
        values = {c["qos"]: c["ratio"] for c in cells
                  if (c["transport"], c["format"], c["fps"]) == (transport, fmt, fps)}
        print(f"{transport:9s} {fmt:9s} {fps:4.0f} " + " ".join(f"{100 * values.get(q, 0):11.1f}%" for q in qos_names))


def _child(argv: Sequence[str]) -> None:
    role = argv[0]
    if role == "pub":
        print(json.dumps(_publisher(argv[1], float(argv[2]), float(argv[3]))), flush=True)
    else:
        print(json.dumps(_subscriber(argv[1], argv[2], float(argv[3]))), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        print_qos(run_qos_matrix(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0))
