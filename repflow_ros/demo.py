"""End-to-end demo: the demo camera plays synthetic actions, the recognizer labels them, this script scores it.

    python -m repflow_ros.demo --seconds 60 [--model PATH] [--device auto] [--fps 30] [--hop N]

How it runs
-----------
* With a ROS 2 install (``ros2`` on PATH, the package installed and ``launch_ros`` importable) it runs
  ``ros2 launch repflow_ros recognize.launch.py camera:=sim model_path:=... device:=... [params_file:=...]``
  (``--hop`` goes in through a copy of the params file). The launch file does not set camera options, so
  ``--fps`` other than 30, ``--seed`` or ``--clip-frames`` select the direct path below instead.
* Otherwise (the pip-only path: PyPI's ROS 2 wheels, no ``launch``) it starts ``camera_sim`` and
  ``repflow_recognizer`` itself, as two ``python -m`` subprocesses, with the same ``config/recognize.yaml``
  (``--params-file``) the launch file uses and the camera remapped to ``/camera/image_raw``.

Either way the processes run on a private ``ROS_DOMAIN_ID`` (random in 1..100 unless set) with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (unless set), so the demo never talks to other machines or runs.
Their output goes to log files next to the summary (``demo_output/*.log``).

Scoring
-------
This process subscribes to ``/camera_sim/ground_truth`` (the true action of every published frame, with its stamp)
and ``/repflow_recognizer/prediction``. A prediction's ``stamp`` is the stamp of the newest frame of its window, so
its truth is the ground truth of the frame with that stamp. Its window covers the ``(clip_len - 1) * frame_stride
+ 1`` frames published up to that frame (clip_len/frame_stride from the recognizer's parameters, else from the
checkpoint); the window is *clean* when all of them show the same action and a *boundary* window when it straddles
two clips (its label is then ambiguous). Accuracy is reported over clean windows (the meaningful number) and over
all windows (a boundary window counts as correct when it names the action of its newest frame). The span counts
published frames, so frames the node dropped make the clean/boundary call approximate near clip edges.

At the end it prints accuracy (clean, all), per-class accuracy over clean windows, latency p50/p95/max (the node's
``latency_ms``: newest frame stamp to prediction publish), windows per second, and frames published vs received by
the node (``/diagnostics``), and writes them as JSON to ``--out``.

Exit status: 0 on success; 1 when no prediction arrived (the node's log tail is shown) or a process died;
2 for a missing/unreadable model (including the packaged default before it ships); 130 on Ctrl-C. Child processes
are always stopped (SIGINT, then SIGKILL after ``--stop-timeout`` seconds), also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import bisect
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .graph_runner import (
    CAMERA_TOPIC,
    PREDICTION_TOPIC,
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
    read_node_params,
    resolve_model,
    ros2_launch_available,
    ros_args,
    ros_environment,
    write_json,
)

#: The demo's failures are the shared runner's (kept under this name for callers of earlier versions).
DemoError = RunError


# ---------------------------------------------------------------------------------------------------------------
# scoring


class Scorer:
    """Matches predictions to ground truth by stamp and classifies windows as clean or boundary."""

    def __init__(self, span_frames: int, tolerance_s: float = 1e-3):
        self.span = max(1, int(span_frames))
        self.tolerance = tolerance_s
        self.stamps: list[float] = []
        self.actions: list[str] = []

    def add_truth(self, items: Iterable[dict]) -> None:
        for item in items:
            stamp = float(item["stamp"])
            if self.stamps and stamp <= self.stamps[-1]:  # out of order (should not happen): keep sorted
                i = bisect.bisect_left(self.stamps, stamp)
                if i < len(self.stamps) and abs(self.stamps[i] - stamp) < 1e-9:
                    continue
                self.stamps.insert(i, stamp)
                self.actions.insert(i, str(item["action"]))
            else:
                self.stamps.append(stamp)
                self.actions.append(str(item["action"]))

    def latest_stamp(self) -> float:
        return self.stamps[-1] if self.stamps else float("-inf")

    def score(self, pred: dict) -> dict:
        """{truth, window: clean|boundary|unknown, correct} for one prediction."""
        stamp = float(pred.get("stamp", 0.0))
        i = bisect.bisect_left(self.stamps, stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps) and abs(self.stamps[j] - stamp) <= self.tolerance:
                if best is None or abs(self.stamps[j] - stamp) < abs(self.stamps[best] - stamp):
                    best = j
        label = str(pred.get("label", ""))
        if best is None:
            return {"truth": None, "window": "unknown", "correct": None}
        truth = self.actions[best]
        window = self.actions[max(0, best - self.span + 1): best + 1]
        kind = "clean" if len(set(window)) == 1 else "boundary"
        return {"truth": truth, "window": kind, "correct": label == truth}


def summarise(results: list[dict], wall_s: float, frames_published: int, diagnostics: dict[str, str],
              extra: dict[str, Any]) -> dict[str, Any]:
    scored = [r for r in results if r["window"] != "unknown"]
    clean = [r for r in scored if r["window"] == "clean"]
    per_class: dict[str, dict[str, Any]] = defaultdict(lambda: {"windows": 0, "correct": 0})
    for r in clean:
        per_class[r["truth"]]["windows"] += 1
        per_class[r["truth"]]["correct"] += int(r["correct"])
    for entry in per_class.values():
        entry["accuracy"] = entry["correct"] / entry["windows"]
    latencies = [float(r["latency_ms"]) for r in results if r.get("latency_ms") is not None]
    e2e = [float(r["e2e_ms"]) for r in results if r.get("e2e_ms") is not None]
    received = [r["received"] for r in results]
    span = (max(received) - min(received)) if len(received) > 1 else 0.0
    frames_in = diag_int(diagnostics, "frames_in", "frames_received")
    return {
        **extra,
        "wall_seconds": round(wall_s, 3),
        "windows": len(results),
        "windows_scored": len(scored),
        "windows_clean": len(clean),
        "windows_boundary": len(scored) - len(clean),
        "windows_unmatched": len(results) - len(scored),
        "accuracy_clean": (sum(r["correct"] for r in clean) / len(clean)) if clean else None,
        "accuracy_all": (sum(r["correct"] for r in scored) / len(scored)) if scored else None,
        "per_class_accuracy": {k: per_class[k] for k in sorted(per_class)},
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "max": max(latencies) if latencies else None, "source": "prediction latency_ms"},
        "receive_latency_ms": {"p50": percentile(e2e, 50), "p95": percentile(e2e, 95),
                               "max": max(e2e) if e2e else None,
                               "source": "prediction received by the demo minus newest frame stamp"},
        "windows_per_second": ((len(received) - 1) / span) if span > 0 else None,
        "frames_published": frames_published,
        "frames_received_by_node": frames_in,
        "node_diagnostics": {k: v for k, v in diagnostics.items() if not k.startswith("_")},
    }


def print_summary(s: dict[str, Any]) -> None:
    acc = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print("\n=== summary ===")
    resolved = s.get("node_diagnostics", {}).get("device")
    device = f"{s.get('device')} -> {resolved}" if resolved and resolved != s.get("device") else s.get("device")
    print(f"model            {s.get('model')}  (device {device}, {s.get('mode')})")
    print(f"windows          {s['windows']} ({s['windows_clean']} clean, {s['windows_boundary']} boundary, "
          f"{s['windows_unmatched']} without ground truth)")
    print(f"accuracy         clean windows {acc(s['accuracy_clean'])}   all windows {acc(s['accuracy_all'])}")
    if s["per_class_accuracy"]:
        print("per class (clean windows):")
        for name, entry in s["per_class_accuracy"].items():
            print(f"  {name:<12} {acc(entry['accuracy']):>7}  ({entry['correct']}/{entry['windows']})")
    lat = s["latency_ms"]
    print(f"latency          p50 {fmt(lat['p50'])} ms   p95 {fmt(lat['p95'])} ms   max {fmt(lat['max'])} ms")
    rl = s["receive_latency_ms"]
    print(f"  (at the demo)  p50 {fmt(rl['p50'])} ms   p95 {fmt(rl['p95'])} ms")
    print(f"windows/second   {fmt(s['windows_per_second'], '{:.2f}')}")
    print(f"frames           published {s['frames_published']}   received by the node "
          f"{fmt(s['frames_received_by_node'], '{}')}")




# ---------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m repflow_ros.demo", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run after the first prediction")
    p.add_argument("--model", default=None, help="checkpoint .pt (default: the packaged model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--fps", type=float, default=30.0, help="camera frame rate")
    p.add_argument("--hop", type=int, default=None, help="run the model every N new frames (default: config)")
    p.add_argument("--seed", type=int, default=None, help="synthetic action order seed (default: random)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="frames per synthetic action clip (default: 40, as in training)")
    p.add_argument("--params-file", default=None, help="parameters YAML (default: config/recognize.yaml)")
    p.add_argument("--out", default="demo_output/summary.json", help="JSON summary path")
    p.add_argument("--startup-timeout", type=float, default=120.0,
                   help="seconds to wait for the first prediction before giving up")
    p.add_argument("--stop-timeout", type=float, default=10.0, help="seconds between SIGINT and SIGKILL")
    p.add_argument("--no-launch", action="store_true", help="never use `ros2 launch`, start the nodes directly")
    p.add_argument("--quiet", action="store_true", help="no line per prediction")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.fps <= 0 or (args.hop is not None and args.hop < 1):
        p.error("--seconds and --fps must be positive and --hop >= 1")
    return args


def build_children(args, model: Path, params_file: Path | None, seed: int, env: dict[str, str],
                   log_dir: Path, use_launch: bool, into: list[Child] | None = None) -> list[Child]:
    """Start the processes; each is appended to ``into`` as soon as it runs (so an interrupt cannot orphan one)."""
    into = [] if into is None else into
    rec_params: dict[str, Any] = {"model_path": str(model), "device": args.device}
    if args.hop is not None:
        rec_params["hop"] = args.hop
    # the camera starts when the recognizer subscribes, so "frames published" and the node's "frames in" compare
    cam_params: dict[str, Any] = {"fps": float(args.fps), "seed": seed, "wait_for_subscribers": 1}
    if args.clip_frames is not None:
        cam_params["clip_frames"] = args.clip_frames
    if use_launch:
        # recognize.launch.py takes model_path, device, params_file, image_topic and camera:=sim; the hop goes in
        # through a copy of the params file (the launched camera runs at its defaults: 30 fps, seed 0).
        argv = ["ros2", "launch", "repflow_ros", "recognize.launch.py", "camera:=sim", f"image_topic:={CAMERA_TOPIC}",
                f"model_path:={model}", f"device:={args.device}"]
        if args.hop is not None:
            import yaml

            data = (yaml.safe_load(params_file.read_text()) if params_file is not None else None) or {}
            data.setdefault("/**", {}).setdefault("ros__parameters", {})["hop"] = int(args.hop)
            log_dir.mkdir(parents=True, exist_ok=True)
            merged = log_dir / "demo_params.yaml"
            merged.write_text(yaml.safe_dump(data, sort_keys=False))
            argv.append(f"params_file:={merged}")
        elif params_file is not None:
            argv.append(f"params_file:={params_file}")
        into.append(Child("launch", argv, env, log_dir))
        return into
    py = sys.executable
    camera = [py, "-m", "repflow_ros.camera_sim_node"] + ros_args(params_file, cam_params, {"image": CAMERA_TOPIC})
    recognizer = ([py, "-m", "repflow_ros.recognizer_node"]
                  + ros_args(params_file, rec_params, {"image": CAMERA_TOPIC}))
    # the recognizer first: it takes longest to start (torch, model), the camera publishes as soon as it is up
    into.append(Child("recognizer", recognizer, env, log_dir))
    into.append(Child("camera_sim", camera, env, log_dir))
    return into




@dataclass
class DemoPlan:
    """What a demo run uses, resolved before any process starts."""

    model: Path
    params_file: Path | None
    clip_len: int
    frame_stride: int
    span: int
    seed: int
    env: dict[str, str]
    out: Path
    use_launch: bool

    @property
    def log_dir(self) -> Path:
        return self.out.parent

    @property
    def mode(self) -> str:
        return "ros2 launch" if self.use_launch else "subprocesses (pip-only ROS)"


def plan_demo(args: argparse.Namespace) -> DemoPlan:
    """Model, window geometry (recognizer parameters over the checkpoint's), seed, DDS domain, launch or not."""
    model = resolve_model(args.model)
    window = checkpoint_window(model)
    params_file = find_params_file(args.params_file)
    rec_cfg = read_node_params(params_file, RECOGNIZER_NODE)
    clip_len = int(rec_cfg.get("clip_len") or 0) or window["clip_len"]
    stride = int(rec_cfg.get("frame_stride") or 0) or window["frame_stride"]
    seed = args.seed if args.seed is not None else random.SystemRandom().randint(0, 2**31 - 2)
    # ros2 launch when it is there, unless a camera option asks for what the launch file cannot set
    camera_options = args.fps != 30.0 or args.seed is not None or args.clip_frames is not None
    use_launch = not args.no_launch and not camera_options and ros2_launch_available()
    if use_launch:
        seed = 0  # the launched camera_sim's default
    return DemoPlan(model, params_file, clip_len, stride, (clip_len - 1) * stride + 1, seed, ros_environment(),
                    Path(args.out), use_launch)


class Progress:
    """Pulls what the monitor received, scores predictions once their frame's truth is in, prints a line each."""

    def __init__(self, monitor: Monitor, span: int, t_start: float, quiet: bool):
        self.monitor = monitor
        self.scorer = Scorer(span)
        self.results: list[dict] = []
        self.pending: list[dict] = []
        self.t_start = t_start
        self.quiet = quiet
        self.first_prediction: float | None = None
        self._truth_seen = 0
        self._preds_seen = 0

    def pull(self) -> bool:
        """Take new ground truth and predictions from the monitor; True when predictions arrived."""
        with self.monitor.lock:
            new_truth = self.monitor.truth[self._truth_seen:]
            self._truth_seen = len(self.monitor.truth)
            new_preds = self.monitor.predictions[self._preds_seen:]
            self._preds_seen = len(self.monitor.predictions)
        self.scorer.add_truth(new_truth)
        self.pending.extend(new_preds)
        if new_preds and self.first_prediction is None:
            self.first_prediction = time.time()
        return bool(new_preds)

    def resolve(self, force: bool) -> None:
        """Score predictions whose frame's ground truth has arrived (or give up on them after 2 s)."""
        keep = []
        now = time.time()
        for pred in self.pending:
            stamp = float(pred.get("stamp", 0.0))
            if stamp <= self.scorer.latest_stamp() + 1e-6 or force or now - pred["_received"] > 2.0:
                r = self.scorer.score(pred)
                lat = pred.get("latency_ms")
                r.update(label=pred.get("label"), score=pred.get("score"), stamp=stamp,
                         latency_ms=float(lat) if lat is not None else None,
                         e2e_ms=1000.0 * (pred["_received"] - stamp), received=pred["_received"],
                         window_seq=pred.get("window_seq"))
                self.results.append(r)
                if not self.quiet:
                    self._print(pred, r)
            else:
                keep.append(pred)
        self.pending = keep

    def _print(self, pred: dict, r: dict) -> None:
        verdict = {"clean": "", "boundary": "boundary ", "unknown": "no truth"}[r["window"]]
        if r["correct"] is not None:
            verdict += "ok" if r["correct"] else "wrong"
        print(f"{pred['_received'] - self.t_start:6.1f}s  predicted {str(r['label']):<11}"
              f"({fmt(pred.get('score'), '{:.2f}')})   truth {str(r['truth']):<11} {verdict:<16} "
              f"latency {fmt(r['latency_ms'], '{:.0f}')} ms", flush=True)


def _log_tail(children: list[Child], names=("recognizer", "launch")) -> Child:
    return next((c for c in children if c.name in names), children[0])


def watch(args: argparse.Namespace, progress: Progress, children: list[Child]) -> None:
    """Score as predictions come in until ``--seconds`` after the first one; RunError when a process dies or no
    prediction arrives within ``--startup-timeout``."""
    deadline = time.time() + args.startup_timeout
    while True:
        time.sleep(0.05)
        first = progress.first_prediction is None
        if progress.pull() and first:
            print(f"first prediction after {progress.first_prediction - progress.t_start:.1f} s; running "
                  f"{args.seconds:g} s", flush=True)
        progress.resolve(force=False)
        dead = [c for c in children if c.poll() is not None]
        if dead:
            c = dead[0]
            raise RunError(f"{c.name} exited with status {c.poll()} before the demo ended; "
                           f"last lines of {c.log_path}:\n{c.tail()}")
        now = time.time()
        if progress.first_prediction is None and now > deadline:
            rec = _log_tail(children)
            camera = "camera frames were published" if progress.scorer.stamps else "no camera frames arrived either"
            raise RunError(f"no prediction within {args.startup_timeout:g} s on {PREDICTION_TOPIC} "
                           f"({camera}); last lines of {rec.log_path}:\n{rec.tail()}")
        if progress.first_prediction is not None and now - progress.first_prediction >= args.seconds:
            return


def stop_children(children: list[Child], monitor: Monitor, stop_timeout: float, interrupted: bool) -> dict[str, str]:
    """Stop the camera first, wait for one more diagnostics report (so the node's frames_in covers every frame
    published), then stop the rest. Returns the recognizer's latest diagnostics."""
    diagnostics = monitor.node_diagnostics()
    try:
        cameras = [c for c in children if c.name == "camera_sim"]
        for child in cameras:
            child.stop(stop_timeout)
        if cameras and not interrupted and any(c.poll() is None for c in children if c.name == "recognizer"):
            t_stop = time.time()
            while time.time() < t_stop + 2.5:
                latest = monitor.node_diagnostics()
                if latest and float(latest.get("_received", 0.0)) > t_stop + 0.05:
                    diagnostics = latest
                    break
                time.sleep(0.05)
        for child in reversed(children):
            child.stop(stop_timeout)
    except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
        for child in children:
            child._signal(signal.SIGKILL)
    return diagnostics


def report(args: argparse.Namespace, plan: DemoPlan, progress: Progress, diagnostics: dict[str, str],
           children: list[Child], interrupted: bool, failed: bool) -> int:
    """Print and write the summary; 1 when no prediction arrived at all (and nothing else was reported)."""
    if not progress.results:
        if interrupted or failed:
            return 0
        rec = next((c for c in children if c.name in ("recognizer", "launch")), None)
        print(f"demo failed: no prediction arrived on {PREDICTION_TOPIC}; last lines of the recognizer log:\n"
              f"{rec.tail() if rec else ''}", file=sys.stderr, flush=True)
        return 1
    summary = summarise(progress.results, time.time() - progress.t_start, len(progress.scorer.stamps), diagnostics, {
        "model": str(plan.model), "device": args.device, "fps": args.fps,
        "hop": args.hop if args.hop is not None else diag_int(diagnostics, "hop"), "seed": plan.seed,
        "mode": plan.mode, "clip_len": plan.clip_len, "frame_stride": plan.frame_stride,
        "window_span_frames": plan.span, "ros_domain_id": int(plan.env["ROS_DOMAIN_ID"]), "interrupted": interrupted,
    })
    print_summary(summary)
    write_json(plan.out, summary)
    print(f"summary written to {plan.out}", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    t_start = time.time()
    plan = plan_demo(args)
    print(f"repflow demo: model {plan.model}", flush=True)
    print(f"  {plan.mode}, ROS_DOMAIN_ID={plan.env['ROS_DOMAIN_ID']} ({plan.env['ROS_AUTOMATIC_DISCOVERY_RANGE']}), "
          f"camera {args.fps:g} fps seed {plan.seed}, params {plan.params_file or '(none)'}; window {plan.clip_len} "
          f"frames x stride {plan.frame_stride}; logs in {plan.log_dir}/", flush=True)
    monitor = Monitor()
    progress = Progress(monitor, plan.span, t_start, args.quiet)
    children: list[Child] = []
    interrupted = False
    code = 0
    try:
        build_children(args, plan.model, plan.params_file, plan.seed, plan.env, plan.log_dir, plan.use_launch,
                       into=children)
        watch(args, progress, children)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping the nodes", flush=True)
    except RunError as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        code = exc.code
    finally:
        diagnostics = stop_children(children, monitor, args.stop_timeout, interrupted)
        progress.pull()  # what arrived while stopping
        monitor.close()
    progress.resolve(force=True)
    status = report(args, plan, progress, diagnostics, children, interrupted, failed=code != 0)
    if interrupted:
        return 130
    return code or status


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    try:
        return run(args)
    except RunError as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
