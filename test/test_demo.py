"""The demo end to end (real camera_sim and recognizer processes over DDS): with a tiny untrained checkpoint
(predictions are scored and summarised; accuracy not asserted) and with the packaged model (above chance).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
    from repflow_core.data.synthetic import ACTIONS
    from repflow_core.model import ActionNet, ModelConfig

    cfg = ModelConfig(backbone="resnet18", width=0.125, num_classes=10, flow="single", flow_after="layer1",
                      iterations=2, dropout=0.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(Checkpoint(cfg, list(ACTIONS), InputSpec(clip_len=8, size=(32, 32), resize_short=36),
                               ActionNet(cfg).state_dict()), path)
    return path


def _run_demo(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run the demo; on timeout interrupt it (so it stops its nodes) before killing it."""
    proc = subprocess.Popen([sys.executable, "-m", "repflow_ros.demo", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        pytest.fail(f"demo did not finish within {timeout} s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_demo_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "summary.json"
    result = _run_demo(["--seconds", "6", "--model", str(tiny_checkpoint), "--device", "cpu", "--fps", "30",
                        "--clip-frames", "24", "--seed", "5", "--out", str(out), "--startup-timeout", "60"],
                       timeout=150)
    text = result.stdout
    assert result.returncode == 0, f"stdout:\n{text[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    lines = [line for line in text.splitlines() if "predicted" in line]
    assert len(lines) >= 3, text[-3000:]
    assert all("truth" in line and "latency" in line and " ms" in line for line in lines), lines[:5]
    assert "=== summary ===" in text
    for word in ("accuracy", "clean windows", "all windows", "latency", "p50", "p95", "windows/second",
                 "published"):
        assert word in text, word

    summary = json.loads(out.read_text())
    assert summary["windows"] == len(lines)
    assert summary["windows_scored"] >= 1 and summary["frames_published"] >= 60
    assert summary["windows_clean"] + summary["windows_boundary"] == summary["windows_scored"]
    assert 0.0 <= summary["accuracy_all"] <= 1.0
    assert summary["latency_ms"]["p50"] is not None and summary["latency_ms"]["p50"] >= 0
    assert summary["windows_per_second"] and summary["windows_per_second"] > 0
    assert summary["clip_len"] == 8 and summary["model"] == str(tiny_checkpoint)


def test_demo_missing_model(tmp_path):
    missing = tmp_path / "nope.pt"
    result = _run_demo(["--seconds", "2", "--model", str(missing), "--out", str(tmp_path / "s.json")], timeout=60)
    assert result.returncode != 0
    assert "model not found" in result.stderr and str(missing) in result.stderr, result.stderr
    assert not (tmp_path / "s.json").exists()


def test_demo_runs_the_packaged_model_above_chance(tmp_path):
    """What `make demo` runs: camera_sim + recognizer with the shipped model; 10 classes, so chance is 10%."""
    from repflow_core.recognizer import default_checkpoint

    out = tmp_path / "summary.json"
    result = _run_demo(["--seconds", "10", "--device", "cpu", "--seed", "1", "--out", str(out),
                        "--startup-timeout", "90"], timeout=200)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    summary = json.loads(out.read_text())
    assert summary["model"] == str(default_checkpoint()) and summary["clip_len"] == 16
    assert summary["windows_clean"] >= 5
    assert summary["accuracy_clean"] >= 0.3, summary
