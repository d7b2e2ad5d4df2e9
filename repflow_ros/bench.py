"""ROS-level benchmark of the recognizer node, with real processes over DDS.

    python -m repflow_ros.bench [--model PATH] [--device cpu] [--seconds 15] [--out bench_results/ros_bench.json]

The recognizer runs as its own process (``python -m repflow_ros.recognizer_node`` with ``config/recognize.yaml``)
on a private ``ROS_DOMAIN_ID``, host-local discovery. This process publishes raw ``rgb8`` images (320x240 by
default, synthetic action frames, RELIABLE depth 10 like a camera driver) with real, increasing stamps, and listens
to ``/repflow_recognizer/prediction`` and ``/diagnostics``.

Measured:

1. **Steady state at ``--fps`` (default 30)** for ``--seconds``: windows (predictions) per second, and end-to-end
   latency p50/p95/max: the node's ``latency_ms`` (newest frame stamp -> prediction publish) and, as a
   cross-check, the time this process receives the prediction minus the newest frame's stamp.
2. **Sustained intake rate**: images are published at increasing rates (``--rates``, default 15 30 60 120 240 fps)
   for ``--step-seconds`` each; frames published are compared with the node's ``frames_in`` counter from
   /diagnostics (read once it has settled after each step). The result is the highest rate with < 1 % loss; the
   sweep stops after the first rate that loses more, or when this process cannot publish at the asked rate (then
   the achieved rate is reported and the figure is a lower bound). Frames the node takes in but skips because
   the window is stale (inference slower than the input) are not intake losses; they are shown separately.

With ``--soak MINUTES`` it runs the soak benchmark instead (``repflow_ros.bench_soak``): a 640x480 camera at
``--fps`` with bursts of hostile frames, the node's RSS sampled every second, labels/s and drops by cause.

Numbers depend on the machine and on what else runs on it; the JSON records device, CPU count and settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_soak import print_soak, soak
from .graph_runner import (
    CAMERA_TOPIC,
    RECOGNIZER_NODE,
    Child,
    Monitor,
    RunError,
    checkpoint_window,
    diag_int,
    find_params_file,
    fmt,
    install_sigterm_handler,
    percentile,
    resolve_model,
    ros_args,
    ros_environment,
    write_json,
)

BENCH_TOPIC = CAMERA_TOPIC
DEFAULT_RATES = (15.0, 30.0, 60.0, 120.0, 240.0)
FRAMES_IN_KEYS = ("frames_in", "frames_received")


def _frames(width: int, height: int, n: int = 32) -> list[Any]:
    """A short synthetic action clip as RGB frames (falls back to noise if the renderer is unavailable)."""
    try:
        from repflow_core.data.synthetic import render_clip

        return list(render_clip("wave", n, size=(height, width), seed=7, generation=1))
    except Exception:
        import numpy as np

        rng = np.random.default_rng(7)
        return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


class Publisher:
    """Paced image publisher on the monitor's node; stamps are the node clock at publish time."""

    def __init__(self, monitor: Monitor, width: int, height: int, topic: str = BENCH_TOPIC):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from .image_decoding import rgb_to_image_msg

        self.node = monitor.node
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
        self.pub = self.node.create_publisher(Image, topic, qos)
        self.msgs = [rgb_to_image_msg(f, frame_id="camera_frame", encoding="rgb8") for f in _frames(width, height)]
        self.index = 0
        self.total = 0

    def run(self, rate: float, seconds: float, stop_check=None) -> dict[str, float]:
        """Publish at ``rate`` for ``seconds``; returns frames published and the rate achieved."""
        period = 1.0 / rate
        count = int(round(rate * seconds))
        t0 = time.perf_counter()
        for i in range(count):
            target = t0 + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            msg = self.msgs[self.index % len(self.msgs)]
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.pub.publish(msg)
            self.index += 1
            self.total += 1
            if stop_check is not None and i % 30 == 0:
                stop_check()
        elapsed = time.perf_counter() - t0
        achieved = (count - 1) / elapsed if count > 1 and elapsed > 0 else float(rate)
        return {"published": count, "seconds": elapsed, "achieved_fps": achieved}


def _wait_settled(monitor: Monitor, timeout: float = 10.0) -> dict[str, str]:
    """Latest recognizer diagnostics once frames_in has stopped changing over two fresh reports."""
    end = time.time() + timeout
    last_value, last_time, same = None, None, 0
    values: dict[str, str] = {}
    while time.time() < end:
        values = monitor.node_diagnostics(RECOGNIZER_NODE)
        received = values.get("_received")
        if received is not None and received != last_time:
            last_time = received
            value = diag_int(values, *FRAMES_IN_KEYS)
            same = same + 1 if value == last_value else 0
            last_value = value
            if same >= 1:
                return values
        time.sleep(0.05)
    return values


def _drop_counters(values: dict[str, str]) -> dict[str, int]:
    out = {}
    for key, value in values.items():
        if "drop" in key or "skip" in key or "stale" in key:
            try:
                out[key] = int(float(value))
            except ValueError:
                pass
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m repflow_ros.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint .pt (default: the packaged model)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seconds", type=float, default=15.0, help="duration of the steady-state phase at --fps")
    p.add_argument("--fps", type=float, default=30.0, help="input rate of the steady-state phase")
    p.add_argument("--hop", type=int, default=None, help="recognizer hop (default: config)")
    p.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES), help="intake sweep rates (fps)")
    p.add_argument("--step-seconds", type=float, default=3.0, help="duration of each intake sweep step")
    p.add_argument("--width", type=int, default=None, help="image width (default 320; 640 with --soak)")
    p.add_argument("--height", type=int, default=None, help="image height (default 240; 480 with --soak)")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                   help="run the soak benchmark for MINUTES instead (memory, labels/s, drops under hostile bursts)")
    p.add_argument("--hostile-every", type=float, default=10.0, help="seconds between hostile bursts (--soak)")
    p.add_argument("--qos", action="store_true",
                   help="measure instead which image QoS keeps a camera's frames (repflow_ros.bench_qos): transports "
                   "x formats x rates x QoS, frames received / sent")
    p.add_argument("--qos-seconds", type=float, default=5.0, help="seconds per cell of --qos")
    p.add_argument("--params-file", default=None, help="parameters YAML (default: config/recognize.yaml)")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--out", default=None, help="JSON results (default bench_results/ros_bench.json, "
                   "bench_results/ros_soak.json with --soak)")
    args = p.parse_args(argv)
    if args.soak is not None and not args.soak > 0:
        p.error(f"--soak must be a positive number of minutes, got {args.soak}")
    if args.hostile_every <= 0:
        p.error(f"--hostile-every must be positive, got {args.hostile_every}")
    soak = args.soak is not None
    args.width = args.width or (640 if soak else 320)
    args.height = args.height or (480 if soak else 240)
    args.out = args.out or ("bench_results/ros_soak.json" if soak else "bench_results/ros_bench.json")
    return args


def wait_until_up(monitor: Monitor, pub: Publisher, node: Child, timeout: float, check_alive) -> None:
    """Until the node's subscription matched this publisher and its diagnostics were seen (RunError on timeout)."""
    end = time.time() + timeout
    while pub.pub.get_subscription_count() < 1 or not monitor.node_diagnostics(RECOGNIZER_NODE):
        check_alive()
        if time.time() > end:
            raise RunError(f"the recognizer did not come up within {timeout:g} s; last lines of "
                           f"{node.log_path}:\n{node.tail()}")
        time.sleep(0.1)


def measure_steady_state(args: argparse.Namespace, monitor: Monitor, pub: Publisher, node: Child,
                         check_alive) -> dict[str, Any]:
    """Windows/s and latency while publishing at ``--fps`` for ``--seconds`` (phase 1 of the module docstring)."""
    with monitor.lock:
        n0 = len(monitor.predictions)
    t0 = time.time()
    steady = pub.run(args.fps, args.seconds, check_alive)
    t1 = time.time()
    time.sleep(1.0)  # predictions of the last windows
    with monitor.lock:
        preds = [p for p in monitor.predictions[n0:] if float(p.get("stamp", 0)) >= t0 - 0.5]
    in_phase = [p for p in preds if p["_received"] <= t1 + 1.0]
    lat = [float(p["latency_ms"]) for p in in_phase if p.get("latency_ms") is not None]
    e2e = [1000.0 * (p["_received"] - float(p["stamp"])) for p in in_phase]
    result = {
        "fps_requested": args.fps, "fps_published": steady["achieved_fps"], "seconds": steady["seconds"],
        "frames_published": steady["published"], "windows": len(in_phase),
        "windows_per_second": len(in_phase) / steady["seconds"] if steady["seconds"] > 0 else None,
        "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "max": max(lat) if lat else None},
        "receive_latency_ms": {"p50": percentile(e2e, 50), "p95": percentile(e2e, 95),
                               "max": max(e2e) if e2e else None},
    }
    if not in_phase:
        raise RunError(f"no prediction arrived during the steady-state phase; last lines of {node.log_path}:\n"
                       f"{node.tail()}")
    print(f"steady state at {args.fps:g} fps: {len(in_phase)} windows, "
          f"{fmt(result['windows_per_second'], '{:.2f}')} windows/s, "
          f"latency p50 {fmt(percentile(lat, 50))} ms p95 {fmt(percentile(lat, 95))} ms", flush=True)
    return result


def intake_step(monitor: Monitor, pub: Publisher, rate: float, seconds: float, before: dict[str, str],
                check_alive) -> tuple[dict[str, Any], dict[str, str]]:
    """One sweep step: publish at ``rate``, compare with the node's frames_in once settled. (row, diagnostics)"""
    base = diag_int(before, *FRAMES_IN_KEYS)
    drops0 = _drop_counters(before)
    step = pub.run(rate, seconds, check_alive)
    after = _wait_settled(monitor)
    now_in = diag_int(after, *FRAMES_IN_KEYS)
    received = (now_in - base) if (now_in is not None and base is not None) else None
    loss = (1.0 - received / step["published"]) if received is not None else None
    drops = {k: v - drops0.get(k, 0) for k, v in _drop_counters(after).items()}
    row = {"fps_requested": rate, "fps_published": step["achieved_fps"], "published": step["published"],
           "received": received, "loss": loss, "node_drop_counters": drops,
           "publisher_limited": step["achieved_fps"] < 0.95 * rate}
    print(f"  intake {rate:6.0f} fps (published at {step['achieved_fps']:.0f}): "
          f"{step['published']} sent, {fmt(received, '{}')} received, loss "
          f"{fmt(None if loss is None else 100 * loss, '{:.2f}')} %  (windows skipped while busy: "
          f"{drops.get('windows_skipped_busy', 'n/a')})", flush=True)
    return row, after


def measure_intake(args: argparse.Namespace, monitor: Monitor, pub: Publisher, check_alive) -> dict[str, Any]:
    """The intake sweep (phase 2 of the module docstring): the highest rate with < 1 % loss."""
    sweep: list[dict[str, Any]] = []
    before = _wait_settled(monitor)
    best: float | None = None
    for rate in args.rates:
        row, before = intake_step(monitor, pub, rate, args.step_seconds, before, check_alive)
        sweep.append(row)
        loss = row["loss"]
        if loss is None:
            break
        if loss < 0.01:
            best = row["fps_published"] if row["publisher_limited"] else rate
        if loss >= 0.01 or row["publisher_limited"]:
            break
    return {"intake_sweep": sweep, "max_sustained_intake_fps": best,
            "intake_limited_by_publisher": bool(sweep and sweep[-1]["publisher_limited"]
                                                and (sweep[-1]["loss"] or 0) < 0.01)}


def run(args: argparse.Namespace) -> int:
    model = resolve_model(args.model)
    window = checkpoint_window(model)
    params_file = find_params_file(args.params_file)
    env = ros_environment()
    out = Path(args.out)
    params: dict[str, Any] = {"model_path": str(model), "device": args.device}
    if args.hop is not None:
        params["hop"] = args.hop
    argv = [sys.executable, "-m", "repflow_ros.recognizer_node"] + ros_args(params_file, params, {"image": BENCH_TOPIC})
    print(f"repflow ROS bench: model {model}, device {args.device}, ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}", flush=True)
    monitor = Monitor(name="repflow_bench", ground_truth=False)
    node: Child | None = None

    def check_alive():
        if node is not None and node.poll() is not None:
            raise RunError(f"the recognizer exited with status {node.poll()}; last lines of {node.log_path}:\n"
                           f"{node.tail()}")

    result: dict[str, Any] = {
        "model": str(model), "device": args.device, "clip_len": window["clip_len"], "hop": args.hop,
        "image_size": [args.width, args.height], "encoding": "rgb8", "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        node = Child("bench_recognizer", argv, env, out.parent)
        pub = Publisher(monitor, args.width, args.height)
        wait_until_up(monitor, pub, node, args.startup_timeout, check_alive)
        print("recognizer up; warming up (2 s at the steady-state rate)", flush=True)
        pub.run(args.fps, 2.0, check_alive)
        _wait_settled(monitor)
        if args.soak is not None:
            result["fps"] = args.fps
            result["soak"] = soak(args, monitor, pub, node, check_alive)
        else:
            result["steady_state"] = measure_steady_state(args, monitor, pub, node, check_alive)
            result.update(measure_intake(args, monitor, pub, check_alive))
        result["node_diagnostics"] = {k: v for k, v in monitor.node_diagnostics(RECOGNIZER_NODE).items()
                                      if not k.startswith("_")}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    except RunError as exc:
        print(f"bench failed: {exc}", file=sys.stderr, flush=True)
        return exc.code
    finally:
        try:
            if node is not None:
                node.stop()
        except KeyboardInterrupt:
            node._signal(signal.SIGKILL)
        monitor.close()

    if args.soak is not None:
        print_soak(result)
    else:
        print_table(result)
    write_json(out, result)
    print(f"results written to {out}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    s = r["steady_state"]
    print("\n=== repflow_recognizer over DDS ===")
    print(f"{'model':<34}{r['model']}")
    print(f"{'device':<34}{r['device']}   (cpus {r['cpu_count']})")
    print(f"{'input':<34}{r['image_size'][0]}x{r['image_size'][1]} rgb8")
    print(f"{'windows/s at ' + format(s['fps_requested'], 'g') + ' fps':<34}{fmt(s['windows_per_second'], '{:.2f}')}")
    print(f"{'latency p50 / p95 / max (ms)':<34}{fmt(s['latency_ms']['p50'])} / {fmt(s['latency_ms']['p95'])} / "
          f"{fmt(s['latency_ms']['max'])}")
    print(f"{'  received here p50 / p95 (ms)':<34}{fmt(s['receive_latency_ms']['p50'])} / "
          f"{fmt(s['receive_latency_ms']['p95'])}")
    best = r.get("max_sustained_intake_fps")
    note = " (publisher-limited: lower bound)" if r.get("intake_limited_by_publisher") else ""
    print(f"{'max intake with < 1% loss (fps)':<34}{fmt(best, '{:.0f}', 'none of the rates')}{note}")
    for row in r.get("intake_sweep", []):
        loss = row["loss"]
        print(f"    {row['fps_requested']:>6.0f} fps: sent {row['published']:>5}, received "
              f"{fmt(row['received'], '{}'):>5}, loss {fmt(None if loss is None else 100 * loss, '{:.2f}')} %")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    if args.qos:
        from .bench_qos import print_qos, run_qos_matrix

        result = run_qos_matrix(args.qos_seconds)
        print_qos(result)
        out = Path(args.out if args.out != "bench_results/ros_bench.json" else "bench_results/ros_qos.json")
        write_json(out, result)
        print(f"results written to {out}")
        return 0
    try:
        return run(args)
    except RunError as exc:
        print(f"bench failed: {exc}", file=sys.stderr, flush=True)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
