"""Export for deployment (repflow_core.export): ONNX checked by a real onnxruntime session and TorchScript by
torch.jit.load against the Recognizer (torch backend, fused flow kernel where present) to 1e-3, metadata,
dynamic batch, the card beside the file, atomic writes, the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from repflow_core.atomic_io import default_file_mode
from repflow_core.checkpoint import Checkpoint, InputSpec, load_checkpoint, save_checkpoint
from repflow_core.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    card_path,
    eager_flow,
    export_checkpoint,
    onnx_session,
    read_onnx_metadata,
)
from repflow_core.flow import RepresentationFlow
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.model_card import make_card
from repflow_core.recognizer import Recognizer, default_checkpoint

LABELS = ["wave", "clap", "idle"]
TOL = 1e-3


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=3, flow_after="layer1", dropout=0.0)
    spec = InputSpec(clip_len=6, size=(32, 32), resize_short=40)
    card = make_card(name="tiny", labels=LABELS, input_spec=spec.to_dict(), training_data="none (random weights)",
                     known_limits=["random weights"])
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(Checkpoint(cfg, LABELS, spec, ActionNet(cfg).state_dict(), card=card), path)
    return path


@pytest.fixture(scope="module")
def packaged_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("packaged") / "synthetic_default.onnx"
    return export_checkpoint(default_checkpoint(), out, "onnx")


def windows(rec: Recognizer, batch: int, seed: int) -> np.ndarray:
    """Camera-like frames (4:3, larger than the input) through Recognizer.preprocess, as the node does."""
    rng = np.random.default_rng(seed)
    h, w, n = rec.resize_short * 3 // 2, rec.resize_short * 2, rec.clip_len
    scene = rng.integers(0, 256, (batch, h, w + 2 * n, 3), dtype=np.uint8)
    # A scene panning 2 px per frame: moving content, so the flow layer has work to do.
    frames = [[scene[b, :, 2 * t : 2 * t + w] for t in range(n)] for b in range(batch)]
    return np.stack([np.stack([rec.preprocess(f) for f in clip]) for clip in frames])


def test_tiny_onnx_matches_the_recognizer_with_dynamic_batch(tiny_ckpt, tmp_path):
    out = export_checkpoint(tiny_ckpt, tmp_path / "tiny.onnx", "onnx")
    rec = Recognizer.from_checkpoint(tiny_ckpt, device="cpu")
    session = onnx_session(out)
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert inp.name == INPUT_NAME and inp.type == "tensor(uint8)" and outp.name == OUTPUT_NAME
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [6, 32, 32, 3]  # batch dynamic, window fixed
    for batch in (1, 3):
        x = windows(rec, batch, seed=batch)
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        want = rec.predict(x)
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(got - want).max() < TOL


def test_onnx_metadata_and_card_beside_the_file(tiny_ckpt, tmp_path):
    out = export_checkpoint(tiny_ckpt, tmp_path / "tiny.onnx", "onnx")
    ckpt = load_checkpoint(tiny_ckpt)
    meta = read_onnx_metadata(out)
    assert json.loads(meta["repflow.labels"]) == LABELS
    assert json.loads(meta["repflow.input_spec"]) == ckpt.input_spec.to_dict()
    assert json.loads(meta["repflow.model_config"]) == ckpt.model_config.to_dict()
    assert json.loads(meta["repflow.card"]) == ckpt.card
    assert len(meta["repflow.checkpoint_sha256"]) == 64
    assert json.loads(card_path(out).read_text()) == ckpt.card
    assert card_path(out).name == "tiny.onnx.card.json"
    onnx.checker.check_model(onnx.load(str(out)))
    # Atomic writes: no temporary files left, the ordinary file mode (0644 under umask 022).
    assert sorted(os.listdir(tmp_path)) == ["tiny.onnx", "tiny.onnx.card.json"]
    for path in (out, card_path(out)):
        assert (path.stat().st_mode & 0o777) == default_file_mode()


def test_tiny_torchscript_matches_the_recognizer(tiny_ckpt, tmp_path):
    out = export_checkpoint(tiny_ckpt, tmp_path / "tiny.ts", "torchscript")
    rec = Recognizer.from_checkpoint(tiny_ckpt, device="cpu")
    extra = {"repflow.labels": "", "repflow.input_spec": "", "repflow.card": ""}
    module = torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["repflow.labels"]) == LABELS and json.loads(extra["repflow.card"])["name"] == "tiny"
    assert json.loads(extra["repflow.input_spec"])["clip_len"] == 6
    for batch in (1, 2):
        x = windows(rec, batch, seed=10 + batch)
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 3) and np.abs(got - rec.predict(x)).max() < TOL
    assert card_path(out).is_file()


def test_packaged_model_onnx_matches_the_recognizer(packaged_onnx):
    rec = Recognizer.from_checkpoint(device="cpu")  # torch backend, fused flow kernel where available
    x = windows(rec, 2, seed=0)
    got = onnx_session(packaged_onnx).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    assert got.shape == (2, len(rec.labels)) and np.abs(got - rec.predict(x)).max() < TOL
    meta = read_onnx_metadata(packaged_onnx)
    assert json.loads(meta["repflow.labels"]) == rec.labels
    card = json.loads(card_path(packaged_onnx).read_text())
    assert "synthetic people only" in card["summary"]


def test_eager_flow_is_restored_after_export(tiny_ckpt):
    model = load_checkpoint(tiny_ckpt).build_model()
    layers = [m for m in model.modules() if isinstance(m, RepresentationFlow)]
    assert layers and all(layer.impl == "auto" for layer in layers)
    with eager_flow(model):
        assert all(layer.impl == "eager" and "_depthwise" in vars(layer) for layer in layers)
    assert all(layer.impl == "auto" and "_depthwise" not in vars(layer) for layer in layers)


def test_command_line(tiny_ckpt, tmp_path):
    out = tmp_path / "cli" / "m.onnx"
    run = subprocess.run([sys.executable, "-m", "repflow_core.export", "--checkpoint", str(tiny_ckpt),
                          "--format", "onnx", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.is_file() and card_path(out).is_file() and "max |probability difference|" in run.stdout
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    run = subprocess.run([sys.executable, "-m", "repflow_core.export", "--checkpoint", str(bad), "--out",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "broken.pt" in run.stderr and not (tmp_path / "x.onnx").exists()
