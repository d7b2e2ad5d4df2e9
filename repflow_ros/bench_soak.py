"""Soak benchmark of the recognizer node (issue 11): ``python -m repflow_ros.bench --soak MINUTES``.

A 640x480 rgb8 camera at 30 fps (``--width/--height/--fps``) publishes to the node (its own process, as in
``repflow_ros.bench``) for ``MINUTES``; every ``--hostile-every`` seconds a burst of hostile frames goes in
between two camera frames (:func:`hostile_images`: a 1 x 30000 line, a frame declaring 30000 x 30000 with 64 bytes
of data, an unsupported encoding, a truncated buffer, a stamp with nanosec = 4e9 and one with a negative sec).

Sampled every second: the node's resident memory (VmRSS and its peak VmHWM from ``/proc/<pid>/status``: the
process's own counters), predictions received (labels/s), and at the end the node's drop counters by cause from
/diagnostics. Memory is *flat* when the RSS growth over the second half of the run, fitted by least squares, stays
under ``FLAT_MB_PER_MIN``: the first half covers warm-up (allocator pools, the first windows).
"""

from __future__ import annotations

import time
from typing import Any

FLAT_MB_PER_MIN = 1.0


def hostile_images(stamp_now) -> list[tuple[str, Any]]:
    """(kind, sensor_msgs/Image) of every hostile case; ``stamp_now()`` gives a valid builtin_interfaces/Time."""
    from sensor_msgs.msg import Image

    def image(width, height, encoding="rgb8", nbytes=None, step=None):
        msg = Image()
        msg.header.stamp = stamp_now()
        msg.header.frame_id = "camera_frame"
        msg.width, msg.height, msg.encoding = width, height, encoding
        msg.step = width * 3 if step is None else step
        msg.data = bytes(width * height * 3 if nbytes is None else nbytes)
        return msg

    bad_nanosec = image(64, 48)
    bad_nanosec.header.stamp.sec, bad_nanosec.header.stamp.nanosec = 5, 4_000_000_000
    negative = image(64, 48)
    negative.header.stamp.sec = -5
    return [("line_1x30000", image(30000, 1)), ("declared_30000x30000", image(30000, 30000, nbytes=64)),
            ("unsupported_encoding", image(64, 48, encoding="bayer_rggb16x")),
            ("truncated", image(640, 480, nbytes=1000)), ("nanosec_4e9", bad_nanosec),
            ("negative_sec", negative)]


def process_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB, from /proc (Linux); empty when unavailable."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return out


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / var


def soak(args, monitor, pub, node, check_alive) -> dict[str, Any]:
    """Run the soak for ``args.soak`` minutes; returns the figures (module docstring)."""
    stamp_now = lambda: pub.node.get_clock().now().to_msg()  # noqa: E731
    hostile_sent: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    with monitor.lock:
        preds0 = len(monitor.predictions)
    t0 = time.monotonic()
    end = t0 + 60.0 * args.soak
    next_hostile = t0 + args.hostile_every
    last_print = t0
    while time.monotonic() < end:
        pub.run(args.fps, 1.0, check_alive)
        now = time.monotonic()
        if now >= next_hostile:
            for kind, msg in hostile_images(stamp_now):
                pub.pub.publish(msg)
                hostile_sent[kind] = hostile_sent.get(kind, 0) + 1
            next_hostile = now + args.hostile_every
        with monitor.lock:
            labels = len(monitor.predictions) - preds0
        mem = process_memory_mb(node.proc.pid)
        samples.append({"t": round(now - t0, 2), "rss_mb": mem.get("VmRSS", float("nan")),
                        "hwm_mb": mem.get("VmHWM", float("nan")), "labels": labels})
        if now - last_print >= 30.0:
            last_print = now
            print(f"  soak {now - t0:6.0f} s: node RSS {mem.get('VmRSS', 0):.0f} MiB (peak {mem.get('VmHWM', 0):.0f}),"
                  f" {labels} labels", flush=True)
    return summarise_soak(samples, hostile_sent, time.monotonic() - t0, monitor)


def summarise_soak(samples: list[dict[str, float]], hostile_sent: dict[str, int], seconds: float,
                   monitor) -> dict[str, Any]:
    from .graph_runner import RECOGNIZER_NODE

    rss = [(s["t"], s["rss_mb"]) for s in samples if s["rss_mb"] == s["rss_mb"]]
    second_half = [p for p in rss if p[0] >= seconds / 2]
    slope = slope_per_minute(second_half)
    diagnostics = monitor.node_diagnostics(RECOGNIZER_NODE)
    drops = {k: int(float(v)) for k, v in diagnostics.items() if k.startswith("frames_dropped_")}
    labels = samples[-1]["labels"] if samples else 0
    return {
        "seconds": round(seconds, 1),
        "labels": labels,
        "labels_per_second": labels / seconds if seconds > 0 else None,
        "rss_mb": {"first": rss[0][1] if rss else None, "last": rss[-1][1] if rss else None,
                   "max": max(v for _, v in rss) if rss else None,
                   "peak_hwm": max((s["hwm_mb"] for s in samples), default=None),
                   "slope_second_half_mb_per_min": slope},
        "memory_flat": slope is not None and abs(slope) < FLAT_MB_PER_MIN,
        "hostile_frames_sent": hostile_sent,
        "node_drops_by_cause": drops,
        "node_window_resets": {k: int(float(v)) for k, v in diagnostics.items() if k.startswith("window_resets_")},
        "frames_in": diagnostics.get("frames_in"),
        "samples": samples,
    }


def print_soak(r: dict[str, Any]) -> None:
    s = r["soak"]
    m = s["rss_mb"]

    def f(v, pattern="{:.1f}"):
        return "n/a" if v is None else pattern.format(v)

    print("\n=== repflow_recognizer soak ===")
    print(f"{'input':<30}{r['image_size'][0]}x{r['image_size'][1]} rgb8 at {r['fps']:g} fps + hostile bursts")
    print(f"{'duration':<30}{s['seconds']:.0f} s")
    print(f"{'labels/s':<30}{f(s['labels_per_second'], '{:.2f}')}")
    print(f"{'node RSS first/last/max (MiB)':<30}{f(m['first'])} / {f(m['last'])} / {f(m['max'])} "
          f"(peak {f(m['peak_hwm'])})")
    print(f"{'RSS slope, 2nd half':<30}{f(m['slope_second_half_mb_per_min'], '{:+.2f}')} MiB/min -> "
          f"{'flat' if s['memory_flat'] else 'NOT flat'}")
    print(f"{'hostile frames sent':<30}{s['hostile_frames_sent']}")
    print(f"{'node drops by cause':<30}{ {k: v for k, v in s['node_drops_by_cause'].items() if v} }")
    print(f"{'node window resets':<30}{ {k: v for k, v in s['node_window_resets'].items() if v} }")
    print(f"{'frames taken in by the node':<30}{s['frames_in']}")
