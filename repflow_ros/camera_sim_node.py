"""Demo camera: publishes synthetic action clips or a video file as a ROS 2 camera would.

Node ``camera_sim`` (console script ``camera_sim``; also ``python -m repflow_ros.camera_sim_node``).

Topics (relative, so ``-r image:=/camera/image_raw`` remaps them like a camera driver's):

* ``image`` (sensor_msgs/Image, ``rgb8`` or ``bgr8``), stamped with the node clock at publish time, ``frame_id``
  from the parameter of that name.
* ``image/compressed`` (sensor_msgs/CompressedImage, JPEG) when ``compressed`` is true, same stamp.
* ``~/ground_truth`` (std_msgs/String, JSON ``{"action", "stamp", "clip_index", "frame_index", "seq"}``) for
  every published frame: the true action of that frame, for scoring a recognizer (``repflow_ros.demo``).
  ``stamp`` is the image stamp in float seconds (``sec + nanosec * 1e-9``).

QoS: RELIABLE, KEEP_LAST 10, as most camera drivers publish; a BEST_EFFORT (sensor data) subscriber matches it.

Sources (parameter ``source``):

* ``synthetic`` (default): clips of ``clip_frames`` frames rendered with
  :func:`repflow_core.data.synthetic.render_clip`, one per action, in a random order per pass (drawn from
  ``seed``), restricted to ``actions`` when given. The next clip is rendered by a background thread while the
  current one is being published, so rendering never delays a frame. ``generation`` picks the synthetic world:
  1 (square renders, small camera jitter: the packaged model's stronger world) or 2 (rooms, varied people,
  a robot camera; rendered natively at ``width`` x ``height``); ``camera_motion`` switches generation 2's
  robot ego-motion (pan/tilt/zoom/shake) on or off (generation 1 has only its fixed jitter, so
  ``camera_motion: false`` needs generation 2).
* a path to a video file (or a frame folder) read with :func:`repflow_core.data.video_io.read_video`; its ground
  truth is the ``label`` parameter (default ``unknown``). A missing or unreadable file is reported and the process
  exits with status 1.

Frames are resized to ``width`` x ``height`` (0 keeps a video's own size). With ``loop`` false the node publishes
one pass (every action once, or the video once) and exits with status 0.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

NODE_NAME = "camera_sim"
DEFAULT_FPS = 30.0
# The demo world: generation 1 at 128x128, where the packaged model (trained on both worlds) is right on ~80% of
# clean demo windows; at generation 2 / 640x480 it is 62% (README quick start), under issue 9's 85%, so the demo
# stays here until a model reaches it there (then: 2, 640, 480).
DEFAULT_GENERATION, DEFAULT_WIDTH, DEFAULT_HEIGHT = 1, 128, 128
GENERATIONS = (1, 2)
# render_clip scales an action's duration to the clip, so this sets how fast actions move per frame: 40 is
# what the packaged model was trained on (config/train_synthetic.yaml, synthetic.num_frames).
DEFAULT_CLIP_FRAMES = 40
ENCODINGS = ("rgb8", "bgr8")


class SourceError(RuntimeError):
    """A source that cannot be used (missing/corrupt video, unknown action, bad size); the message says why."""


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    action: str
    clip_index: int


def _resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if width <= 0 or height <= 0 or frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    interp = cv2.INTER_AREA if frames.shape[2] > width else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def synthetic_action_order(actions: Sequence[str], seed: int, passes: int | None = None) -> Iterator[str]:
    """Every action once per pass, each pass in a fresh random order drawn from ``seed`` (deterministic)."""
    rng = random.Random(seed)
    done = 0
    while passes is None or done < passes:
        order = list(actions)
        rng.shuffle(order)
        yield from order
        done += 1


class SyntheticSource:
    """Renders clips ahead of time in a daemon thread (queue of ``ahead`` clips)."""

    def __init__(self, actions: Sequence[str], clip_frames: int, width: int, height: int, seed: int,
                 loop: bool, ahead: int = 2, generation: int = DEFAULT_GENERATION, camera_motion: bool = True):
        from repflow_core.data import synthetic

        if width <= 0 or height <= 0:
            raise SourceError(f"the synthetic source needs a positive width and height, got {width}x{height}")
        if min(width, height) < synthetic.MIN_SIZE:
            raise SourceError(f"the synthetic source renders frames of at least {synthetic.MIN_SIZE} px a side, "
                              f"got width {width} x height {height}")
        if generation not in GENERATIONS:
            raise SourceError(f"generation must be one of {GENERATIONS}, got {generation!r}")
        if generation == 1 and not camera_motion:
            raise SourceError("camera_motion false needs generation 2: generation 1 has a fixed small camera jitter")
        # generation 2 only: None = the generator's default robot camera (ego-motion in most clips)
        self._config = (None if generation == 1 or camera_motion
                        else synthetic.SynthConfig.from_dict({"camera": {"motion": False}}))
        self.generation = int(generation)
        if clip_frames < 1:
            raise SourceError(f"clip_frames must be >= 1, got {clip_frames}")
        known = tuple(synthetic.ACTIONS)
        chosen = [a for a in actions if a] or list(known)
        unknown = [a for a in chosen if a not in known]
        if unknown:
            raise SourceError(f"unknown action(s) {unknown}; known actions: {', '.join(known)}")
        self._render = synthetic.render_clip
        self.actions = chosen
        self._clip_frames = int(clip_frames)
        self._size = (int(height), int(width))
        self._seed = int(seed)
        self._order = synthetic_action_order(chosen, seed, passes=None if loop else 1)
        self._queue: queue.Queue[Clip | None] = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="camera_sim_render", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for index, action in enumerate(self._order):
                clip_seed = (self._seed * 1_000_003 + index) % (2**31 - 1)
                frames = np.asarray(self._render(action, self._clip_frames, size=self._size, seed=clip_seed,
                                                 generation=self.generation, config=self._config))
                clip = Clip(np.ascontiguousarray(frames, dtype=np.uint8), action, index)
                while not self._stop.is_set():
                    try:
                        self._queue.put(clip, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # reported by next_clip() in the publishing thread
            self.error = exc
        self._put_end()

    def _put_end(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(None, timeout=0.05)
                return
            except queue.Full:
                continue

    def next_clip(self, timeout: float = 10.0) -> Clip | None:
        """The next clip, or None at the end of a non-looping pass. Raises if rendering failed."""
        clip = self._queue.get(timeout=timeout)
        if clip is None and self.error is not None:
            raise SourceError(f"rendering a synthetic clip failed: {self.error!r}") from self.error
        return clip

    def close(self, timeout: float = 5.0) -> None:
        """Stop rendering and wait for the thread (at most one clip's render time): a daemon thread still inside
        OpenCV when the interpreter exits is killed with pthread_exit, which aborts the process ("terminate called
        without an active exception", status -6; seen in 2 of 6 stops before this join)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


class VideoSource:
    """A decoded video file played as one clip per pass."""

    def __init__(self, path: str, width: int, height: int, label: str, loop: bool):
        from repflow_core.data.video_io import VideoReadError, read_video

        if not os.path.exists(path):
            raise SourceError(f"video source not found: {path}")
        try:
            frames = read_video(path)
        except VideoReadError as exc:
            raise SourceError(f"cannot read video source {path}: {exc}") from exc
        except Exception as exc:  # OpenCV errors on damaged files
            raise SourceError(f"cannot read video source {path}: {exc!r}") from exc
        if frames.ndim != 4 or frames.shape[0] == 0:
            raise SourceError(f"video source {path} has no decodable frames")
        self.frames = _resize_frames(frames, width, height)
        self.label = label or "unknown"
        self._loop = loop
        self._index = 0
        self.actions = [self.label]

    def next_clip(self, timeout: float = 0.0) -> Clip | None:
        if self._index > 0 and not self._loop:
            return None
        clip = Clip(self.frames, self.label, self._index)
        self._index += 1
        return clip

    def close(self) -> None:
        pass


def stamp_to_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds, the one conversion used for ground truth and predictions."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@dataclass(frozen=True)
class ParamDef:
    """One node parameter: declared from this table and printed by ``--help`` (one source for both)."""

    name: str
    default: Any  #: None: a string array without a default (``actions``)
    description: str
    low: float | None = None  #: inclusive range, declared as an Integer/FloatingPointRange
    high: float | None = None


PARAMS: tuple[ParamDef, ...] = (
    ParamDef("source", "synthetic", "'synthetic' (rendered action clips) or a path to a video file / frame folder"),
    ParamDef("fps", DEFAULT_FPS, "publish rate in frames per second", 0.1, 1000.0),
    ParamDef("width", DEFAULT_WIDTH, "image width in pixels (0: a video's own width)", 0, 8192),
    ParamDef("height", DEFAULT_HEIGHT, "image height in pixels (0: a video's own height)", 0, 8192),
    ParamDef("encoding", "rgb8", "sensor_msgs/Image encoding: rgb8 or bgr8"),
    ParamDef("compressed", False, "also publish JPEG sensor_msgs/CompressedImage on image/compressed"),
    ParamDef("jpeg_quality", 90, "JPEG quality of image/compressed", 1, 100),
    ParamDef("frame_id", "camera_frame", "header.frame_id of the published images"),
    ParamDef("clip_frames", DEFAULT_CLIP_FRAMES, "frames per synthetic action clip", 1, 100000),
    ParamDef("seed", 0, "seed of the synthetic action order and clip rendering"),
    ParamDef("generation", DEFAULT_GENERATION, "synthetic world: 1 (square renders, the packaged model's stronger "
             "world) or 2 (rooms, varied people, robot camera)", 1, 2),
    ParamDef("camera_motion", True, "generation 2: robot ego-motion (pan/tilt/zoom/shake) in the synthetic clips"),
    ParamDef("actions", None, "synthetic actions to cycle through (default: all of "
             "repflow_core.data.synthetic.ACTIONS)"),
    ParamDef("label", "unknown", "ground-truth action published for a video-file source"),
    ParamDef("loop", True, "loop forever; false: publish one pass (every action once / the video once), exit 0"),
    ParamDef("wait_for_subscribers", 0, "wait until this many subscribers are matched on 'image' before "
             "publishing (0: publish at once, as a camera does)", 0, 1000),
)


def help_text() -> str:
    """``--help``: usage, topics and every parameter with its default and range (no rclpy needed)."""
    lines = [f"usage: {NODE_NAME} [-h] [--ros-args [-p NAME:=VALUE ...] [-r FROM:=TO ...] [--params-file FILE]]",
             "", __doc__.strip().split("\n")[0], "",
             "Publishes on 'image' (+ 'image/compressed') and '~/ground_truth';",
             "remap with -r image:=/camera/image_raw.",
             "Stops cleanly on SIGINT and SIGTERM (exit status 0).", "", "parameters (default):"]
    for p in PARAMS:
        default = "[] (all actions)" if p.default is None else repr(p.default)
        span = f" [{p.low:g}, {p.high:g}]" if p.low is not None else ""
        lines.append(f"  {p.name:<22}{default:<18}{p.description}{span}")
    return "\n".join(lines)


def _wants_help(argv: Sequence[str]) -> bool:
    """-h / --help among the arguments before ``--ros-args`` (what follows belongs to ROS)."""
    own = list(argv[1:])
    if "--ros-args" in own:
        own = own[: own.index("--ros-args")]
    return "-h" in own or "--help" in own


def _make_node_class():
    # Deferred so that importing this module (e.g. for synthetic_action_order or --help) does not need rclpy.
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from .image_decoding import rgb_to_compressed_msg, rgb_to_image_msg
    from .node_qos import RELIABLE  # images: reliable, last 10, as most camera drivers publish

    def descriptor(p: ParamDef) -> ParameterDescriptor:
        if p.low is None:
            return ParameterDescriptor(description=p.description)
        if isinstance(p.default, float):
            return ParameterDescriptor(description=p.description, floating_point_range=[
                FloatingPointRange(from_value=float(p.low), to_value=float(p.high))])
        return ParameterDescriptor(description=p.description, integer_range=[
            IntegerRange(from_value=int(p.low), to_value=int(p.high))])

    class CameraSimNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NODE_NAME, **kwargs)
            for p in PARAMS:
                default = Parameter.Type.STRING_ARRAY if p.default is None else p.default
                self.declare_parameter(p.name, default, descriptor(p))
            g = self.get_parameter
            self.fps = float(g("fps").value)
            self.encoding = str(g("encoding").value).lower()
            if self.encoding not in ENCODINGS:
                raise SourceError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
            self.frame_id = str(g("frame_id").value)
            self.compressed = bool(g("compressed").value)
            self.jpeg_quality = int(g("jpeg_quality").value)
            self.loop = bool(g("loop").value)
            self.wait_for_subscribers = int(g("wait_for_subscribers").value)
            source = str(g("source").value).strip()
            width, height = int(g("width").value), int(g("height").value)
            actions = list(self.get_parameter_or("actions", Parameter("actions", Parameter.Type.STRING_ARRAY, []))
                           .value or [])
            if source in ("", "synthetic", "sim"):
                self.source = SyntheticSource(actions, int(g("clip_frames").value), width, height,
                                              int(g("seed").value), self.loop, generation=int(g("generation").value),
                                              camera_motion=bool(g("camera_motion").value))
                what = (f"synthetic actions {self.source.actions} (generation {self.source.generation}, "
                        f"{width}x{height}), {int(g('clip_frames').value)} frames per clip")
            else:
                self.source = VideoSource(os.path.expanduser(source), width, height, str(g("label").value),
                                          self.loop)
                what = f"video {source} ({len(self.source.frames)} frames)"

            self.image_pub = self.create_publisher(Image, "image", RELIABLE)
            self.compressed_pub = (self.create_publisher(CompressedImage, "image/compressed", RELIABLE)
                                   if self.compressed else None)
            self.truth_pub = self.create_publisher(String, "~/ground_truth", QoSProfile(
                reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100))
            self._rgb_to_image_msg = rgb_to_image_msg
            self._rgb_to_compressed_msg = rgb_to_compressed_msg
            self._String = String

            self.clip: Clip | None = None
            self.frame_index = 0
            self.published = 0
            self.finished = False
            self.stopping = False  # set by the SIGINT/SIGTERM handler in main()
            self.exit_code = 0
            self._started = self.wait_for_subscribers == 0
            self._matched_at: float | None = None
            self.timer = self.create_timer(1.0 / self.fps, self._tick)
            self.get_logger().info(
                f"publishing {what} at {self.fps:g} fps as {self.encoding} on "
                f"{self.image_pub.topic_name}{' (+ compressed)' if self.compressed else ''}, "
                f"ground truth on {self.truth_pub.topic_name}, loop={self.loop}")

        def _ready(self) -> bool:
            if self._started:
                return True
            if self.image_pub.get_subscription_count() >= self.wait_for_subscribers:
                now = time.monotonic()
                if self._matched_at is None:
                    self._matched_at = now
                # a short grace so that the subscriber side has matched us as well (reliable delivery)
                if now - self._matched_at >= 0.3:
                    self._started = True
                    self.get_logger().info("subscribers matched, publishing")
            return self._started

        def _next_frame(self):
            while self.clip is None or self.frame_index >= len(self.clip.frames):
                self.clip = self.source.next_clip()
                self.frame_index = 0
                if self.clip is None:
                    return None
            frame = self.clip.frames[self.frame_index]
            self.frame_index += 1
            return frame

        def _tick(self) -> None:
            if self.finished or self.stopping or not self.context.ok() or not self._ready():
                return
            try:
                frame = self._next_frame()
            except Exception as exc:
                self.get_logger().error(str(exc))
                self.exit_code, self.finished = 1, True
                return
            if frame is None:
                self.get_logger().info(f"one pass done ({self.published} frames published), exiting")
                self.finished = True
                return
            try:
                self._publish(frame)
            except Exception:
                # A shutdown that lands between the check above and publish() invalidates the publishers'
                # context ("RCLError: Failed to publish: publisher's context is invalid"): not an error then.
                if self.stopping or not self.context.ok():
                    return
                raise

        def _publish(self, frame: np.ndarray) -> None:
            stamp = self.get_clock().now().to_msg()
            self.image_pub.publish(self._rgb_to_image_msg(frame, stamp=stamp, frame_id=self.frame_id,
                                                          encoding=self.encoding))
            if self.compressed_pub is not None:
                self.compressed_pub.publish(self._rgb_to_compressed_msg(
                    frame, "jpeg", self.jpeg_quality, stamp=stamp, frame_id=self.frame_id))
            truth = self._String()
            truth.data = json.dumps({"action": self.clip.action, "stamp": stamp_to_seconds(stamp),
                                     "clip_index": self.clip.clip_index, "frame_index": self.frame_index - 1,
                                     "seq": self.published})
            self.truth_pub.publish(truth)
            self.published += 1

        def destroy_node(self):
            source = getattr(self, "source", None)  # absent when a parameter was refused during __init__
            if source is not None:
                source.close()
            return super().destroy_node()

    return CameraSimNode


class _StopFlag:
    """SIGINT / SIGTERM -> a flag the spin loop checks, so a signal never interrupts a publish half-way (rclpy's own
    handlers shut the context down under a running timer callback) and a second signal during shutdown is harmless.
    """

    def __init__(self):
        self.signum: int | None = None
        self.node = None
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        if self.node is not None:
            self.node.stopping = True

    @property
    def set(self) -> bool:
        return self.signum is not None


def _spin(node, stop: _StopFlag, context) -> int:
    """Spin until the pass ends, a signal arrives or the context is shut down; the node's exit status."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        # short waits: a signal handler runs only once the wait returns, so this bounds the shutdown delay
        while context.ok() and not node.finished and not stop.set:
            executor.spin_once(timeout_sec=0.05)
        if node.finished and node.exit_code == 0 and not stop.set:
            # let reliable subscribers fetch the last samples before the writer disappears
            end = time.monotonic() + 0.5
            while context.ok() and time.monotonic() < end and not stop.set:
                executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass
    finally:
        executor.shutdown(timeout_sec=0.5)
    return node.exit_code


def main(args: list[str] | None = None) -> int:
    """Console script ``camera_sim``. Exit status: 0 (also after SIGINT/SIGTERM), 1 for an unusable source."""
    argv = list(sys.argv if args is None else args)
    if _wants_help(argv):
        print(help_text())
        return 0
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.signals import SignalHandlerOptions

    stop = _StopFlag()
    stop.install()
    context = rclpy.Context()
    rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        try:
            node = _make_node_class()(context=context)
        except (SourceError, InvalidParameterValueException) as exc:  # e.g. generation:=3 (out of its range)
            print(f"camera_sim: error: {exc}", file=sys.stderr, flush=True)
            return 1
        stop.node = node
        node.stopping = stop.set
        code = _spin(node, stop, context)
        if stop.set:
            node.get_logger().info(f"{signal.Signals(stop.signum).name}: stopping after "
                                   f"{node.published} frames")
            code = 0
        return code
    finally:
        if node is not None:
            node.stopping = True
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop.restore()


if __name__ == "__main__":
    sys.exit(main())
