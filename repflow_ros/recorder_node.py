"""``repflow_recorder``: a lifecycle node that records labelled clips from the robot's camera into a dataset folder.

Run it with ``ros2 run repflow_ros recorder_node`` or, without a ROS install (PyPI wheels),
``python -m repflow_ros.recorder_node --ros-args -p dataset_dir:=/data/my_clips -r image:=/camera/image_raw``;
``--help`` lists every parameter with its default. ``python -m repflow_ros.record_clips`` drives it for a person in
front of the robot (countdown, progress, what was written).

Clips go to ``dataset_dir/<label>/<label>_<stamp>_<n>.avi`` at the camera's native size (the ``folders`` layout that
``python -m repflow_core.train --set data.layout=folders data.root=DIR`` reads), plus ``dataset_dir/index.csv`` (path,
label, first and last stamp, frame count, frame_id, size, fps); files are written atomically (see
:mod:`repflow_ros.clip_writer`). A clip holds the frames whose header stamps lie in ``[first, first + seconds)``.

Why these interfaces: a custom ``.srv`` carrying (label, seconds) cannot be generated on a pip-only machine (no rosidl
build), and every stock service type that carries a string is about something else. So the request is split into
stock types that ``ros2 service call`` / ``ros2 param set`` / ``ros2 topic pub`` all reach:

* parameters ``label`` and ``seconds`` (settable at run time; a label that is not a safe folder name is refused by
  the parameter request itself, with the reason), then
* ``~/start`` (std_srvs/Trigger): record one clip with the current ``label`` / ``seconds``; the reply says ``recording
  clip N ...`` or why not (inactive, already recording, no label, disk full, ``max_bytes`` reached);
* ``~/stop`` (std_srvs/Trigger): end the clip now and write what was recorded;
* ``~/record`` (std_msgs/String, in): a one-message request ``{"label": "wave", "seconds": 3}`` (or ``wave 3``),
  for scripts; its outcome is published on ``~/events``;
* ``~/events`` (std_msgs/String JSON, reliable, transient local, last 20): ``started``, ``written`` (path, frames,
  stamps), ``aborted`` / ``refused`` (reason) -- what a caller waits on;
* ``/diagnostics`` (1 Hz, ``repflow_recorder: recorder``): what is recording, clips written, frames dropped by cause,
  dataset bytes against ``max_bytes``, free disk space.

Images: ``image`` (sensor_msgs/Image) or ``image/compressed`` with ``image_transport:=compressed``, decoded by the same
:class:`~repflow_ros.image_decoding.ImageDecoder` (size guards) as the recognizer; bad frames are dropped and counted.

Threads: one executor thread, plus a clip-writer thread (:class:`~repflow_ros.clip_writer.WriterThread`) while
active. The executor runs every ROS callback *and* the lifecycle transitions, so a cleanup or deactivate never destroys
a subscription, service, timer or publisher while the executor is building its wait set or answering a request on
another thread (with a MultiThreadedExecutor that raised ``InvalidHandle: cannot use Destroyable because destruction
was requested`` and killed ``spin()``: issue 11; ``test/test_recorder_lifecycle_stress.py``). The expensive part --
decoding a frame and encoding it into the clip -- runs on the writer thread, so ``~/stop`` and the clip timeout stay
prompt: the image callback only reads the stamp and queues the message (bounded: :data:`QUEUE_FRAMES` frames,
:data:`QUEUE_BYTES` bytes; a frame that does not fit is dropped and counted as ``queue_full``). A clip's frames, its
commit and its discard reach its writer in order from that one thread. ``~/stop`` waits (at most :data:`STOP_WAIT_S`)
for the frames already queued to be written; deactivate, cleanup and exit discard a clip at once (its queued frames
are skipped) and stop the thread with a short bounded wait. Files stay atomic (temp + rename), so a recorder killed at
any moment still leaves no half clip.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from .clip_writer import (
    ClipWriter,
    LabelError,
    WriterThread,
    dataset_bytes,
    free_bytes,
    remove_stale_temps,
)
from .frame_window import BadStamp, stamp_to_ns
from .image_decoding import DECODE_ERROR_CAUSES, ImageDecoder
from .node_diagnostics import diagnostic_array
from .node_qos import RELIABLE, latched, subscribe_images
from .node_runner import exit_now, guarded_transition, run_lifecycle_node
from .recorder_clips import ABORT_WAIT_S, ClipEnding, RecordingClip
from .recorder_params import (
    NODE_NAME,
    RECORDER_PARAMETERS,
    check_recorder_parameters,
    format_recorder_help,
    parse_record_request,
    validate_recorder_value,
)

__all__ = ["NODE_NAME", "DROP_CAUSES", "RecorderNode", "main", "run"]

#: Why a frame is not recorded: decode causes, then stamp and size problems, then a writer that fell behind.
DROP_CAUSES = tuple(DECODE_ERROR_CAUSES) + ("bad_stamp", "stamp_backwards", "size_change", "queue_full", "other")
FRAME_TIMEOUT_S = 2.0  #: a clip whose camera goes quiet this long is written with the frames it has
QUEUE_FRAMES = 30  #: frames waiting for the writer thread: about 1 s of a 30 fps camera
QUEUE_BYTES = 256 * 1024 * 1024  #: and their bytes: a few 4K frames (a frame into an empty queue always fits)
STOP_WAIT_S = 10.0  #: longest ~/stop waits for the queued frames and the commit before answering "still writing"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
_EVENTS_QOS = latched(20)  #: ~/events: a caller that subscribes late still sees the recent outcomes


class RecorderNode(ClipEnding, LifecycleNode):
    """Camera images -> labelled clips; see the module docstring for the interface."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._bad_overrides: dict[str, str] = {}
        overrides = getattr(self, "_parameter_overrides", {})
        for name, spec in RECORDER_PARAMETERS.items():
            desc = ParameterDescriptor(name=name, description=spec.description)
            override = overrides.get(name)
            if override is not None and spec.type is float and override.type_ == Parameter.Type.INTEGER:
                overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(override.value))  # -p seconds:=3
            try:
                self.declare_parameter(name, spec.default, desc)
            except Exception as exc:  # wrong type: keep the default, fail configure with the reason
                self._bad_overrides[name] = str(exc)
                self.declare_parameter(name, spec.default, desc, ignore_override=True)
        self.autostart = bool(self.get_parameter("autostart").value)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._decoder = ImageDecoder()
        self._cfg: dict[str, Any] = {}
        self._root = Path()
        self._lock = threading.RLock()
        self._clip: RecordingClip | None = None
        self._clip_number = 0
        self._dataset_bytes = 0
        self._stamps: deque = deque(maxlen=31)  # recent frame stamps: the camera's rate for the clip's fps
        self._counts: dict[str, Any] = {}
        self._reset_counts()
        self._last_clip = ""
        self._image_topic = ""
        self._image_sub = None
        self._writer: WriterThread | None = None  # the clip-writer thread, while active
        self._pubs: dict[str, Any] = {}
        self._interfaces: list[tuple[str, Any]] = []

    def _reset_counts(self) -> None:
        self._counts = {"frames_in": 0, "frames_recorded": 0, "clips_written": 0, "clips_aborted": 0,
                        "dropped": {cause: 0 for cause in DROP_CAUSES}}

    @property
    def state_label(self) -> str:
        try:
            return str(self._state_machine.current_state[1])
        except Exception:
            return "unknown"

    # -- parameters -------------------------------------------------------------------------------------------------

    def _on_set_parameters(self, params) -> SetParametersResult:
        configured = self.state_label not in ("unconfigured", "unknown")
        for param in params:
            spec = RECORDER_PARAMETERS.get(param.name)
            if spec is None:
                continue
            if param.name == "autostart" or (spec.read_only and configured):
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read-only while the node is {self.state_label}; restart the node with the "
                    "new value (or deactivate, cleanup, set it and configure again)"))
            problem = validate_recorder_value(param.name, param.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{param.name}={param.value!r}: {problem}")
        if self._cfg:
            for param in params:
                if param.name in RECORDER_PARAMETERS and not RECORDER_PARAMETERS[param.name].read_only:
                    self._cfg[param.name] = float(param.value) if param.name in ("seconds", "fps") else param.value
        return SetParametersResult(successful=True)

    # -- lifecycle ----------------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, create ``dataset_dir``, remove stale temporaries of a killed recorder, create the
        (disabled) publishers, the services and timers."""
        return guarded_transition(self, "configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the clip-writer thread, subscribe to the camera; publishers enabled."""
        def activate():
            self._writer = WriterThread("clip_writer", QUEUE_FRAMES, QUEUE_BYTES, self._writer_failed)
            self._subscribe()
            self.get_logger().info(f"active: listening on {self._image_topic}, clips into {self._root}")
            return SUCCESS
        result = guarded_transition(self, "activate", activate)
        return super().on_activate(state) if result == SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe; a clip being recorded is discarded (its temporary file removed); the writer thread ends
        (a clip already being committed is finished first, within a bounded wait)."""
        self._abort_clip("the node was deactivated", wait=True)
        super().on_deactivate(state)
        return guarded_transition(self, "deactivate", lambda: self._unsubscribe() or self._stop_writer() or SUCCESS)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return guarded_transition(self, "cleanup", lambda: self._tidy() or SUCCESS)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return guarded_transition(self, "shutdown", lambda: self._tidy() or SUCCESS)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._tidy()
        return SUCCESS

    def _configure(self) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            if self._bad_overrides:
                name, why = next(iter(self._bad_overrides.items()))
                raise ValueError(f"parameter {name} is invalid: {why}")
            cfg = check_recorder_parameters({n: self.get_parameter(n).value for n in RECORDER_PARAMETERS})
            root = Path(cfg["dataset_dir"]).expanduser().resolve()
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                raise ValueError(f"dataset_dir {str(root)!r} is not writable")
        except (ValueError, OSError) as exc:
            log.error(f"configure failed: {exc}")
            return FAILURE
        self._cfg, self._root = cfg, root
        for path in remove_stale_temps(root):
            log.warning(f"removed {path}: a clip left unfinished by a recorder that was killed")
        self._dataset_bytes = dataset_bytes(root)
        self._reset_counts()
        pub = self.create_lifecycle_publisher
        self._pubs = {"events": pub(String, "~/events", _EVENTS_QOS),
                      "diagnostics": pub(DiagnosticArray, "/diagnostics", RELIABLE)}
        self._interfaces = [
            ("service", self.create_service(Trigger, "~/start", self._on_start)),
            ("service", self.create_service(Trigger, "~/stop", self._on_stop)),
            ("subscription", self.create_subscription(String, "~/record", self._on_record_request, RELIABLE)),
            ("timer", self.create_timer(0.1, self._check_timeout)),
            ("timer", self.create_timer(1.0, self._publish_diagnostics)),
        ]
        log.info(f"configured: dataset {root} ({self._dataset_bytes} bytes), max_bytes {cfg['max_bytes'] or 'none'}, "
                 f"min_free_bytes {cfg['min_free_bytes']}")
        return SUCCESS

    def _subscribe(self) -> None:
        cfg = self._cfg
        self._image_topic, self._image_sub = subscribe_images(self, cfg["image_transport"], cfg["image_qos"],
                                                              self._decoder, self._on_image, None)

    def _unsubscribe(self) -> None:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None

    def _stop_writer(self) -> None:
        """End the writer thread after what is queued (a discarded clip's frames are skipped), waiting at most
        ABORT_WAIT_S; a thread still busy then finishes alone (a daemon; it publishes nothing once inactive)."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.stop(ABORT_WAIT_S):
            self.get_logger().warning(f"the clip writer did not finish within {ABORT_WAIT_S:g} s; leaving it to end")

    def _tidy(self) -> None:
        self._abort_clip("the node is shutting down", wait=True)
        self._unsubscribe()
        self._stop_writer()
        for kind, handle in self._interfaces:
            {"service": self.destroy_service, "subscription": self.destroy_subscription,
             "timer": self.destroy_timer}[kind](handle)
        self._interfaces = []
        with self._lock:  # the writer thread publishes events under the lock: never into a destroyed publisher
            pubs, self._pubs = self._pubs, {}
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
        self._cfg = {}

    def close(self) -> None:
        """Process exit: discard a clip in progress (its temporary file removed), stop the writer thread with a
        short bounded wait. Needs no context."""
        try:
            self._abort_clip("the node is shutting down", publish=False, wait=True)
            self._stop_writer()
        except Exception:
            pass

    # -- requests -----------------------------------------------------------------------------------------------------

    def _event(self, event: str, **fields) -> None:
        """Publish on ~/events (from the executor or the writer thread: under the lock, which cleanup holds while it
        destroys the publisher)."""
        with self._lock:
            pub = self._pubs.get("events")
            if pub is None or self.state_label != "active":
                return
            try:
                pub.publish(String(data=json.dumps({"event": event, **fields})))
            except Exception:
                if self.context.ok():
                    raise
                # Ctrl-C / SIGTERM shut the context down while the writer thread finished a clip: the clip is on disk,
                # only its event is lost with the graph

    def start_clip(self, label: str, seconds: float) -> tuple[bool, str]:
        """Begin one clip (the checks of ``~/start``); returns (started, message)."""
        with self._lock:
            if self.state_label != "active":
                return False, f"the recorder is {self.state_label}, not active"
            if self._clip is not None:
                return False, f"already recording clip {self._clip.writer.number} ('{self._clip.writer.label}')"
            if not label:
                return False, "no label: set it first (ros2 param set /repflow_recorder label wave)"
            problem = self._space_problem(0)
            if problem:
                return False, problem
            try:
                fps = self._cfg["fps"] or self._camera_fps() or 30.0
                writer = ClipWriter(self._root, label, self._clip_number + 1, fps)
            except (LabelError, ValueError) as exc:
                return False, str(exc)
            self._clip_number += 1
            self._clip = RecordingClip(writer, float(seconds))
        message = f"recording clip {writer.number}: '{label}' for {seconds:g} s into {writer.folder}"
        self.get_logger().info(message)
        self._event("started", clip=writer.number, label=label, seconds=float(seconds))
        return True, message

    def _on_start(self, request, response):
        cfg = self._cfg
        response.success, response.message = self.start_clip(cfg.get("label", ""), cfg.get("seconds", 0.0))
        if not response.success:
            self._event("refused", label=cfg.get("label", ""), reason=response.message)
        return response

    def _on_stop(self, request, response):
        """End the clip now: waits (at most STOP_WAIT_S) until its queued frames are written and it is committed."""
        with self._lock:
            clip = self._clip
            if clip is not None and clip.queued == 0:
                self._abort_clip("stopped before any frame arrived")
            elif clip is not None:
                self._commit_clip("stopped")
        if clip is None:
            response.success, response.message = False, "not recording"
        elif clip.queued == 0:
            response.success, response.message = False, f"clip {clip.writer.number} stopped before any frame"
        elif not clip.done.wait(STOP_WAIT_S):  # outside the lock: the writer thread takes it to finish the clip
            response.success = True
            response.message = (f"still writing clip {clip.writer.number} ({clip.queued - clip.processed} frames "
                                "queued); its outcome follows on ~/events")
        else:
            result = clip.result
            response.success = result is not None
            response.message = f"wrote {result.path} ({result.frames} frames)" if result else \
                f"write failed: {clip.error}"
        return response

    def _on_record_request(self, msg: String) -> None:
        try:
            label, seconds = parse_record_request(msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"~/record request {msg.data!r} refused: {exc}")
            self._event("refused", request=msg.data, reason=str(exc))
            return
        ok, message = self.start_clip(label, seconds)
        if not ok:
            self.get_logger().warning(f"~/record request {msg.data!r} refused: {message}")
            self._event("refused", label=label, request=msg.data, reason=message)

    def _space_problem(self, clip_bytes: int) -> str | None:
        cfg = self._cfg
        if not cfg:  # cleaned up meanwhile (a writer thread finishing alone): nothing to check against
            return None
        if cfg["max_bytes"] and self._dataset_bytes + clip_bytes >= cfg["max_bytes"]:
            return (f"max_bytes reached: {self._root} holds {self._dataset_bytes + clip_bytes} bytes, limit "
                    f"{cfg['max_bytes']} (raise max_bytes or move clips away)")
        free = free_bytes(self._root)
        if free < cfg["min_free_bytes"]:
            return f"free disk space {free} bytes on {self._root} is below min_free_bytes {cfg['min_free_bytes']}"
        return None

    def _camera_fps(self) -> float | None:
        stamps = sorted(self._stamps)
        gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
        return 1e9 / gaps[len(gaps) // 2] if gaps else None  # median: robust to a dropped frame or a stall

    # -- intake -------------------------------------------------------------------------------------------------------

    def _drop(self, cause: str, message: str) -> None:
        with self._lock:
            cause = cause if cause in self._counts["dropped"] else "other"
            self._counts["dropped"][cause] += 1
            first = self._counts["dropped"][cause] == 1
        if first:
            self.get_logger().warning(f"dropping frame ({cause}): {message}; further '{cause}' drops are only "
                                      "counted in /diagnostics")

    def _on_image(self, msg, decode) -> None:
        """Executor thread: read the stamp and queue the frame for the clip being recorded (nothing else: decoding
        and encoding are the writer thread's, so this never delays ~/stop or the timeout)."""
        if not self._cfg:
            return
        with self._lock:
            self._counts["frames_in"] += 1
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        except BadStamp as exc:
            return self._drop(exc.cause, str(exc))
        if stamp_ns == 0:
            stamp_ns = self.get_clock().now().nanoseconds  # a camera without stamps: the node's clock
        self._stamps.append(stamp_ns)
        with self._lock:
            clip, writer = self._clip, self._writer
            if clip is None or writer is None:
                return
            if not writer.offer(lambda: self._write_frame(clip, msg, decode, stamp_ns), len(msg.data)):
                return self._drop("queue_full", f"the clip writer is {writer.queued_frames} frames behind the camera")
            clip.queued += 1
            clip.last_frame_mono = time.monotonic()

    def _check_timeout(self) -> None:
        """A camera that stops mid-clip: write what was recorded; no frame at all: give up with the reason."""
        with self._lock:
            clip = self._clip
            if clip is None:
                return
            now = time.monotonic()
            idle = clip.writer.frames == 0 and clip.processed == clip.queued  # nothing written, nothing pending
            if idle and now - clip.started_mono > FRAME_TIMEOUT_S + clip.seconds:
                self._abort_clip(f"no frames on {self._image_topic} within {FRAME_TIMEOUT_S + clip.seconds:g} s")
            elif not idle and now - clip.last_frame_mono > FRAME_TIMEOUT_S:
                self._commit_clip(f"camera silent for {FRAME_TIMEOUT_S:g} s")

    # -- diagnostics --------------------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        pub, cfg = self._pubs.get("diagnostics"), self._cfg
        if pub is None or not cfg or self.state_label != "active":
            return
        with self._lock:
            clip, writer, counts = self._clip, self._writer, json.loads(json.dumps(self._counts))
        free = free_bytes(self._root)
        recording = f"clip {clip.writer.number} '{clip.writer.label}' ({clip.writer.frames} frames)" if clip else ""
        kv = {"state": "recording" if clip else "idle", "recording": recording,
              "clips_written": str(counts["clips_written"]), "clips_aborted": str(counts["clips_aborted"]),
              "frames_in": str(counts["frames_in"]), "frames_recorded": str(counts["frames_recorded"]),
              "frames_queued": str(writer.queued_frames if writer is not None else 0)}
        kv.update({f"frames_dropped_{c}": str(n) for c, n in counts["dropped"].items()})
        fps = self._camera_fps()
        kv.update({"camera_fps": f"{fps:.2f}" if fps else "", "dataset_dir": str(self._root),
                   "dataset_bytes": str(self._dataset_bytes), "max_bytes": str(cfg["max_bytes"]),
                   "free_bytes": str(free), "min_free_bytes": str(cfg["min_free_bytes"]),
                   "last_clip": self._last_clip, "image_topic": self._image_topic})
        problems = [p for p in (self._space_problem(0),) if p]
        if any(counts["dropped"].values()):
            problems.append("dropping frames (" + ", ".join(c for c, n in counts["dropped"].items() if n) + ")")
        message = "; ".join(problems) or (f"recording {recording}" if clip else "idle")
        name = f"{self.get_fully_qualified_name().lstrip('/')}: recorder"
        pub.publish(diagnostic_array(name, str(self._root), bool(problems), message, kv,
                                     self.get_clock().now().to_msg()))


def run(args: list[str] | None = None) -> int:
    """The node's life: 0 after Ctrl-C / SIGTERM or ``--help``, 1 when autostart fails or a ``--params-file`` is
    missing or unreadable, 2 on an unexpected error (see :func:`repflow_ros.node_runner.run_lifecycle_node`). One
    executor thread (the runner's default), so lifecycle transitions never race the wait set (issue 11); encoding
    frames into the clip is the writer thread's (module docstring), so ``~/stop`` and the timeout stay prompt."""
    return run_lifecycle_node(RecorderNode, args, NODE_NAME,
                              lambda: format_recorder_help("python -m repflow_ros.recorder_node"))


def main(args: list[str] | None = None) -> None:
    """Console script ``recorder_node``: :func:`run`, then leave at once (skipping the slow interpreter teardown of
    the DDS libraries, see :func:`repflow_ros.node_runner.exit_now`)."""
    exit_now(run(args))


if __name__ == "__main__":
    main()
