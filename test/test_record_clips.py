"""``python -m repflow_ros.record_clips`` end to end over real DDS: the helper drives a recorder process that records
the synthetic camera; 2 clips x 0.5 s, no countdown."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from recorder_helpers import FramePublisher, start_recorder, wait_ready
from ros_helpers import REPO_ROOT, RosHarness

from repflow_core.data.layouts import scan_class_folders
from repflow_ros.clip_writer import read_index

pytest.importorskip("rclpy")


def _helper(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "repflow_ros.record_clips", *args], cwd=str(REPO_ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    root, logs = tmp_path_factory.mktemp("clips"), tmp_path_factory.mktemp("logs")
    harness = RosHarness("record_clips_test_driver")
    camera = FramePublisher(harness, topic="/rc_test/image")
    proc = start_recorder(root, logs, node_name="rc_recorder", topic="/rc_test/image")
    try:
        wait_ready(harness, proc, node="/rc_recorder")
        yield root, proc
    finally:
        code = proc.stop(timeout=15.0)
        camera.close()
        harness.close()
        assert code == 0, proc.describe()


def test_two_clips_end_to_end(recorder):
    root, proc = recorder
    out = _helper("--label", "wave", "--seconds", "0.5", "--count", "2", "--countdown", "0", "--pause", "0",
                  "--node", "/rc_recorder", "--timeout", "60")
    assert out.returncode == 0, out.stdout + out.stderr + proc.describe()
    assert out.stdout.count("wrote ") == 2 and "done: 2 of 2 clip(s) of 'wave' written" in out.stdout
    samples, classes = scan_class_folders(root)
    assert classes == ["wave"] and len(samples) == 2
    rows = read_index(root)
    assert [r["label"] for r in rows] == ["wave", "wave"]
    for row in rows:
        assert str(root / row["path"]) in out.stdout and int(row["frames"]) > 0


def test_hostile_label_is_refused_with_the_reason(recorder):
    root, _proc = recorder
    out = _helper("--label", "../x", "--seconds", "0.5", "--countdown", "0", "--node", "/rc_recorder",
                  "--timeout", "60")
    assert out.returncode == 1
    assert "refused" in out.stdout and "path separator" in out.stdout
    assert not (root.parent / "x").exists()


def test_missing_recorder_exits_2():
    out = _helper("--label", "wave", "--node", "/nobody_here", "--timeout", "1", "--countdown", "0")
    assert out.returncode == 2 and "no recorder at /nobody_here" in out.stderr


def test_help_exits_0_without_ros():
    out = _helper("--help", timeout=60)
    assert out.returncode == 0 and "--label" in out.stdout and "--count" in out.stdout
