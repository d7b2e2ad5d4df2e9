"""Issue 11's lifecycle race, recorder side: cycling the lifecycle never races the executor.

The recorder used to spin a ``MultiThreadedExecutor`` (so that encoding frames never delayed ``~/stop``); a transition
then ran on a pool thread and could destroy the image subscription, a timer or a service while the main thread built
its wait set (``InvalidHandle: cannot use Destroyable because destruction was requested``), which killed ``spin()``.

Here: ``CYCLES`` deactivate / cleanup / configure / activate cycles through the node's real ``~/change_state`` while a
camera publishes small frames at a high rate; each cycle starts a clip (which the deactivate discards with frames
queued) while another thread keeps calling ``~/stop`` (clips committed while the transitions run). Every transition
succeeds, the process never dies, its output has no ``InvalidHandle`` / ``Traceback`` / "never retrieved"; afterwards
the recorder still writes a clip that the loader reads, and a SIGINT ends it with status 0 and no temporary left
behind. Seen before the fix (MultiThreadedExecutor): the process died in cycle 131 of one run (the wait set met a
destroyed subscription's event handler) and in cycle 1 of another (a ``~/start`` reply sent through a service that the
cleanup had just destroyed).

``REPFLOW_RECORDER_CYCLES`` overrides the cycle count (default sized for well under a minute on a loaded 2-core
machine). Every wait is on a condition (a service answer, a state, an event) with a generous deadline.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from recorder_helpers import (
    events_subscription,
    hidden_temps,
    start_recorder,
    trigger_until_answered,
    wait_event,
    wait_ready,
)
from ros_helpers import LifecycleClient, NodeProcess, RepeatedCaller, RosHarness, image_msg, wait_until

from repflow_core.data.layouts import scan_class_folders
from repflow_core.data.video_io import read_video

pytest.importorskip("rclpy")

CYCLES = int(os.environ.get("REPFLOW_RECORDER_CYCLES", "200"))
WAIT = 60.0
BAD_OUTPUT = ("InvalidHandle", "never retrieved", "Traceback", "destruction was requested")
NODE, TOPIC = "/rec_stress", "/rec_stress/image"
FRAME = (48, 64)  # (height, width)


class Camera(threading.Thread):
    """Publishes small frames stamped with the wall clock at a high rate (pacing only; nothing waits on it): it keeps
    the recorder's executor busy rebuilding its wait set while the transitions destroy and create entities."""

    def __init__(self, h: RosHarness, fps: float = 200.0):
        from sensor_msgs.msg import Image

        super().__init__(name="camera", daemon=True)
        self.pub = h.publisher(Image, TOPIC, depth=10)
        self.period, self.stop, self.sent = 1.0 / fps, threading.Event(), 0
        self.frames = np.random.default_rng(0).integers(0, 256, (8, *FRAME, 3), dtype=np.uint8)

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.pub.publish(image_msg(self.frames[self.sent % len(self.frames)], time.time_ns(), "stress_cam"))
            self.sent += 1


class Stopper(RepeatedCaller):
    """Calls ``~/stop`` every few tens of ms whenever the service exists (only while configured), so clips are
    committed while the transitions run; counts the answers and the clips it ended with a write."""

    def __init__(self, h: RosHarness):
        from std_srvs.srv import Trigger

        super().__init__(h, Trigger, f"{NODE}/stop", Trigger.Request, self._answered, reply_wait=1.0,
                         thread_name="clip_stopper")
        self.wrote = 0

    def _answered(self, reply) -> None:
        self.wrote += reply.success


def _assert_clean(proc: NodeProcess) -> None:
    out = proc.output()
    for bad in BAD_OUTPUT:
        assert bad not in out, f"{bad!r} in the recorder's output\n{proc.describe()}"


def test_recorder_lifecycle_cycles_while_recording(tmp_path):
    root, logs = tmp_path / "data", tmp_path / "logs"
    harness = RosHarness("recorder_stress_driver")
    camera = Camera(harness)
    proc = start_recorder(root, logs, name="stress", extra=("seconds:=30.0",), node_name="rec_stress", topic=TOPIC)
    toggler = Stopper(harness)
    try:
        calls = wait_ready(harness, proc, timeout=120.0, node=NODE)
        assert all(r.successful for r in calls.set_parameters({"label": "wave"}, timeout=WAIT))
        life = LifecycleClient(harness, NODE)
        assert life.state(WAIT) == "active"
        events = events_subscription(harness, NODE)
        camera.start()
        toggler.start()
        start = time.monotonic()
        started = 0
        for cycle in range(CYCLES):
            # A clip in progress for the deactivate to discard: started, and (pacing only, nothing asserted on it)
            # given a moment to have its file open with frames queued behind it.
            reply = trigger_until_answered(calls.client("start"), WAIT)
            if reply.success:
                started += 1
                wait_until(lambda: hidden_temps(root), 2.0, interval=0.005)
            life.cycle(f"cycle {cycle}", proc.describe, timeout=WAIT)
            assert proc.alive(), f"died in cycle {cycle}\n{proc.describe()}"
        elapsed = time.monotonic() - start
        toggler.stop.set()
        toggler.join(timeout=10)
        print(f"{CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.0f} ms each), {camera.sent} frames sent, "
              f"{started} clips started, {toggler.answers} ~/stop answers ({toggler.wrote} wrote a clip)")
        assert life.state(WAIT) == "active"
        _assert_clean(proc)

        # Still records: end whatever the cycles left running, then one clip of 0.5 s that the loader reads. The ~/stop
        # goes through the stopper's own client: its earlier requests are then all answered (one writer, in order), so
        # no late ~/stop of the stress phase can end the clip below.
        trigger_until_answered(toggler.client, WAIT)
        assert all(r.successful for r in calls.set_parameters({"label": "clap", "seconds": 0.5}, timeout=WAIT))
        reply = trigger_until_answered(calls.client("start"), WAIT)
        assert reply.success, reply.message
        clip = int(re.search(r"recording clip (\d+)", reply.message).group(1))
        written = wait_event(events, "written", timeout=WAIT, clip=clip)
        assert written is not None, f"{[m.data for m in events.messages()][-10:]}\n{proc.describe()}"
        video = read_video(written["path"])
        assert video.shape[0] == written["frames"] >= 1 and video.shape[1:3] == FRAME
        samples, classes = scan_class_folders(root)
        assert "clap" in classes and any(str(s.path).endswith(os.path.basename(written["path"])) for s in samples)

        camera.stop.set()
        assert proc.stop(timeout=20.0, sig=signal.SIGINT) == 0, proc.describe()
        _assert_clean(proc)
        assert hidden_temps(root) == []  # every clip discarded on a transition or at exit left no temporary
    finally:
        camera.stop.set()
        toggler.stop.set()
        for thread in (camera, toggler):  # before harness.close(): they use its node
            if thread.is_alive():
                thread.join(timeout=10.0)
        if proc.alive():
            proc.stop(timeout=10.0, sig=signal.SIGKILL)
        harness.close()



# -- the writer thread the fix relies on (no ROS) ---------------------------------------------------------------------


def test_writer_thread_runs_jobs_in_order_and_bounds_frames():
    from repflow_ros.clip_writer import WriterThread

    gate, ran, errors = threading.Event(), [], []
    worker = WriterThread("test_writer", max_frames=2, max_bytes=100, on_error=errors.append)
    try:
        assert worker.put(lambda: gate.wait(WAIT))  # holds the thread until the queue is checked
        assert worker.offer(lambda: ran.append("f1"), 60)
        assert not worker.offer(lambda: ran.append("big"), 50)  # 110 bytes > 100: refused, not queued
        assert worker.offer(lambda: ran.append("f2"), 40)
        assert not worker.offer(lambda: ran.append("f3"), 1)  # 2 frames queued: full
        assert worker.queued_frames == 2
        assert worker.put(lambda: ran.append("commit"))  # control jobs are never refused for room
        assert worker.put(lambda: 1 / 0)  # a failing job is reported and the thread carries on
        assert worker.put(lambda: ran.append("after"))
        gate.set()
    finally:
        assert worker.stop(WAIT)  # runs what is queued, then ends
    assert ran == ["f1", "f2", "commit", "after"]
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
    assert not worker.put(lambda: None) and not worker.offer(lambda: None, 1)  # stopped: nothing more accepted


def test_writer_thread_accepts_one_oversized_frame_into_an_empty_queue():
    from repflow_ros.clip_writer import WriterThread

    done = threading.Event()
    worker = WriterThread("test_writer", max_frames=4, max_bytes=10, on_error=lambda exc: None)
    try:
        assert worker.offer(done.set, 1000)  # a frame larger than the byte bound still records
        assert done.wait(WAIT)
    finally:
        assert worker.stop(WAIT)
    with pytest.raises(ValueError, match="max_frames"):
        WriterThread("bad", max_frames=0, max_bytes=10, on_error=lambda exc: None)
