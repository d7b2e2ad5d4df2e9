"""Issue 11, lifecycle side: no race between the lifecycle and the executor, and a clean exit in every state.

* 300 deactivate / cleanup / configure / activate cycles driven through the node's real ``~/change_state`` service
  from a client, while a camera publishes frames and another thread toggles ``~/enable``: every transition
  succeeds, the process never dies, and its output has no ``InvalidHandle`` (the crash of issue 11: a subscription's
  event handler destroyed while the executor built its wait set) and no "never retrieved" (the same exception left
  in a future at exit). The node then still labels frames.
* SIGINT and SIGTERM in each state (unconfigured, inactive, active) end the process with status 0, without a
  traceback.

Tiny checkpoint on the CPU, warmup 0; every wait is on a condition (service answers, states) with a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from ros_helpers import (  # noqa: E402
    LifecycleClient,
    NodeProcess,
    RepeatedCaller,
    RosHarness,
    image_msg,
    make_tiny_checkpoint,
    predictions,
    wait_until,
)

CYCLES = int(os.environ.get("REPFLOW_LIFECYCLE_CYCLES", "300"))
WAIT = 30.0
CONFIGURE, ACTIVATE = 1, 3  # lifecycle_msgs/Transition ids
BAD_OUTPUT = ("InvalidHandle", "never retrieved", "Traceback", "destruction was requested")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lifecycle_stress")


@pytest.fixture(scope="module")
def tiny_ckpt(workdir):
    return make_tiny_checkpoint(workdir / "tiny.pt", labels=("a", "b", "c"))


@pytest.fixture(scope="module")
def harness():
    h = RosHarness("lifecycle_test_driver")
    yield h
    h.close()


class Camera(threading.Thread):
    """Publishes small frames stamped with the wall clock until stopped (pacing only; nothing waits on it). A high
    rate keeps the node's executor rebuilding its wait set: with the MultiThreadedExecutor the node used before, 200
    fps made a ~/enable answer or a wait set meet a destroyed entity (InvalidHandle) within 400 cycles, 30 fps not."""

    def __init__(self, h: RosHarness, topic: str, fps: float = 200.0):
        from sensor_msgs.msg import Image

        super().__init__(name="camera", daemon=True)
        self.pub = h.publisher(Image, topic, depth=10)
        self.period, self.stop, self.sent = 1.0 / fps, threading.Event(), 0
        self.rng = np.random.default_rng(0)

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.pub.publish(image_msg(self.rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), time.time_ns()))
            self.sent += 1


def enable_toggler(h: RosHarness, name: str) -> RepeatedCaller:
    """Toggles ~/enable whenever the service is there (it exists only while configured); counts the answers."""
    from std_srvs.srv import SetBool

    value = [False]

    def answered(_reply) -> None:
        value[0] = not value[0]

    return RepeatedCaller(h, SetBool, name, lambda: SetBool.Request(data=value[0]), answered,
                          thread_name="enable_toggler")


def _assert_clean(proc: NodeProcess) -> None:
    out = proc.output()
    for bad in BAD_OUTPUT:
        assert bad not in out, f"{bad!r} in the node's output\n{proc.describe()}"


def test_lifecycle_cycles_with_frames_and_enable(workdir, tiny_ckpt, harness):
    from std_msgs.msg import String

    ns, topic = "/stress", "/stress_cam/image_raw"
    node = f"{ns}/repflow_recognizer"
    proc = NodeProcess("repflow_ros.recognizer_node",
                       ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cpu", "-p", "warmup:=0", "-p", "hop:=2",
                        "-r", f"__ns:={ns}", "-r", f"image:={topic}"], workdir / "logs", name="stress")
    camera = Camera(harness, topic)
    toggler = enable_toggler(harness, f"{node}/enable")
    try:
        life = LifecycleClient(harness, node)
        assert wait_until(lambda: proc.alive() and life.get.service_is_ready() and life.state() == "active", 120.0,
                          interval=0.2), proc.describe()
        camera.start()
        toggler.start()
        start = time.monotonic()
        for cycle in range(CYCLES):
            life.cycle(f"cycle {cycle}", proc.describe)
            assert proc.alive(), f"died in cycle {cycle}\n{proc.describe()}"
        elapsed = time.monotonic() - start
        toggler.stop.set()
        toggler.join(timeout=10)
        print(f"{CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.0f} ms each), {camera.sent} frames sent, "
              f"{toggler.answers} ~/enable answers")
        assert life.state() == "active"
        # The last toggle may have left recognition paused: resume it, then the node labels frames again.
        from std_srvs.srv import SetBool

        assert harness.call(SetBool, f"{node}/enable", SetBool.Request(data=True), timeout=WAIT).success
        labels = harness.record(String, f"{node}/prediction")
        assert wait_until(lambda: labels.subscription.get_publisher_count() >= 1, WAIT)
        since = time.monotonic()
        assert labels.wait_for(lambda msgs: predictions(msgs), WAIT, since=since), proc.describe()
        camera.stop.set()
        assert proc.stop(sig=signal.SIGINT) == 0, proc.describe()
        _assert_clean(proc)
    finally:
        camera.stop.set()
        toggler.stop.set()
        proc.stop(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_in_every_state_exits_cleanly(workdir, tiny_ckpt, harness, sig):
    """One process per state, started together (they overlap on the CPU); each is driven to its state through
    ~/change_state, then gets the signal."""
    plan = {"unconfigured": [], "inactive": [CONFIGURE], "active": [CONFIGURE, ACTIVATE]}
    procs = {}
    for state in plan:
        ns = f"/sig_{sig.name.lower()}_{state}"
        procs[state] = NodeProcess("repflow_ros.recognizer_node",
                                   ["-p", f"model_path:={tiny_ckpt}", "-p", "device:=cpu", "-p", "warmup:=0",
                                    "-p", "autostart:=false", "-r", f"__ns:={ns}", "-r", "image:=/sig_cam/image_raw"],
                                   workdir / "logs", name=f"{sig.name}_{state}")
    try:
        for state, steps in plan.items():
            proc = procs[state]
            life = LifecycleClient(harness, f"/sig_{sig.name.lower()}_{state}/repflow_recognizer")
            assert wait_until(lambda life=life: life.get.service_is_ready(), 120.0, interval=0.2), proc.describe()
            for tid in steps:
                assert life.transition(tid), proc.describe()
            assert life.state() == state
        for state, proc in procs.items():
            code = proc.stop(timeout=20, sig=sig)
            print(f"{sig.name} while {state}: exit {code} in {proc.stop_seconds * 1000:.0f} ms")
            assert code == 0, f"{sig.name} while {state}\n{proc.describe()}"
            _assert_clean(proc)
    finally:
        for proc in procs.values():
            proc.stop(timeout=5)
