"""Recognizer.preprocess: bounded memory whatever the frame, absurd shapes refused, normal frames unchanged
(issue 11 item 1, issue 9 part 2)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, InputSpec, save_checkpoint
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.recognizer import MAX_FRAME_ASPECT, FrameShapeError, Recognizer, RecognizerError

REPO = Path(__file__).resolve().parents[1]


def reference_preprocess(frame_rgb, input_size, resize_short):
    """The implementation before the bounds (commit 92e31c2), kept verbatim as the reference."""
    h, w = frame_rgb.shape[:2]
    out_h, out_w = input_size
    scale = resize_short / min(h, w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame_rgb = cv2.resize(frame_rgb, (new_w, new_h), interpolation=interp)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return np.ascontiguousarray(frame_rgb[top : top + out_h, left : left + out_w])


def make_recognizer(tmp_path, size=(112, 112), resize_short=128):
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=4, iterations=1, flow_after="layer1", dropout=0.0)
    torch.manual_seed(0)
    spec = InputSpec(clip_len=4, size=size, resize_short=resize_short)
    path = tmp_path / f"m_{size[0]}x{size[1]}_{resize_short}.pt"
    save_checkpoint(Checkpoint(cfg, ["a", "b", "c"], spec, ActionNet(cfg).state_dict()), path)
    return Recognizer.from_checkpoint(path, device="cpu")


GEOMETRIES = [(480, 640), (360, 640), (240, 320), (128, 128), (112, 112), (720, 1280), (1080, 1920), (640, 480),
              (100, 80), (40, 40), (20, 30), (113, 200), (127, 129), (8, 64)]


@pytest.mark.parametrize("size, resize_short", [((112, 112), 128), ((32, 32), 40), ((96, 128), 128)])
def test_normal_frames_are_byte_identical_to_the_previous_implementation(tmp_path, size, resize_short):
    rec = make_recognizer(tmp_path, size, resize_short)
    rec.on_warning = lambda msg: None
    rng = np.random.default_rng(3)
    for h, w in GEOMETRIES:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours, ref = rec.preprocess(frame), reference_preprocess(frame, size, resize_short)
        assert ours.shape == size + (3,) and ours.dtype == np.uint8
        assert np.array_equal(ours, ref), (h, w)
        view = np.ascontiguousarray(np.pad(frame, ((2, 2), (3, 3), (0, 0))))[2:-2, 3:-3]  # a strided view
        assert np.array_equal(rec.preprocess(view), ref), (h, w)


@pytest.mark.parametrize("shape, match", [
    ((1, 1000, 3), "1x1000 refused: each side must be at least 8 px"),
    ((1000, 1, 3), "1000x1 refused"),
    ((1, 30000, 3), "1x30000 refused"),
    ((30000, 1, 3), "30000x1 refused"),
    ((0, 0, 3), "0x0 refused"),
    ((0, 640, 3), "0x640 refused"),
    ((5, 5, 3), "5x5 refused"),
    ((10, 1000, 3), r"aspect ratio 100.0:1 is beyond 8:1"),
    ((2000, 100, 3), r"aspect ratio 20.0:1 is beyond 8:1"),
    ((64, 64), r"RGB uint8 array \(H, W, 3\), got shape \(64, 64\)"),
    ((64, 64, 4), r"got shape \(64, 64, 4\)"),
])
def test_absurd_shapes_are_refused_with_a_specific_error(tmp_path, shape, match):
    rec = make_recognizer(tmp_path)
    with pytest.raises(FrameShapeError, match=match) as info:
        rec.preprocess(np.zeros(shape, np.uint8))
    assert isinstance(info.value, RecognizerError)  # hosts that catch RecognizerError still catch it


def test_shape_bound_is_checkable_before_decoding():
    Recognizer.check_frame_shape(480, 640)
    Recognizer.check_frame_shape(8, int(8 * MAX_FRAME_ASPECT))
    with pytest.raises(FrameShapeError):
        Recognizer.check_frame_shape(8, int(8 * MAX_FRAME_ASPECT) + 1)


def test_small_frames_are_upscaled_with_one_warning(tmp_path):
    rec = make_recognizer(tmp_path)
    said = []
    rec.on_warning = said.append
    for shape in [(480, 640, 3), (60, 80, 3), (60, 80, 3), (40, 50, 3)]:
        assert rec.preprocess(np.zeros(shape, np.uint8)).shape == (112, 112, 3)
    assert len(said) == 1 and "60x80" in said[0] and "upscaling" in said[0]


RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from repflow_core.checkpoint import load_checkpoint
    from repflow_core.recognizer import FrameShapeError, Recognizer
    rec = Recognizer(load_checkpoint(sys.argv[1]), device="cpu")
    rec.on_warning = lambda msg: None
    shapes = [(1, 30000), (30000, 1), (1, 1000), (0, 0), (2, 30000), (30000, 3),  # refused
              (8, 64), (1000, 8000), (8000, 1000), (2160, 3840), (17, 136)]        # accepted, worst aspects
    frames = [np.full(s + (3,), 77, np.uint8) for s in shapes]                      # the caller's memory
    rec.preprocess(np.zeros((480, 640, 3), np.uint8))                               # warm OpenCV
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = 0
    for _ in range(3):
        for f in frames:
            try:
                assert rec.preprocess(f).shape == rec.input_size + (3,)
            except FrameShapeError:
                refused += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after, "refused": refused}))
""")


def test_peak_memory_stays_bounded_for_hostile_and_extreme_frames(tmp_path):
    """Measured with the process's own peak RSS counter in a fresh interpreter. Before the bounds a 1 x 30000
    frame became 128 x 3,840,000 (1.4 GB); now every frame costs at most MAX_FRAME_ASPECT x resize_short^2."""
    rec = make_recognizer(tmp_path)
    path = Path(rec.source)
    proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["refused"] == 3 * 6
    grew_mb = (result["after_kb"] - result["before_kb"]) / 1024
    assert grew_mb < 100, result
