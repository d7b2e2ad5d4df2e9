"""What the demo and the ROS benchmark share: a private DDS domain, the node processes, and a listener.

* :func:`ros_environment` puts this process and its children on a private ``ROS_DOMAIN_ID`` (random in 1..100
  unless set), host-local discovery, so a demo or benchmark never talks to other machines or runs.
* :class:`Child` runs a node as a subprocess in its own process group with its output in a log file;
  ``stop()`` always ends it (SIGINT, then SIGKILL after a timeout).
* :class:`Monitor` is an in-process rclpy node (its own context, spun by a background thread) that collects the
  demo camera's ground truth, the recognizer's ``~/prediction`` JSON and ``/diagnostics``.
* Model and parameter-file resolution (:func:`resolve_model`, :func:`find_params_file`, :func:`read_node_params`)
  and small statistics helpers (:func:`percentile`, :func:`diag_int`, :func:`fmt`).

Used by ``repflow_ros.demo`` and ``repflow_ros.bench``; rclpy is imported only when a :class:`Monitor` is made.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMERA_TOPIC = "/camera/image_raw"
GROUND_TRUTH_TOPIC = "/camera_sim/ground_truth"
PREDICTION_TOPIC = "/repflow_recognizer/prediction"
RECOGNIZER_NODE = "repflow_recognizer"
CAMERA_NODE = "camera_sim"


class RunError(RuntimeError):
    """A failure with a message for the user and an exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code




def ros_environment(env: dict[str, str] | None = None) -> dict[str, str]:
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


def find_params_file(explicit: str | None = None) -> Path | None:
    """config/recognize.yaml: --params-file, else the source tree's, else the installed share/repflow_ros copy."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise RunError(f"params file not found: {path}", 2)
        return path
    candidates = [REPO_ROOT / "config" / "recognize.yaml"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("repflow_ros")) / "config" / "recognize.yaml")
    except Exception:
        pass
    return next((c for c in candidates if c.is_file()), None)


def read_node_params(params_file: Path | None, node_name: str) -> dict[str, Any]:
    """The ros__parameters a params file gives ``node_name`` (its own section over ``/**``)."""
    if params_file is None:
        return {}
    try:
        import yaml

        data = yaml.safe_load(params_file.read_text()) or {}
    except Exception:
        return {}
    merged: dict[str, Any] = {}
    for key in ("/**", "**", node_name, "/" + node_name):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            merged.update(section.get("ros__parameters") or {})
    return merged


def resolve_model(model: str | None) -> Path:
    """--model, or the packaged default model; a clear RunError (status 2) when there is none."""
    if model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise RunError(f"model not found: {path} (pass an existing checkpoint .pt with --model)", 2)
        return path.resolve()
    from repflow_core.recognizer import default_checkpoint

    try:
        return default_checkpoint()
    except FileNotFoundError as exc:
        raise RunError(f"no model to run: {exc}\n  (or pass a checkpoint with --model PATH)", 2) from exc


def checkpoint_window(model: Path) -> dict[str, Any]:
    """clip_len, frame_stride and labels of a checkpoint (validates it: a bad file is a RunError)."""
    from repflow_core.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(model)
    except CheckpointError as exc:
        raise RunError(f"cannot use model {model}: {exc}", 2) from exc
    return {"clip_len": int(ckpt.input_spec.clip_len), "frame_stride": int(ckpt.input_spec.frame_stride),
            "labels": list(ckpt.labels)}


def ros_args(params_file: Path | None, params: dict[str, Any], remaps: dict[str, str]) -> list[str]:
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

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout: float = 10.0) -> int | None:
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


def percentile(values: Sequence[float], q: float) -> float | None:
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
        self.truth: list[dict] = []            # in publish order
        self.predictions: list[dict] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
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

    def node_diagnostics(self, node: str = RECOGNIZER_NODE) -> dict[str, str]:
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


def diag_int(values: dict[str, str], *keys: str) -> int | None:
    for key in keys:
        if key in values:
            try:
                return int(float(values[key]))
            except ValueError:
                continue
    return None


def fmt(value, pattern: str = "{:.1f}", none: str = "n/a") -> str:
    return none if value is None else pattern.format(value)


def write_json(path: Path, data: Any) -> None:
    """Atomically (temp file + rename, mode 0644 less the umask: repflow_core.atomic_io), as RFC 8259 JSON (a NaN
    or infinity is an error rather than an invalid file)."""
    from repflow_core.atomic_io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False))
