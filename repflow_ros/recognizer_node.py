"""``repflow_recognizer``: a lifecycle node that turns camera images into action labels.

Run it with ``ros2 run repflow_ros recognizer_node`` or, without a ROS install (PyPI wheels),
``python -m repflow_ros.recognizer_node --ros-args -p device:=cpu -r image:=/camera/image_raw``;
``--help`` lists every parameter with its default (see :mod:`repflow_ros.node_parameters`).

Interface:

* subscribes ``image`` (sensor_msgs/Image) or, with ``image_transport:=compressed``, ``<image>/compressed``
  (sensor_msgs/CompressedImage; the base name ``image`` is resolved with remappings first, as image_transport does,
  so ``-r image:=/cam/image_raw`` gives ``/cam/image_raw/compressed``; an explicit ``image/compressed`` remapping
  wins);
* publishes ``action_label`` (std_msgs/String), ``actions`` (vision_msgs/Classification, only where vision_msgs is
  installed), ``~/prediction`` (std_msgs/String with JSON ``{label, score, stamp, frame_id, topk, latency_ms,
  window_seq}``), ``~/debug_image`` (sensor_msgs/Image rgb8, only while someone subscribes) and ``/diagnostics``
  (diagnostic_msgs/DiagnosticArray, 1 Hz, status ``repflow_recognizer: inference``, prefixed with the namespace
  when there is one). All are lifecycle publishers: nothing is published outside the Active state;
* serves ``~/enable`` (std_srvs/SetBool): false pauses recognition (frames are ignored, the model stays loaded),
  true resumes it.

Threads: the image callback only decodes, preprocesses and pushes into a :class:`FrameWindow` (its own mutually
exclusive callback group, :mod:`repflow_ros.node_intake`); a plain ``threading.Thread`` takes the newest complete
window and runs the model (:mod:`repflow_ros.node_inference`), so intake never waits for inference and windows that
became stale while the model was busy are skipped and counted.
Services, timers, parameter requests and lifecycle transitions run on the one executor thread (a
``SingleThreadedExecutor``, see :mod:`repflow_ros.node_runner`: transitions then never destroy an entity the executor
is about to wait on). Smoothing, threshold and top-k live in :mod:`repflow_ros.prediction`, counters and the
diagnostics status in :mod:`repflow_ros.node_diagnostics`, a model swap at run time in :mod:`repflow_ros.model_swap`,
QoS profiles and the camera subscription in :mod:`repflow_ros.node_qos`. This class wires the lifecycle: parameters,
transitions, interfaces, ``~/enable`` and ``/diagnostics``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from .frame_window import RESET_REASONS, FrameWindow, ResetReporter
from .image_decoding import ImageDecoder
from .model_swap import ModelSwapMixin, window_spec
from .node_diagnostics import NodeStats, diagnostic_array, diagnostic_status
from .node_inference import Classification, InferenceMixin
from .node_intake import DROP_CAUSES, IntakeMixin
from .node_model import ConfigureError, build_on_device, prepare_model
from .node_parameters import (
    NODE_NAME,
    PARAMETER_CHOICES,
    PARAMETER_SPECS,
    RUNTIME_PARAMETERS,
    SWAPPABLE_PARAMETERS,
    ParamSpec,
    check_parameters,
    coerce_value,
    format_parameter_help,
    validate_value,
)
from .node_qos import RELIABLE, latched
from .node_runner import exit_now, guarded_transition, run_lifecycle_node
from .prediction import UNKNOWN_LABEL, Predictor

__all__ = ["NODE_NAME", "UNKNOWN_LABEL", "DIAGNOSTIC_NAME", "PARAMETER_SPECS", "PARAMETER_CHOICES",
           "RUNTIME_PARAMETERS", "DROP_CAUSES", "ParamSpec", "RecognizerNode", "validate_value", "main"]

DIAGNOSTIC_NAME = f"{NODE_NAME}: inference"  #: without a namespace (else "<ns>/repflow_recognizer: inference")
DIAGNOSTICS_PERIOD_S = 1.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
_PTYPE = {str: Parameter.Type.STRING, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
          bool: Parameter.Type.BOOL}
_LATCHED = latched(1)  #: ~/model_info: a late subscriber gets the current model at once
_SHUTDOWN_JOIN_S = 0.05  # at process exit: how long to wait for a window in flight before leaving it to the thread


def _descriptor(name: str, spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, type=int(_PTYPE[spec.type].value), description=spec.description)
    if name in PARAMETER_CHOICES:
        desc.additional_constraints = "one of: " + ", ".join(PARAMETER_CHOICES[name])
    elif name == "device":
        desc.additional_constraints = "auto, cpu, cuda or cuda:N"
    if spec.range is not None:
        low, high = spec.range
        if spec.type is int:
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return desc


class RecognizerNode(IntakeMixin, InferenceMixin, ModelSwapMixin, LifecycleNode):
    """Camera images -> action labels; see the module docstring for the interface."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._bad_overrides: dict[str, str] = {}
        self._declare_parameters()
        self.autostart = bool(self.get_parameter("autostart").value)
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._swap_after_set)  # starts an accepted model swap
        self._recognition_enabled = True
        self._decoder = ImageDecoder()  # replaced at activation, with the max_image_pixels / max_aspect limits
        self._reset_reporter = ResetReporter()
        self._cfg: dict[str, Any] = {}
        self._checkpoint = None
        self._device = None
        self._device_description = ""
        self._model_source = ""
        self._image_topic = ""
        self._recognizer = None
        self._window: FrameWindow | None = None
        self._predictor: Predictor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stats = NodeStats(DROP_CAUSES)
        self._image_sub = None
        self._pubs: dict[str, Any] = {}
        self._own_services: list[Any] = []
        self._diag_timer = None
        self._intake_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._swap_group = MutuallyExclusiveCallbackGroup()  # ~/load_model: a load blocks neither intake nor timers
        self._swap_wake = self.create_guard_condition(lambda: None, callback_group=self._swap_group)
        self._init_model_swap()

    # -- read-only views ------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False while paused through ``~/enable``."""
        return self._recognition_enabled

    @property
    def state_label(self) -> str:
        """The lifecycle state: unconfigured, inactive, active, finalized..."""
        try:
            return str(self._state_machine.current_state[1])
        except Exception:  # before the state machine exists
            return "unknown"

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the checked parameters of the current configuration (empty while unconfigured)."""
        return dict(self._cfg)

    @property
    def image_topic(self) -> str:
        return self._image_topic

    # -- parameters -------------------------------------------------------------------------------------------------

    def _declare_parameters(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {})
        for name, spec in PARAMETER_SPECS.items():
            override = overrides.get(name)
            if override is not None and spec.type is float and override.type_ == Parameter.Type.INTEGER:
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE, coerce_value(name, override.value))
            try:
                self.declare_parameter(name, spec.default, _descriptor(name, spec))
            except Exception as exc:  # wrong type or out of range: keep the default, fail configure
                shown = overrides[name].value if name in overrides else "?"
                why = (validate_value(name, shown) if name in overrides else None) or str(exc)
                self._bad_overrides[name] = f"{shown!r} is invalid: {why}"
                self.declare_parameter(name, spec.default, _descriptor(name, spec), ignore_override=True)
                self.get_logger().error(f"parameter {name}={shown!r} is invalid: {why}; configure will fail")

    @staticmethod
    def _coerce_parameters(params: list[Parameter]) -> list[Parameter]:
        """Before rclpy's type check: an integer for a float parameter becomes a double (``ros2 param set ...
        score_threshold 1``), at run time as at start-up (see _declare_parameters)."""
        out = []
        for param in params:
            spec = PARAMETER_SPECS.get(param.name)
            if spec is not None and spec.type is float and param.type_ == Parameter.Type.INTEGER:
                param = Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
            out.append(param)
        return out

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """What the parameter services call: an undeclared name is refused with its name and the nearest declared
        ones (rclpy would say "Invalid access to undeclared parameter(s): []")."""
        unknown = [param.name for param in parameter_list if not self.has_parameter(param.name)]
        if unknown:
            import difflib

            names = sorted(PARAMETER_SPECS)
            near = difflib.get_close_matches(unknown[0], names, n=2)
            hint = f" (did you mean {' or '.join(near)}?)" if near else ""
            return SetParametersResult(successful=False, reason=(
                f"{self.get_name()} has no parameter {unknown[0]!r}{hint}; its parameters are: {', '.join(names)}"))
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        state = self.state_label
        swap_to = None
        for param in params:
            name = param.name
            if name not in PARAMETER_SPECS:
                continue
            if name in SWAPPABLE_PARAMETERS and state in ("inactive", "active") and isinstance(param.value, str):
                swap_to = param.value.strip()  # loaded and validated below, after every other check passed
                continue
            if name == "autostart":
                return SetParametersResult(successful=False,
                                           reason="autostart is read-only: it is read at start-up only")
            if PARAMETER_SPECS[name].read_only and state != "unconfigured":
                return SetParametersResult(successful=False, reason=(
                    f"{name} is read-only while the node is {state}; restart the node with the new value "
                    f"(or deactivate, cleanup, set it and configure again)"))
            value = coerce_value(name, param.value)
            problem = validate_value(name, value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{name}={value!r}: {problem}")
        if swap_to is not None:  # model_path at run time: refused (old model kept) with the reason when it fails
            problem = self._swap_parameter_check(swap_to, str(self.get_parameter("model_path").value))
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in params:  # all accepted: apply the run-time ones
            if param.name in RUNTIME_PARAMETERS and self._cfg:
                self._apply_runtime(param.name, coerce_value(param.name, param.value))
        return SetParametersResult(successful=True)

    def _apply_runtime(self, name: str, value: Any) -> None:
        self._cfg[name] = value
        window, predictor = self._window, self._predictor
        if name == "hop" and window is not None:
            window.set_hop(int(value))
        elif name != "hop" and predictor is not None:
            predictor.set(name, value)
        self.get_logger().info(f"parameter {name} set to {value!r}")

    # -- lifecycle transitions ----------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """unconfigured -> inactive: read and check every parameter, load and check the checkpoint (on the CPU),
        resolve the device, create the (disabled) lifecycle publishers, ``~/enable`` and the diagnostics timer.
        A wrong path, device or value fails the transition with an error naming the parameter."""
        return guarded_transition(self, "configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """inactive -> active: move the model to the device, warm it up (logging the time and the device), start the
        inference thread, subscribe, then enable the publishers."""
        result = guarded_transition(self, "activate", self._activate)
        if result != SUCCESS:
            return result
        result = super().on_activate(state)
        self._publish_model_info()  # the publishers are enabled now
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """active -> inactive: disable the publishers, unsubscribe, stop the inference thread and free the model
        (and its GPU memory). The configuration and the counters stay."""
        super().on_deactivate(state)

        def deactivate():
            self._stop_pipeline(wait=True)
            self.get_logger().info("deactivated: model released")
            return SUCCESS
        return guarded_transition(self, "deactivate", deactivate)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """inactive -> unconfigured: drop publishers, service, timer, the checkpoint and the counters."""
        def cleanup():
            self._tidy(wait=True)
            self._cfg = {}
            self._stats = NodeStats(DROP_CAUSES)
            return SUCCESS
        return guarded_transition(self, "cleanup", cleanup)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """any state -> finalized: stop everything and drop every interface."""
        return guarded_transition(self, "shutdown", lambda: self._tidy(wait=True))

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop everything, drop every interface and go back to unconfigured."""
        self._tidy(wait=True)
        return SUCCESS

    def _configure(self) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            if self._bad_overrides:
                name, what = next(iter(self._bad_overrides.items()))
                raise ValueError(f"parameter {name}={what}")
            cfg = check_parameters({name: self.get_parameter(name).value for name in PARAMETER_SPECS})
        except ValueError as exc:
            log.error(f"configure failed: {exc}")
            return FAILURE
        try:
            setup = prepare_model(cfg, log.info)
        except ConfigureError as exc:
            log.error(f"configure failed: {exc}")
            return FAILURE
        cfg, checkpoint, path, spec = setup.cfg, setup.checkpoint, setup.path, setup.checkpoint.input_spec
        self._cfg, self._checkpoint, self._model_source, self._device = cfg, checkpoint, path, setup.device
        self._device_description = setup.device_description
        self._model_sha256, self._setup_recognizer = setup.sha256, setup.cpu_recognizer
        self._model_spec = window_spec(checkpoint, cfg["clip_len"], cfg["frame_stride"])
        self._create_interfaces()
        labels = list(checkpoint.labels)
        shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        log.info(f"configured: model {path} ({len(labels)} classes: {shown}), clip_len {cfg['clip_len']}, "
                 f"frame_stride {cfg['frame_stride']}, input {tuple(spec.size)}, device {self._device_description}, "
                 f"precision {cfg['precision']}, image decoder {self._decoder.backend}"
                 + ("" if Classification is not None else "; vision_msgs not installed: `actions` not published"))
        return SUCCESS

    def _create_interfaces(self) -> None:
        pub = self.create_lifecycle_publisher
        self._pubs = {"label": pub(String, "action_label", RELIABLE),
                      "prediction": pub(String, "~/prediction", RELIABLE)}
        if Classification is not None:
            self._pubs["actions"] = pub(Classification, "actions", RELIABLE)
        if self._cfg["publish_debug_image"]:
            self._pubs["debug"] = pub(Image, "~/debug_image", qos_profile_sensor_data)
        self._pubs["diagnostics"] = pub(DiagnosticArray, "/diagnostics", RELIABLE)
        self._pubs["model_info"] = pub(String, "~/model_info", _LATCHED)
        self._own_services = [self.create_service(SetBool, "~/enable", self._on_enable,
                                                  callback_group=self._service_group),
                              self.create_service(Trigger, "~/load_model", self._on_load_model,
                                                  callback_group=self._swap_group)]
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                             callback_group=self._service_group)

    def _activate(self) -> TransitionCallbackReturn:
        log, cfg = self.get_logger(), self._cfg
        try:  # the CPU recognizer self-tested at configure is reused when the device is the CPU
            recognizer, warm_s = build_on_device(self._checkpoint, self._model_source, self._device, cfg["precision"],
                                                 cfg["backend"], cfg["warmup"], log.info, self._setup_recognizer)
            self._setup_recognizer = None
        except Exception as exc:
            log.error(f"activate failed: cannot load the model {self._model_source} on "
                      f"{self._device_description} ({cfg['precision']}): {exc}")
            return FAILURE
        log.info(f"model ready on {recognizer.device_description} ({cfg['precision']}): warm-up "
                 f"{cfg['warmup']} inference(s) in {warm_s:.3f} s")
        gap = cfg["max_frame_gap"]
        self._window = FrameWindow(cfg["clip_len"], cfg["frame_stride"], cfg["hop"], gap if gap > 0 else None)
        with self._swap_lock:
            self._predictor = Predictor(recognizer.top_k, cfg["smoothing"], cfg["score_threshold"], cfg["top_k"])
            self._recognizer = recognizer
        self._stop = threading.Event()  # a fresh event: a thread still finishing a window keeps its own, set one
        self._thread = threading.Thread(target=self._inference_loop, args=(self._window, recognizer, self._stop),
                                        name="repflow_inference", daemon=True)
        self._thread.start()
        self._subscribe()
        log.info(f"active: listening on {self._image_topic} ({cfg['image_transport']}, QoS {cfg['image_qos']}), "
                 f"publishing {self.resolve_topic_name('action_label')}")
        return SUCCESS

    def _stop_pipeline(self, wait: bool) -> None:
        """Unsubscribe and stop the inference thread; the thread releases the model when it leaves its loop.
        ``wait``: block until it has (deactivate frees GPU memory before returning); otherwise (process exit) wait
        at most one short moment: a window in flight is abandoned, never waited for."""
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        self._stop.set()
        window, thread = self._window, self._thread
        if window is not None:
            window.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0 if wait else _SHUTDOWN_JOIN_S)
            if wait and thread.is_alive():
                self.get_logger().warning("the inference thread did not stop within 10 s")
        elif self._recognizer is not None:  # no thread ever ran with it
            self._recognizer.release()
        self._thread = self._recognizer = self._window = self._predictor = None

    def _tidy(self, wait: bool) -> TransitionCallbackReturn:
        self._stop_pipeline(wait)
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for service in self._own_services:
            self.destroy_service(service)
        self._own_services = []
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._checkpoint = None
        return SUCCESS

    def close(self) -> None:
        """Process exit: stop intake and inference at once (no waiting for a window in flight). Needs no context."""
        try:
            self._stop_pipeline(wait=False)
        except Exception:
            pass

    # -- enable service -----------------------------------------------------------------------------------------------

    def _on_enable(self, request, response):
        enable = bool(request.data)
        changed = enable != self._recognition_enabled
        self._recognition_enabled = enable
        window, predictor = self._window, self._predictor
        if predictor is not None:
            predictor.clear()
        if window is not None and changed:
            window.clear()  # no window may mix frames from before and after a pause
        response.success = True
        response.message = f"recognition {'enabled' if enable else 'paused'} (node {self.state_label})"
        if changed:
            self.get_logger().info(response.message)
        return response

    # -- model swap (the logic is in repflow_ros.model_swap) ----------------------------------------------------------

    async def _on_load_model(self, request, response):
        """``~/load_model`` (std_srvs/Trigger): load ``model_path`` again (a file replaced in place); replies after
        the full validation, success false with the reason when the old model was kept. A coroutine: the executor
        (a single thread) keeps serving intake and timers while the load runs in its own thread."""
        from rclpy.task import Future

        prepared, reason = self.begin_swap(self.get_parameter("model_path").value.strip(), "~/load_model")
        if prepared is None:
            response.success, response.message = False, reason
            return response
        future, wake = Future(), self._swap_wake

        def done(ok: bool, message: str) -> None:
            future.set_result((ok, message))
            wake.trigger()  # the executor resumes this coroutine on its next wake-up
        self.start_swap(prepared, "~/load_model", done)
        response.success, response.message = await future
        return response

    def _publish_model_info(self) -> None:
        pub = self._pubs.get("model_info")
        if pub is not None and self._checkpoint is not None and pub.is_activated:  # enabled by on_activate
            pub.publish(String(data=json.dumps(self._model_info_record())))

    # -- diagnostics --------------------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        pub = self._pubs.get("diagnostics")
        if pub is None:
            return
        cfg, active = self._cfg, self.state_label == "active"
        state = ("active" if self._recognition_enabled else "paused") if active else self.state_label
        info = {"device": self._device_description, "precision": cfg.get("precision", ""),
                "model": self._model_source, "clip_len": cfg.get("clip_len", ""),
                "frame_stride": cfg.get("frame_stride", ""), "hop": cfg.get("hop", ""),
                "image_topic": self._image_topic, "decoder": self._decoder.backend, "model_id": self._model_id()}
        warn, message, kv = diagnostic_status(self._stats.snapshot(), self._window_stats(),
                                              RESET_REASONS, info, state, active and self._recognition_enabled)
        # "<ns>/repflow_recognizer: inference" under a namespace, so several recognizers stay apart.
        name = f"{self.get_fully_qualified_name().lstrip('/')}: inference"
        pub.publish(diagnostic_array(name, self._device_description, warn, message, kv,
                                     self.get_clock().now().to_msg()))


def run(args: list[str] | None = None) -> int:
    """The node's life, returning the exit status (see :func:`repflow_ros.node_runner.run_lifecycle_node`)."""
    return run_lifecycle_node(RecognizerNode, args, NODE_NAME,
                              lambda: format_parameter_help("python -m repflow_ros.recognizer_node", NODE_NAME))


def main(args: list[str] | None = None) -> None:
    """Console script ``recognizer_node``: :func:`run`, then leave the process at once with its status
    (see :func:`repflow_ros.node_runner.exit_now`)."""
    exit_now(run(args))


if __name__ == "__main__":
    main()
