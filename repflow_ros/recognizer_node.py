"""``repflow_recognizer``: a lifecycle node that turns camera images into action labels.

Run it with ``ros2 run repflow_ros recognizer_node`` or, without a ROS install (PyPI wheels),
``python -m repflow_ros.recognizer_node --ros-args -p device:=cpu -r image:=/camera/image_raw``.

Interface (see :data:`PARAMETER_SPECS` for every parameter):

* subscribes ``image`` (sensor_msgs/Image) or, with ``image_transport:=compressed``, ``<image>/compressed``
  (sensor_msgs/CompressedImage; the base name ``image`` is resolved with remappings first, as image_transport does,
  so ``-r image:=/cam/image_raw`` gives ``/cam/image_raw/compressed``; an explicit ``image/compressed`` remapping
  wins);
* publishes ``action_label`` (std_msgs/String), ``actions`` (vision_msgs/Classification, only where vision_msgs is
  installed), ``~/prediction`` (std_msgs/String with JSON ``{label, score, stamp, frame_id, topk, latency_ms,
  window_seq}``), ``~/debug_image`` (sensor_msgs/Image rgb8, only while someone subscribes) and ``/diagnostics``
  (diagnostic_msgs/DiagnosticArray, 1 Hz, status ``repflow_recognizer: inference``, prefixed with the namespace
  when there is one);
* serves ``~/enable`` (std_srvs/SetBool): false pauses recognition (frames are ignored, the model stays loaded),
  true resumes it.

Lifecycle: ``on_configure`` reads and validates every parameter, loads and checks the checkpoint (on the CPU) and
resolves the device -- a wrong path, device or value fails the transition with an error naming the parameter;
``on_activate`` moves the model to the device, warms it up (logging the time and the device), starts the inference
thread and subscribes; ``on_deactivate`` unsubscribes, stops the thread and frees the model (and GPU memory);
``on_cleanup`` / ``on_shutdown`` drop publishers, timers and services. With ``autostart`` (default) the node
configures and activates itself; if that fails the process logs why and exits with status 1.

Threads: the image callback only decodes, preprocesses and pushes into a :class:`FrameWindow` (its own mutually
exclusive callback group); a plain ``threading.Thread`` takes the newest complete window and runs the model, so
intake never waits for inference and windows that became stale while the model was busy are skipped and counted.
Services, timers and parameter requests run on the other threads of a ``MultiThreadedExecutor``.

Choices (documented in the parameter descriptions too):

* ``smoothing``: the published label is the arg-max of the mean class probabilities of the last ``smoothing``
  windows of the current stream segment (the history is cleared when the frame window resets, on pause and on
  activation). ``actions``, ``~/prediction`` and the debug image carry the same smoothed scores.
* ``score_threshold``: when the smoothed top-1 score is below it, ``action_label`` carries :data:`UNKNOWN_LABEL`
  (``"unknown"``) rather than nothing, so consumers can tell "uncertain" from "no input"; ``~/prediction`` then has
  ``label == "unknown"`` and the real top-1 score, ``actions`` still lists the top-k classes.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

__all__ = [
    "NODE_NAME",
    "UNKNOWN_LABEL",
    "DIAGNOSTIC_NAME",
    "PARAMETER_SPECS",
    "PARAMETER_CHOICES",
    "RUNTIME_PARAMETERS",
    "DROP_CAUSES",
    "ParamSpec",
    "RecognizerNode",
    "main",
]

NODE_NAME = "repflow_recognizer"
UNKNOWN_LABEL = "unknown"
DIAGNOSTIC_NAME = f"{NODE_NAME}: inference"  #: without a namespace (else "<ns>/repflow_recognizer: inference")
DIAGNOSTICS_PERIOD_S = 1.0
_STATS_HISTORY = 200  # inference / latency samples kept for the mean and percentiles


class ParamSpec(NamedTuple):
    """One node parameter: ``range`` is ``(low, high)`` inclusive for numbers, else None. ``read_only`` parameters
    can only change while the node is unconfigured (restart it, or deactivate + cleanup, set, configure)."""

    default: Any
    type: type
    description: str
    read_only: bool
    range: Optional[Tuple[float, float]]


_RO = " Read-only once configured (restart the node, or cleanup, set it and configure again)."
_RT = " Can be changed at run time."

#: Every parameter of the node: name -> ParamSpec. The node declares exactly these (with descriptions and ranges);
#: config/recognize.yaml and launch/recognize.launch.py are checked against this table by the tests.
PARAMETER_SPECS: Dict[str, ParamSpec] = {
    "model_path": ParamSpec(
        "", str, "Checkpoint file (.pt) to load; empty: the packaged default model." + _RO, True, None),
    "device": ParamSpec(
        "auto", str, "Inference device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. Asking for CUDA "
        "where there is none fails configure (no silent CPU fallback)." + _RO, True, None),
    "precision": ParamSpec(
        "fp32", str, "Inference precision: fp32, fp16 (CUDA only) or bf16." + _RO, True, None),
    "clip_len": ParamSpec(
        0, int, "Frames per window fed to the model; 0: the checkpoint's clip_len (best accuracy)." + _RO,
        True, (0, 512)),
    "frame_stride": ParamSpec(
        0, int, "Use every N-th frame in a window; 0: the checkpoint's frame_stride." + _RO, True, (0, 64)),
    "hop": ParamSpec(
        4, int, "Run inference every `hop` new frames (on the newest complete window)." + _RT, False, (1, 512)),
    "smoothing": ParamSpec(
        3, int, "Average the class probabilities of the last K windows before choosing the label (1: no smoothing); "
        "the history restarts when the frame stream resets." + _RT, False, (1, 100)),
    "score_threshold": ParamSpec(
        0.0, float, "Minimum smoothed top-1 probability; below it action_label says 'unknown' (~/prediction has "
        "label 'unknown' and the real score). 0: always publish the top label." + _RT, False, (0.0, 1.0)),
    "top_k": ParamSpec(
        5, int, "Number of classes listed in `actions` and ~/prediction." + _RT, False, (1, 1000)),
    "image_transport": ParamSpec(
        "raw", str, "raw: subscribe sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage on "
        "`image/compressed` (the remapped `image` name + /compressed)." + _RO, True, None),
    "image_qos": ParamSpec(
        "sensor_data", str, "Image subscription QoS: sensor_data (best effort, depth 5; matches reliable and best "
        "effort publishers), reliable (depth 5) or system_default." + _RO, True, None),
    "max_frame_gap": ParamSpec(
        0.5, float, "Seconds between frame stamps beyond which the frame window restarts; 0 disables the check."
        + _RO, True, (0.0, 3600.0)),
    "warmup": ParamSpec(
        2, int, "Warm-up inferences on blank frames at activation (0: none)." + _RO, True, (0, 100)),
    "autostart": ParamSpec(
        True, bool, "Configure and activate at start-up (so `ros2 run` just works); if that fails the process exits "
        "with status 1. false: wait in 'unconfigured' for a lifecycle manager. Read at start-up only.", True, None),
    "publish_debug_image": ParamSpec(
        True, bool, "Publish ~/debug_image (newest frame with label and score) while someone subscribes to it."
        + _RO, True, None),
}

#: Allowed values of the string parameters that are enumerations.
PARAMETER_CHOICES: Dict[str, Tuple[str, ...]] = {
    "precision": ("fp32", "fp16", "bf16"),
    "image_transport": ("raw", "compressed"),
    "image_qos": ("sensor_data", "reliable", "system_default"),
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: Parameters that may change while the node is configured / active.
RUNTIME_PARAMETERS: Tuple[str, ...] = tuple(name for name, spec in PARAMETER_SPECS.items() if not spec.read_only)


def _drop_causes() -> Tuple[str, ...]:
    from .image_decoding import DECODE_ERROR_CAUSES

    return tuple(DECODE_ERROR_CAUSES) + ("other",)


#: Reasons a frame is dropped (decode causes plus ``other``: preprocessing or unexpected decoder failures).
DROP_CAUSES: Tuple[str, ...] = _drop_causes()


def validate_value(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is). Checks type, range and choices."""
    spec = PARAMETER_SPECS[name]
    if spec.type is float:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif spec.type is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok_type = isinstance(value, spec.type)
    if not ok_type:
        return f"expected a {spec.type.__name__}, got {type(value).__name__} {value!r}"
    if spec.range is not None:
        low, high = spec.range
        if not (low <= value <= high) or (spec.type is float and not math.isfinite(value)):
            return f"out of range [{low}, {high}]"
    if name in PARAMETER_CHOICES and value not in PARAMETER_CHOICES[name]:
        return f"must be one of {', '.join(PARAMETER_CHOICES[name])}"
    if name == "device" and not _DEVICE_RE.match(str(value).strip().lower()):
        return "must be auto, cpu, cuda or cuda:N"
    return None


def _percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


class _Frame:
    """A preprocessed frame in the window. ``shape`` is the *source* image shape, so the FrameWindow's size-change
    reset sees the camera's size, not the (constant) model input size. ``raw`` is kept only for the debug image."""

    __slots__ = ("pixels", "shape", "stamp_ns", "raw")

    def __init__(self, pixels: np.ndarray, shape: Tuple[int, ...], stamp_ns: int, raw: Optional[np.ndarray]):
        self.pixels = pixels
        self.shape = shape
        self.stamp_ns = stamp_ns
        self.raw = raw


def _build_node_class():
    """Defined lazily so that importing this module (for PARAMETER_SPECS) needs no ROS installation."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
    from rclpy.qos import qos_profile_system_default
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String
    from std_srvs.srv import SetBool

    from .frame_window import RESET_REASONS, FrameWindow
    from .image_decoding import ImageDecodeError, ImageDecoder, rgb_to_image_msg

    try:  # optional: only where vision_msgs is installed
        from vision_msgs.msg import Classification, ObjectHypothesis
    except Exception:  # ImportError, or a broken install
        Classification = ObjectHypothesis = None

    SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
    ptype = {str: Parameter.Type.STRING, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             bool: Parameter.Type.BOOL}

    def descriptor(name: str, spec: ParamSpec) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=name, type=int(ptype[spec.type].value), description=spec.description)
        if name in PARAMETER_CHOICES:
            desc.additional_constraints = "one of: " + ", ".join(PARAMETER_CHOICES[name])
        elif name == "device":
            desc.additional_constraints = "auto, cpu, cuda or cuda:N"
        if spec.range is not None:
            low, high = spec.range
            if spec.type is int:
                desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                step=0.0)]
        return desc

    class RecognizerNode(LifecycleNode):
        """See the module docstring."""

        def __init__(self, **kwargs):
            super().__init__(NODE_NAME, **kwargs)
            self._bad_overrides: Dict[str, str] = {}
            self._declare_parameters()
            self.autostart = bool(self.get_parameter("autostart").value)
            self.add_on_set_parameters_callback(self._on_set_parameters)

            self._lock = threading.Lock()  # run-time settings, smoothing history, statistics
            self._enabled = True
            self._decoder = ImageDecoder()
            self._cfg: Dict[str, Any] = {}
            self._checkpoint = None
            self._device = None
            self._device_description = ""
            self._model_source = ""
            self._recognizer = None
            self._window: Optional[FrameWindow] = None
            self._thread: Optional[threading.Thread] = None
            self._stop = threading.Event()
            self._image_sub = None
            self._image_topic = ""
            self._pubs: Dict[str, Any] = {}
            self._enable_srv = None
            self._diag_timer = None
            self._intake_group = MutuallyExclusiveCallbackGroup()
            self._service_group = MutuallyExclusiveCallbackGroup()
            self._history: deque = deque(maxlen=PARAMETER_SPECS["smoothing"].default)
            self._history_epoch: Optional[int] = None
            self._reset_counters()

        # -- parameters ---------------------------------------------------------------------------------------------

        def _declare_parameters(self) -> None:
            overrides = getattr(self, "_parameter_overrides", {})
            for name, spec in PARAMETER_SPECS.items():
                override = overrides.get(name)
                # `-p score_threshold:=1` arrives as an integer; accept it for a float parameter.
                if (override is not None and spec.type is float and override.type_ == Parameter.Type.INTEGER):
                    overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(override.value))
                try:
                    self.declare_parameter(name, spec.default, descriptor(name, spec))
                except Exception as exc:  # wrong type or out of range: keep the default, fail configure
                    bad = overrides.get(name)
                    shown = bad.value if bad is not None else "?"
                    why = (validate_value(name, shown) if bad is not None else None) or str(exc)
                    self._bad_overrides[name] = f"{shown!r} is invalid: {why}"
                    self.declare_parameter(name, spec.default, descriptor(name, spec), ignore_override=True)
                    self.get_logger().error(f"parameter {name}={shown!r} is invalid: {why}; configure will fail")

        def _on_set_parameters(self, params: List[Parameter]) -> SetParametersResult:
            state = self._state_label()
            for param in params:
                name = param.name
                if name not in PARAMETER_SPECS:
                    continue
                value = param.value
                if PARAMETER_SPECS[name].type is float and isinstance(value, int):
                    value = float(value)
                if name == "autostart":
                    return SetParametersResult(
                        successful=False, reason="autostart is read-only: it is read at start-up only")
                if PARAMETER_SPECS[name].read_only and state != "unconfigured":
                    return SetParametersResult(
                        successful=False,
                        reason=(f"{name} is read-only while the node is {state}; restart the node with the new "
                                f"value (or deactivate, cleanup, set it and configure again)"))
                problem = validate_value(name, value)
                if problem:
                    return SetParametersResult(successful=False, reason=f"{name}={value!r}: {problem}")
            for param in params:  # all accepted: apply the run-time ones
                if param.name in RUNTIME_PARAMETERS:
                    self._apply_runtime(param.name, param.value)
            return SetParametersResult(successful=True)

        def _apply_runtime(self, name: str, value: Any) -> None:
            with self._lock:
                if name == "hop":
                    self._cfg["hop"] = int(value)
                    if self._window is not None:
                        self._window.set_hop(int(value))
                elif name == "smoothing":
                    self._cfg["smoothing"] = int(value)
                    self._history = deque(self._history, maxlen=int(value))
                elif name == "score_threshold":
                    self._cfg["score_threshold"] = float(value)
                elif name == "top_k":
                    self._cfg["top_k"] = int(value)
            if self._cfg:
                self.get_logger().info(f"parameter {name} set to {value!r}")

        def _read_parameters(self) -> Dict[str, Any]:
            """Read and check every parameter; raises ValueError naming the first bad one."""
            if self._bad_overrides:
                name, what = next(iter(self._bad_overrides.items()))
                raise ValueError(f"parameter {name}={what}")
            cfg = {}
            for name, spec in PARAMETER_SPECS.items():
                value = self.get_parameter(name).value
                if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                problem = validate_value(name, value)
                if problem:
                    raise ValueError(f"parameter {name}={value!r} is invalid: {problem}")
                cfg[name] = value.strip() if isinstance(value, str) else value
            cfg["device"] = cfg["device"].lower()
            return cfg

        # -- lifecycle ----------------------------------------------------------------------------------------------

        def _state_label(self) -> str:
            try:
                return str(self._state_machine.current_state[1])
            except Exception:
                return "unknown"

        def _guarded(self, what: str, func: Callable[[], TransitionCallbackReturn]) -> TransitionCallbackReturn:
            try:
                return func()
            except Exception as exc:  # rclpy would swallow it silently: say what happened
                if not self.context.ok():  # Ctrl-C / SIGTERM during the transition: not an error of ours
                    return FAILURE
                self.get_logger().error(f"{what} failed: {exc}\n{traceback.format_exc()}")
                return FAILURE

        def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
            return self._guarded("configure", self._configure)

        def _configure(self) -> TransitionCallbackReturn:
            log = self.get_logger()
            try:
                cfg = self._read_parameters()
            except ValueError as exc:
                log.error(f"configure failed: {exc}")
                return FAILURE

            # Imported here, after the cheap checks: torch takes seconds to import.
            from repflow_core.checkpoint import CheckpointError, load_checkpoint
            from repflow_core.recognizer import RecognizerError, default_checkpoint, describe_device, resolve_device

            path_param = cfg["model_path"]
            try:
                path = path_param if path_param else str(default_checkpoint())
            except FileNotFoundError as exc:
                log.error(f"configure failed: parameter model_path='' (the packaged default model): {exc}")
                return FAILURE
            try:
                checkpoint = load_checkpoint(path)
            except CheckpointError as exc:
                log.error(f"configure failed: parameter model_path={path!r}: {exc}")
                return FAILURE
            except Exception as exc:  # anything else while reading the file
                log.error(f"configure failed: parameter model_path={path!r}: cannot load the checkpoint: {exc}")
                return FAILURE

            try:
                device = resolve_device(cfg["device"], log=log.info)
            except RecognizerError as exc:
                log.error(f"configure failed: parameter device={cfg['device']!r}: {exc}")
                return FAILURE
            if cfg["precision"] == "fp16" and device.type != "cuda":
                log.error(f"configure failed: parameter precision='fp16' needs CUDA but the device is {device}; "
                          "use fp32 or bf16 on the CPU")
                return FAILURE

            spec = checkpoint.input_spec
            consumed = getattr(checkpoint.model_config, "frames_consumed", 0)
            min_frames = (consumed() if callable(consumed) else int(consumed)) + 1
            cfg["clip_len"] = cfg["clip_len"] or int(spec.clip_len)
            cfg["frame_stride"] = cfg["frame_stride"] or int(spec.frame_stride)
            if cfg["clip_len"] < min_frames:
                log.error(f"configure failed: parameter clip_len={cfg['clip_len']} is too short: this model needs "
                          f"at least {min_frames} frames (0 uses the checkpoint's {spec.clip_len})")
                return FAILURE

            self._cfg = cfg
            self._checkpoint = checkpoint
            self._model_source = path
            self._device = device
            self._device_description = describe_device(device)
            self._create_interfaces()
            labels = list(checkpoint.labels)
            shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
            log.info(
                f"configured: model {path} ({len(labels)} classes: {shown}), clip_len {cfg['clip_len']}, "
                f"frame_stride {cfg['frame_stride']}, input {tuple(spec.size)}, device {self._device_description}, "
                f"precision {cfg['precision']}, image decoder {self._decoder.backend}"
                + ("" if Classification is not None else "; vision_msgs not installed: `actions` not published"))
            return SUCCESS

        def _create_interfaces(self) -> None:
            reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
            self._pubs["label"] = self.create_publisher(String, "action_label", reliable)
            self._pubs["prediction"] = self.create_publisher(String, "~/prediction", reliable)
            if Classification is not None:
                self._pubs["actions"] = self.create_publisher(Classification, "actions", reliable)
            if self._cfg["publish_debug_image"]:
                self._pubs["debug"] = self.create_publisher(Image, "~/debug_image", qos_profile_sensor_data)
            self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
            self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable,
                                                   callback_group=self._service_group)
            self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                                 callback_group=self._service_group)

        def _destroy_interfaces(self) -> None:
            if self._diag_timer is not None:
                self.destroy_timer(self._diag_timer)
                self._diag_timer = None
            if self._enable_srv is not None:
                self.destroy_service(self._enable_srv)
                self._enable_srv = None
            for pub in self._pubs.values():
                self.destroy_publisher(pub)
            self._pubs = {}

        def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
            return self._guarded("activate", self._activate)

        def _activate(self) -> TransitionCallbackReturn:
            from repflow_core.recognizer import Recognizer

            log = self.get_logger()
            cfg = self._cfg
            try:
                recognizer = Recognizer(self._checkpoint, device=str(self._device), precision=cfg["precision"],
                                        log=log.info, source=self._model_source)
                warm_s = recognizer.warmup(cfg["warmup"]) if cfg["warmup"] > 0 else 0.0
            except Exception as exc:
                log.error(f"activate failed: cannot load the model {self._model_source} on "
                          f"{self._device_description} ({cfg['precision']}): {exc}")
                return FAILURE
            log.info(f"model ready on {recognizer.device_description} ({cfg['precision']}): warm-up "
                     f"{cfg['warmup']} inference(s) in {warm_s:.3f} s")
            gap = cfg["max_frame_gap"]
            window = FrameWindow(cfg["clip_len"], cfg["frame_stride"], cfg["hop"], gap if gap > 0 else None)
            with self._lock:
                self._recognizer = recognizer
                self._window = window
                self._history = deque(maxlen=cfg["smoothing"])
                self._history_epoch = None
            self._stop.clear()
            self._thread = threading.Thread(target=self._inference_loop, args=(window, recognizer),
                                            name="repflow_inference", daemon=True)
            self._thread.start()
            self._subscribe()
            log.info(f"active: listening on {self._image_topic} ({cfg['image_transport']}, QoS {cfg['image_qos']}), "
                     f"publishing {self.resolve_topic_name('action_label')}")
            return SUCCESS

        def _subscribe(self) -> None:
            cfg = self._cfg
            qos = {"sensor_data": qos_profile_sensor_data,
                   "reliable": QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                                          depth=5),
                   "system_default": qos_profile_system_default}[cfg["image_qos"]]
            if cfg["image_transport"] == "compressed":
                explicit = self.resolve_topic_name("image/compressed")
                if explicit != self.resolve_topic_name("image/compressed", only_expand=True):
                    topic = explicit  # the user remapped image/compressed itself
                else:
                    topic = self.resolve_topic_name("image").rstrip("/") + "/compressed"
                msg_type, decode = CompressedImage, self._decoder.decode_compressed
            else:
                topic, msg_type, decode = self.resolve_topic_name("image"), Image, self._decoder.decode
            self._image_topic = topic
            self._image_sub = self.create_subscription(msg_type, topic, lambda msg: self._on_image(msg, decode),
                                                       qos, callback_group=self._intake_group)

        def _stop_pipeline(self) -> None:
            """Unsubscribe, stop the inference thread, free the model. Safe to call in any state."""
            if self._image_sub is not None:
                self.destroy_subscription(self._image_sub)
                self._image_sub = None
            self._stop.set()
            window = self._window
            if window is not None:
                window.close()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10.0)
                if thread.is_alive():
                    self.get_logger().warning("the inference thread did not stop within 10 s")
            self._thread = None
            with self._lock:
                recognizer, self._recognizer, self._window = self._recognizer, None, None
                self._history.clear()
            if recognizer is not None:
                recognizer.release()

        def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
            def deactivate():
                self._stop_pipeline()
                self.get_logger().info("deactivated: model released")
                return SUCCESS
            return self._guarded("deactivate", deactivate)

        def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
            def cleanup():
                self._stop_pipeline()
                self._destroy_interfaces()
                self._checkpoint = None
                self._cfg = {}
                self._reset_counters()
                return SUCCESS
            return self._guarded("cleanup", cleanup)

        def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
            return self._guarded("shutdown", self._tidy)

        def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
            self._tidy()
            return SUCCESS

        def _tidy(self) -> TransitionCallbackReturn:
            self._stop_pipeline()
            self._destroy_interfaces()
            self._checkpoint = None
            return SUCCESS

        def close(self) -> None:
            """Stop everything (process exit); does not need a running context."""
            try:
                self._stop_pipeline()
            except Exception:
                pass

        # -- enable service -----------------------------------------------------------------------------------------

        def _on_enable(self, request, response):
            enable = bool(request.data)
            with self._lock:
                changed = enable != self._enabled
                self._enabled = enable
                self._history.clear()
                self._history_epoch = None
            window = self._window
            if window is not None and changed:
                window.clear()  # no window may mix frames from before and after a pause
            state = self._state_label()
            response.success = True
            response.message = f"recognition {'enabled' if enable else 'paused'} (node {state})"
            if changed:
                self.get_logger().info(response.message)
            return response

        # -- intake -------------------------------------------------------------------------------------------------

        def _reset_counters(self) -> None:
            self._frames_in = 0
            self._frames_ignored_paused = 0
            self._frames_no_stamp = 0
            self._dropped = {cause: 0 for cause in DROP_CAUSES}
            self._logged_causes: set = set()
            self._windows_inferred = 0
            self._inference_errors = 0
            self._infer_ms: deque = deque(maxlen=_STATS_HISTORY)
            self._latency_ms: deque = deque(maxlen=_STATS_HISTORY)
            self._diag_prev: Optional[Tuple[float, int, int, int, int]] = None

        def _drop(self, cause: str, message: str) -> None:
            self._dropped[cause] = self._dropped.get(cause, 0) + 1
            if cause not in self._logged_causes:  # once per cause; afterwards only counted (see /diagnostics)
                self._logged_causes.add(cause)
                self.get_logger().warning(
                    f"dropping frame ({cause}): {message}; further '{cause}' drops are only counted in /diagnostics")

        def _on_image(self, msg, decode) -> None:
            recognizer, window = self._recognizer, self._window
            if recognizer is None or window is None:
                return
            if not self._enabled:
                self._frames_ignored_paused += 1
                return
            self._frames_in += 1
            try:
                rgb = decode(msg)
            except ImageDecodeError as exc:
                self._drop(exc.cause if exc.cause in self._dropped else "other", str(exc))
                return
            except Exception as exc:
                self._drop("other", f"decoder error: {exc}")
                return
            stamp = msg.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            if stamp_ns == 0:
                stamp_ns = self.get_clock().now().nanoseconds
                self._frames_no_stamp += 1
                if self._frames_no_stamp == 1:
                    self.get_logger().warning(
                        f"images on {self._image_topic} have no header stamp: using this node's clock "
                        "(latency figures then exclude transport); counted as frames_no_stamp")
            try:
                pixels = recognizer.preprocess(rgb)
            except Exception as exc:
                self._drop("other", f"preprocessing failed for a {rgb.shape} frame: {exc}")
                return
            debug = self._pubs.get("debug")
            raw = rgb if debug is not None and debug.get_subscription_count() > 0 else None
            window.push(_Frame(pixels, tuple(rgb.shape), stamp_ns, raw), stamp_ns * 1e-9, msg.header.frame_id)

        # -- inference ----------------------------------------------------------------------------------------------

        def _inference_loop(self, window: FrameWindow, recognizer) -> None:
            log = self.get_logger()
            last_error_log = 0.0
            while not self._stop.is_set():
                ready = window.take_ready(timeout=0.25)
                if ready is None:
                    if window.closed:
                        break
                    continue
                if not self._enabled:
                    continue
                try:
                    clip = np.stack([frame.pixels for frame in ready.frames])
                    start = time.perf_counter()
                    probs = np.asarray(recognizer.predict(clip), dtype=np.float64)
                    infer_ms = (time.perf_counter() - start) * 1000.0
                    if self._stop.is_set():
                        break
                    self._publish_result(ready, probs, infer_ms, recognizer)
                except Exception as exc:
                    self._inference_errors += 1
                    now = time.monotonic()
                    if now - last_error_log > 10.0:
                        last_error_log = now
                        log.error(f"inference failed ({self._inference_errors} so far): {exc}\n"
                                  f"{traceback.format_exc()}")

        def _publish_result(self, ready, probs: np.ndarray, infer_ms: float, recognizer) -> None:
            with self._lock:
                if ready.epoch != self._history_epoch:
                    self._history.clear()
                    self._history_epoch = ready.epoch
                self._history.append(probs)
                smoothed = np.mean(np.stack(self._history), axis=0)
                threshold = self._cfg.get("score_threshold", 0.0)
                top_k = self._cfg.get("top_k", 5)
            ranked = recognizer.top_k(smoothed, top_k)
            best_label, best_score = ranked[0]
            label = best_label if best_score >= threshold else UNKNOWN_LABEL
            newest: _Frame = ready.frames[-1]
            stamp_ns = newest.stamp_ns
            now_ns = self.get_clock().now().nanoseconds
            latency_ms = (now_ns - stamp_ns) / 1e6
            with self._lock:
                self._windows_inferred += 1
                self._infer_ms.append(infer_ms)
                self._latency_ms.append(latency_ms)
            pubs = self._pubs
            pubs["label"].publish(String(data=label))
            if "actions" in pubs:
                msg = Classification()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                msg.header.frame_id = ready.frame_id
                msg.results = [ObjectHypothesis(class_id=name, score=float(p)) for name, p in ranked]
                pubs["actions"].publish(msg)
            pubs["prediction"].publish(String(data=json.dumps({
                "label": label,
                "score": float(best_score),
                "stamp": stamp_ns / 1e9,
                "frame_id": ready.frame_id,
                "topk": [[name, float(p)] for name, p in ranked],
                "latency_ms": round(latency_ms, 3),
                "window_seq": int(ready.seq),
            })))
            debug = pubs.get("debug")
            if debug is not None and debug.get_subscription_count() > 0:
                debug.publish(self._debug_image(newest, label, float(best_score), stamp_ns, ready.frame_id))

        def _debug_image(self, frame: _Frame, label: str, score: float, stamp_ns: int, frame_id: str):
            import cv2
            from builtin_interfaces.msg import Time

            img = frame.raw if frame.raw is not None else frame.pixels
            if img.shape[0] < 240:  # small frames: enlarge so the text stays legible
                scale = 240.0 / img.shape[0]
                img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), 240), interpolation=cv2.INTER_NEAREST)
            else:
                img = img.copy()
            text = f"{label} {score:.2f}"
            font_scale = max(0.5, img.shape[0] / 480.0)
            org = (8, int(28 * font_scale) + 4)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 0), 1, cv2.LINE_AA)
            sec, nanosec = divmod(stamp_ns, 1_000_000_000)
            return rgb_to_image_msg(img, stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)

        # -- diagnostics --------------------------------------------------------------------------------------------

        def _diagnostic_name(self) -> str:
            """``repflow_recognizer: inference``; under a namespace or another node name the status carries the
            node's full name (``robot1/repflow_recognizer: inference``) so several recognizers stay apart."""
            return f"{self.get_fully_qualified_name().lstrip('/')}: inference"

        def _publish_diagnostics(self) -> None:
            pub = self._pubs.get("diagnostics")
            if pub is None:
                return
            now = time.monotonic()
            dropped_total = sum(self._dropped.values())
            with self._lock:
                inferred = self._windows_inferred
                infer_ms = list(self._infer_ms)
                latency = list(self._latency_ms)
                errors = self._inference_errors
            prev = self._diag_prev
            self._diag_prev = (now, self._frames_in, inferred, dropped_total, errors)
            if prev is None or now - prev[0] <= 0:
                input_rate = windows_rate = 0.0
                new_drops = dropped_total
                new_errors = errors
            else:
                dt = now - prev[0]
                input_rate = (self._frames_in - prev[1]) / dt
                windows_rate = (inferred - prev[2]) / dt
                new_drops = dropped_total - prev[3]
                new_errors = errors - prev[4]
            window = self._window
            wstats = window.stats() if window is not None else None
            active = self._state_label() == "active"
            state = ("active" if self._enabled else "paused") if active else self._state_label()

            kv = {
                "input_rate_hz": f"{input_rate:.2f}",
                "windows_per_s": f"{windows_rate:.2f}",
                "inference_ms_mean": f"{(sum(infer_ms) / len(infer_ms)) if infer_ms else 0.0:.2f}",
                "inference_ms_p95": f"{_percentile(infer_ms, 95):.2f}",
                "latency_ms_p50": f"{_percentile(latency, 50):.2f}",
                "latency_ms_p95": f"{_percentile(latency, 95):.2f}",
                "frames_in": str(self._frames_in),
            }
            for cause in DROP_CAUSES:
                kv[f"frames_dropped_{cause}"] = str(self._dropped.get(cause, 0))
            kv["frames_no_stamp"] = str(self._frames_no_stamp)
            kv["frames_ignored_paused"] = str(self._frames_ignored_paused)
            kv["windows_inferred"] = str(inferred)
            kv["windows_skipped_busy"] = str(wstats["windows_skipped_busy"] if wstats else 0)
            for reason in RESET_REASONS:
                kv[f"window_resets_{reason}"] = str(wstats["resets"].get(reason, 0) if wstats else 0)
            kv["inference_errors"] = str(errors)
            kv["device"] = self._device_description
            kv["precision"] = str(self._cfg.get("precision", ""))
            kv["model"] = self._model_source
            kv["clip_len"] = str(self._cfg.get("clip_len", ""))
            kv["frame_stride"] = str(self._cfg.get("frame_stride", ""))
            kv["hop"] = str(self._cfg.get("hop", ""))
            kv["image_topic"] = self._image_topic
            kv["decoder"] = self._decoder.backend
            kv["state"] = state

            problems = []
            if new_drops > 0:
                causes = [c for c in DROP_CAUSES if self._dropped.get(c, 0)]
                problems.append(f"dropping frames ({', '.join(causes)})")
            if active and self._enabled and prev is not None and input_rate == 0.0:
                problems.append(f"no images on {self._image_topic}")
            if new_errors > 0:
                problems.append("inference errors")
            status = DiagnosticStatus()
            status.name = self._diagnostic_name()
            status.hardware_id = self._device_description
            status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
            status.message = "; ".join(problems) if problems else f"{state}, {input_rate:.1f} fps in"
            status.values = [KeyValue(key=k, value=v) for k, v in kv.items()]
            array = DiagnosticArray()
            array.header.stamp = self.get_clock().now().to_msg()
            array.status = [status]
            pub.publish(array)

    return RecognizerNode


_NODE_CLASS = None


def __getattr__(name: str):
    """``RecognizerNode`` is built on first access so the module imports without ROS (PARAMETER_SPECS)."""
    global _NODE_CLASS
    if name == "RecognizerNode":
        if _NODE_CLASS is None:
            _NODE_CLASS = _build_node_class()
        return _NODE_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(args: Optional[List[str]] = None) -> int:
    """Console script ``recognizer_node``. Exit status: 0 on a normal shutdown (Ctrl-C, SIGTERM), 1 when autostart
    could not configure or activate the node (the reason is logged), 2 on an unexpected error."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = __getattr__("RecognizerNode")()
        started = True
        if node.autostart:
            for step, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
                result = trigger()
                if not node.context.ok():  # Ctrl-C / SIGTERM while starting: a normal, quiet exit
                    started = False
                    break
                if result != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().fatal(
                        f"autostart: {step} failed (see the error above); exiting with status 1")
                    print(f"{NODE_NAME}: autostart {step} failed, exiting", file=sys.stderr, flush=True)
                    status, started = 1, False
                    break
        if started:
            executor = MultiThreadedExecutor(num_threads=4)
            executor.add_node(node)
            try:
                executor.spin()
            finally:
                executor.shutdown(timeout_sec=1.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        traceback.print_exc()
        status = 2
    finally:
        # A late KeyboardInterrupt (a second Ctrl-C) must not turn a clean shutdown into a traceback.
        for step in ((lambda: node.close()), (lambda: node.destroy_node()), rclpy.try_shutdown):
            try:
                if node is not None or step is rclpy.try_shutdown:
                    step()
            except (Exception, KeyboardInterrupt):
                pass
    return status


if __name__ == "__main__":
    sys.exit(main())
