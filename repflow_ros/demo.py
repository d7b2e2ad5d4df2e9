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
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMERA_TOPIC = "/camera/image_raw"
GROUND_TRUTH_TOPIC = "/camera_sim/ground_truth"
PREDICTION_TOPIC = "/repflow_recognizer/prediction"
RECOGNIZER_NODE = "repflow_recognizer"
CAMERA_NODE = "camera_sim"


class DemoError(RuntimeError):
    """A failure with a message for the user and an exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------------------------
# environment, files, processes (shared with repflow_ros.bench)


def ros_environment(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A private DDS domain on this host only: sets os.environ too, so this process's rclpy uses the same."""
    env = dict(os.environ if env is None else env)
    if not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    return env


def find_params_file(explicit: Optional[str] = None) -> Optional[Path]:
    """config/recognize.yaml: --params-file, else the source tree's, else the installed share/repflow_ros copy."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise DemoError(f"params file not found: {path}", 2)
        return path
    candidates = [REPO_ROOT / "config" / "recognize.yaml"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("repflow_ros")) / "config" / "recognize.yaml")
    except Exception:
        pass
    return next((c for c in candidates if c.is_file()), None)


def read_node_params(params_file: Optional[Path], node_name: str) -> Dict[str, Any]:
    """The ros__parameters a params file gives ``node_name`` (its own section over ``/**``)."""
    if params_file is None:
        return {}
    try:
        import yaml

        data = yaml.safe_load(params_file.read_text()) or {}
    except Exception:
        return {}
    merged: Dict[str, Any] = {}
    for key in ("/**", "**", node_name, "/" + node_name):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            merged.update(section.get("ros__parameters") or {})
    return merged


def resolve_model(model: Optional[str]) -> Path:
    """--model, or the packaged default model; a clear DemoError (status 2) when there is none."""
    if model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise DemoError(f"model not found: {path} (pass an existing checkpoint .pt with --model)", 2)
        return path.resolve()
    from repflow_core.recognizer import default_checkpoint

    try:
        return default_checkpoint()
    except FileNotFoundError as exc:
        raise DemoError(f"no model to run: {exc}\n  (or pass a checkpoint with --model PATH)", 2) from exc


def checkpoint_window(model: Path) -> Dict[str, Any]:
    """clip_len, frame_stride and labels of a checkpoint (validates it: a bad file is a DemoError)."""
    from repflow_core.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(model)
    except CheckpointError as exc:
        raise DemoError(f"cannot use model {model}: {exc}", 2) from exc
    return {"clip_len": int(ckpt.input_spec.clip_len), "frame_stride": int(ckpt.input_spec.frame_stride),
            "labels": list(ckpt.labels)}


def ros_args(params_file: Optional[Path], params: Dict[str, Any], remaps: Dict[str, str]) -> List[str]:
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for key, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["-p", f"{key}:={value}"]
    for src, dst in remaps.items():
        args += ["-r", f"{src}:={dst}"]
    return args


class Child:
    """A subprocess in its own process group, output to a log file; stop() always ends it."""

    def __init__(self, name: str, argv: Sequence[str], env: Dict[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            self._signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        else:  # leader gone; make sure nothing it started is left in its group
            self._signal(signal.SIGKILL)
        return self.proc.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def install_sigterm_handler() -> None:
    """SIGTERM behaves like Ctrl-C, so the cleanup in ``finally`` blocks runs."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


def ros2_launch_available() -> bool:
    if shutil.which("ros2") is None:
        return False
    try:
        import launch_ros  # noqa: F401
        from ament_index_python.packages import get_package_share_directory

        return (Path(get_package_share_directory("repflow_ros")) / "launch" / "recognize.launch.py").is_file()
    except Exception:
        return False


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def stamp_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


class Monitor:
    """In-process subscriber to ground truth, predictions and /diagnostics (a background thread spins it)."""

    def __init__(self, name: str = "repflow_demo", ground_truth: bool = True, predictions: bool = True,
                 on_prediction=None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import String

        self.context = rclpy.Context()
        # keep Python's own SIGINT handling (KeyboardInterrupt) so the demo can clean up its children
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self.lock = threading.Lock()
        self.truth: List[dict] = []            # in publish order
        self.predictions: List[dict] = []
        self.diagnostics: Dict[str, Dict[str, str]] = {}
        self.on_prediction = on_prediction
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        if ground_truth:
            self.node.create_subscription(String, GROUND_TRUTH_TOPIC, self._on_truth, reliable)
        if predictions:
            self.node.create_subscription(String, PREDICTION_TOPIC, self._on_prediction, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="demo_monitor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._stop.is_set():
                    return
                raise

    def _on_truth(self, msg) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        with self.lock:
            self.truth.append(data)

    def _on_prediction(self, msg) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        data["_received"] = time.time()
        with self.lock:
            self.predictions.append(data)
        if self.on_prediction is not None:
            self.on_prediction(data)

    def _on_diagnostics(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values["_level"] = str(int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                       else status.level)
                values["_message"] = status.message
                values["_received"] = str(time.time())
                self.diagnostics[status.name] = values

    def node_diagnostics(self, node: str = RECOGNIZER_NODE) -> Dict[str, str]:
        with self.lock:
            for name, values in self.diagnostics.items():
                if node in name:
                    return dict(values)
        return {}

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.executor.shutdown(timeout_sec=1)
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)


def diag_int(values: Dict[str, str], *keys: str) -> Optional[int]:
    for key in keys:
        if key in values:
            try:
                return int(float(values[key]))
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------------------------------------------
# scoring


class Scorer:
    """Matches predictions to ground truth by stamp and classifies windows as clean or boundary."""

    def __init__(self, span_frames: int, tolerance_s: float = 1e-3):
        self.span = max(1, int(span_frames))
        self.tolerance = tolerance_s
        self.stamps: List[float] = []
        self.actions: List[str] = []

    def add_truth(self, items: Iterable[dict]) -> None:
        for item in items:
            stamp = float(item["stamp"])
            if self.stamps and stamp <= self.stamps[-1]:  # out of order (should not happen): keep sorted
                import bisect

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
        import bisect

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


def summarise(results: List[dict], wall_s: float, frames_published: int, diagnostics: Dict[str, str],
              extra: Dict[str, Any]) -> Dict[str, Any]:
    scored = [r for r in results if r["window"] != "unknown"]
    clean = [r for r in scored if r["window"] == "clean"]
    per_class: Dict[str, Dict[str, Any]] = defaultdict(lambda: {"windows": 0, "correct": 0})
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


def _fmt(value, pattern: str = "{:.1f}", none: str = "n/a") -> str:
    return none if value is None else pattern.format(value)


def print_summary(s: Dict[str, Any]) -> None:
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
    print(f"latency          p50 {_fmt(lat['p50'])} ms   p95 {_fmt(lat['p95'])} ms   max {_fmt(lat['max'])} ms")
    rl = s["receive_latency_ms"]
    print(f"  (at the demo)  p50 {_fmt(rl['p50'])} ms   p95 {_fmt(rl['p95'])} ms")
    print(f"windows/second   {_fmt(s['windows_per_second'], '{:.2f}')}")
    print(f"frames           published {s['frames_published']}   received by the node "
          f"{_fmt(s['frames_received_by_node'], '{}')}")


# ---------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m repflow_ros.demo", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run after the first prediction")
    p.add_argument("--model", default=None, help="checkpoint .pt (default: the packaged model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--fps", type=float, default=30.0, help="camera frame rate")
    p.add_argument("--hop", type=int, default=None, help="run the model every N new frames (default: config)")
    p.add_argument("--seed", type=int, default=None, help="synthetic action order seed (default: random)")
    p.add_argument("--clip-frames", type=int, default=None, help="frames per synthetic action clip (default: 40, as in training)")
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


def build_children(args, model: Path, params_file: Optional[Path], seed: int, env: Dict[str, str],
                   log_dir: Path, use_launch: bool, into: Optional[List[Child]] = None) -> List[Child]:
    """Start the processes; each is appended to ``into`` as soon as it runs (so an interrupt cannot orphan one)."""
    into = [] if into is None else into
    rec_params: Dict[str, Any] = {"model_path": str(model), "device": args.device}
    if args.hop is not None:
        rec_params["hop"] = args.hop
    # the camera starts when the recognizer subscribes, so "frames published" and the node's "frames in" compare
    cam_params: Dict[str, Any] = {"fps": float(args.fps), "seed": seed, "wait_for_subscribers": 1}
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


def run(args: argparse.Namespace) -> int:
    t_start = time.time()
    model = resolve_model(args.model)
    window = checkpoint_window(model)
    params_file = find_params_file(args.params_file)
    rec_cfg = read_node_params(params_file, RECOGNIZER_NODE)
    clip_len = int(rec_cfg.get("clip_len") or 0) or window["clip_len"]
    stride = int(rec_cfg.get("frame_stride") or 0) or window["frame_stride"]
    span = (clip_len - 1) * stride + 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randint(0, 2**31 - 2)
    env = ros_environment()
    out = Path(args.out)
    log_dir = out.parent
    # ros2 launch when it is there, unless a camera option asks for what the launch file cannot set
    camera_options = args.fps != 30.0 or args.seed is not None or args.clip_frames is not None
    use_launch = not args.no_launch and not camera_options and ros2_launch_available()
    if use_launch:
        seed = 0  # the launched camera_sim's default
    mode = "ros2 launch" if use_launch else "subprocesses (pip-only ROS)"
    print(f"repflow demo: model {model}", flush=True)
    print(f"  {mode}, ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} ({env['ROS_AUTOMATIC_DISCOVERY_RANGE']}), "
          f"camera {args.fps:g} fps seed {seed}, params {params_file or '(none)'}; window {clip_len} frames "
          f"x stride {stride}; logs in {log_dir}/", flush=True)

    scorer = Scorer(span)
    results: List[dict] = []
    pending: List[dict] = []
    monitor = Monitor()
    children: List[Child] = []
    interrupted = False
    first_prediction: Optional[float] = None
    code = 0
    truth_seen = 0
    preds_seen = 0

    def resolve(force: bool) -> None:
        """Score predictions whose frame's ground truth has arrived (or give up on them after 2 s)."""
        nonlocal pending
        keep = []
        now = time.time()
        for pred in pending:
            stamp = float(pred.get("stamp", 0.0))
            if stamp <= scorer.latest_stamp() + 1e-6 or force or now - pred["_received"] > 2.0:
                r = scorer.score(pred)
                lat = pred.get("latency_ms")
                r.update(label=pred.get("label"), score=pred.get("score"), stamp=stamp,
                         latency_ms=float(lat) if lat is not None else None,
                         e2e_ms=1000.0 * (pred["_received"] - stamp), received=pred["_received"],
                         window_seq=pred.get("window_seq"))
                results.append(r)
                if not args.quiet:
                    verdict = {"clean": "", "boundary": "boundary ", "unknown": "no truth"}[r["window"]]
                    if r["correct"] is not None:
                        verdict += "ok" if r["correct"] else "wrong"
                    score = pred.get("score")
                    print(f"{pred['_received'] - t_start:6.1f}s  predicted {str(r['label']):<11}"
                          f"({_fmt(score, '{:.2f}')})   truth {str(r['truth']):<11} {verdict:<16} "
                          f"latency {_fmt(r['latency_ms'], '{:.0f}')} ms", flush=True)
            else:
                keep.append(pred)
        pending = keep

    try:
        build_children(args, model, params_file, seed, env, log_dir, use_launch, into=children)
        deadline = time.time() + args.startup_timeout
        while True:
            time.sleep(0.05)
            with monitor.lock:
                new_truth = monitor.truth[truth_seen:]
                truth_seen = len(monitor.truth)
                new_preds = monitor.predictions[preds_seen:]
                preds_seen = len(monitor.predictions)
            scorer.add_truth(new_truth)
            pending.extend(new_preds)
            if new_preds and first_prediction is None:
                first_prediction = time.time()
                print(f"first prediction after {first_prediction - t_start:.1f} s; running {args.seconds:g} s",
                      flush=True)
            resolve(force=False)
            dead = [c for c in children if c.poll() is not None]
            if dead:
                c = dead[0]
                raise DemoError(f"{c.name} exited with status {c.poll()} before the demo ended; "
                                f"last lines of {c.log_path}:\n{c.tail()}")
            now = time.time()
            if first_prediction is None and now > deadline:
                rec = next((c for c in children if c.name in ("recognizer", "launch")), children[0])
                camera = "camera frames were published" if scorer.stamps else "no camera frames arrived either"
                raise DemoError(f"no prediction within {args.startup_timeout:g} s on {PREDICTION_TOPIC} "
                                f"({camera}); last lines of {rec.log_path}:\n{rec.tail()}")
            if first_prediction is not None and now - first_prediction >= args.seconds:
                break
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping the nodes", flush=True)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        code = exc.code
    finally:
        diagnostics = monitor.node_diagnostics()
        frames_published = len(scorer.stamps)
        try:
            # the camera first; then one more diagnostics report, so frames_in covers every frame published
            cameras = [c for c in children if c.name == "camera_sim"]
            for child in cameras:
                child.stop(args.stop_timeout)
            if cameras and not interrupted and any(c.poll() is None for c in children if c.name == "recognizer"):
                t_stop = time.time()
                while time.time() < t_stop + 2.5:
                    latest = monitor.node_diagnostics()
                    if latest and float(latest.get("_received", 0.0)) > t_stop + 0.05:
                        diagnostics = latest
                        break
                    time.sleep(0.05)
            for child in reversed(children):
                child.stop(args.stop_timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            for child in children:
                child._signal(signal.SIGKILL)
        # gather what arrived while stopping
        with monitor.lock:
            scorer.add_truth(monitor.truth[truth_seen:])
            pending.extend(monitor.predictions[preds_seen:])
        frames_published = max(frames_published, len(scorer.stamps))
        monitor.close()

    resolve(force=True)
    if results:
        summary = summarise(results, time.time() - t_start, frames_published, diagnostics, {
            "model": str(model), "device": args.device, "fps": args.fps,
            "hop": args.hop if args.hop is not None else diag_int(diagnostics, "hop"), "seed": seed,
            "mode": mode, "clip_len": clip_len, "frame_stride": stride, "window_span_frames": span,
            "ros_domain_id": int(env["ROS_DOMAIN_ID"]), "interrupted": interrupted,
        })
        print_summary(summary)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        print(f"summary written to {out}", flush=True)
    elif code == 0 and not interrupted:
        rec = next((c for c in children if c.name in ("recognizer", "launch")), None)
        tail = rec.tail() if rec else ""
        print(f"demo failed: no prediction arrived on {PREDICTION_TOPIC}; last lines of the recognizer log:\n{tail}",
              file=sys.stderr, flush=True)
        code = 1
    if interrupted:
        return 130
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    try:
        return run(args)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
