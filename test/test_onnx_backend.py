"""The Recognizer's onnxruntime backend (repflow_core.onnx_backend): same probabilities as the torch backend
within 1e-3 (real onnxruntime sessions), the export cache keyed by the checkpoint's checksum, .onnx files as
model paths, and clear errors."""

import json
import os

import numpy as np
import onnx
import pytest
import torch

from repflow_core.checkpoint import Checkpoint, CheckpointError, InputSpec, load_checkpoint, save_checkpoint
from repflow_core.export import export_checkpoint
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.recognizer import Recognizer, RecognizerError

LABELS = ["wave", "clap", "idle"]
TOL = 1e-3


def save_tiny(path, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=3, flow_after="layer1", dropout=0.0)
    spec = InputSpec(clip_len=6, size=(32, 32), resize_short=40)
    save_checkpoint(Checkpoint(cfg, LABELS, spec, ActionNet(cfg).state_dict(), training={"epochs": 1}), path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("REPFLOW_CACHE_DIR", str(folder))
    return folder


def window(rec: Recognizer, batch: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (rec.clip_len,) + rec.input_size + (3,)
    return rng.integers(0, 256, shape if batch is None else (batch,) + shape, dtype=np.uint8)


def test_onnxruntime_backend_matches_torch_and_caches_the_export(tmp_path, cache):
    ckpt = save_tiny(tmp_path / "tiny.pt")
    torch_rec = Recognizer.from_checkpoint(ckpt, device="cpu")
    logs = []
    ort_rec = Recognizer.from_checkpoint(ckpt, device="cpu", backend="onnxruntime", log=logs.append)
    assert ort_rec.backend == "onnxruntime" and ort_rec.model is None and ort_rec.labels == LABELS
    for batch in (None, 4):
        x = window(torch_rec, batch, seed=1)
        got, want = ort_rec.predict(x), torch_rec.predict(x)
        assert got.shape == want.shape and np.abs(got - want).max() < TOL
    assert np.abs(torch.softmax(ort_rec.predict_logits(x), 1).numpy() - want).max() < TOL
    cached = sorted(cache.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".onnx" and any("exported" in m for m in logs)
    onnx.checker.check_model(onnx.load(str(cached[0])))
    # A second recognizer of the same file reuses the cached export; another checkpoint gets its own.
    logs.clear()
    Recognizer.from_checkpoint(ckpt, device="cpu", backend="onnxruntime", log=logs.append)
    assert any("cached export" in m for m in logs) and sorted(cache.iterdir()) == cached
    other = Recognizer.from_checkpoint(save_tiny(tmp_path / "other.pt", seed=1), device="cpu", backend="onnxruntime")
    assert len(list(cache.iterdir())) == 2 and other.predict(window(other)).shape == (3,)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # atomic: no temporary files left


def test_session_uses_torchs_thread_count(tmp_path, cache):
    rec = Recognizer.from_checkpoint(save_tiny(tmp_path / "t.pt"), device="cpu", backend="onnxruntime")
    assert rec._onnx.threads == torch.get_num_threads()
    assert rec._onnx.session.get_providers() == ["CPUExecutionProvider"]


def test_in_memory_checkpoint_without_a_file(tmp_path, cache):
    ckpt = load_checkpoint(save_tiny(tmp_path / "t.pt"))
    rec = Recognizer(ckpt, device="cpu", backend="onnxruntime")
    x = window(rec, seed=3)
    assert np.abs(rec.predict(x) - Recognizer(ckpt, device="cpu").predict(x)).max() < TOL
    assert not cache.exists()  # nothing to key a cache entry on: exported in memory


def test_onnx_file_as_model_path(tmp_path, cache):
    ckpt = save_tiny(tmp_path / "t.pt")
    exported = export_checkpoint(ckpt, tmp_path / "t.onnx", "onnx")
    rec = Recognizer.from_checkpoint(exported, device="cpu", backend="onnxruntime")
    ref = Recognizer.from_checkpoint(ckpt, device="cpu")
    assert rec.labels == LABELS and rec.clip_len == 6 and rec.input_size == (32, 32) and rec.resize_short == 40
    assert rec.checkpoint.card is not None and rec.checkpoint.card["labels"] == LABELS
    x = window(rec, 2, seed=4)
    assert np.abs(rec.predict(x) - ref.predict(x)).max() < TOL
    assert rec.self_test() >= 0 and rec.top_k(rec.predict(x[0]), 2)[0][0] in LABELS
    with pytest.raises(RecognizerError, match="t.onnx.*backend='onnxruntime'"):
        Recognizer.from_checkpoint(exported, device="cpu")


def test_errors_are_specific(tmp_path, cache):
    ckpt = save_tiny(tmp_path / "t.pt")
    with pytest.raises(RecognizerError, match="invalid backend 'tensorrt'"):
        Recognizer.from_checkpoint(ckpt, device="cpu", backend="tensorrt")
    with pytest.raises(RecognizerError, match="fp32 only.*bf16"):
        Recognizer.from_checkpoint(ckpt, device="cpu", backend="onnxruntime", precision="bf16")
    with pytest.raises(CheckpointError, match="missing.onnx"):
        Recognizer.from_checkpoint(tmp_path / "missing.onnx", device="cpu", backend="onnxruntime")
    plain = tmp_path / "plain.onnx"  # an ONNX model that is not ours: no labels, no input spec
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(CheckpointError, match="plain.onnx has no repflow metadata"):
        Recognizer.from_checkpoint(plain, device="cpu", backend="onnxruntime")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="garbage.onnx"):
        Recognizer.from_checkpoint(garbage, device="cpu", backend="onnxruntime")
    rec = Recognizer.from_checkpoint(ckpt, device="cpu", backend="onnxruntime")
    with pytest.raises(RecognizerError, match="call preprocess"):
        rec.predict(np.zeros((6, 48, 48, 3), np.uint8))
    with pytest.raises(RecognizerError, match="uint8"):
        rec.predict(np.zeros((6, 32, 32, 3), np.float32))


def test_packaged_model_same_probabilities_on_both_backends(cache):
    torch_rec = Recognizer.from_checkpoint(device="cpu")
    ort_rec = Recognizer.from_checkpoint(device="cpu", backend="onnxruntime")
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (torch_rec.clip_len, 120, 160, 3), dtype=np.uint8)
    x = np.stack([torch_rec.preprocess(f) for f in frames])
    got, want = ort_rec.predict(x), torch_rec.predict(x)
    assert np.abs(got - want).max() < TOL
    assert ort_rec.top_k(got, 1)[0][0] == torch_rec.top_k(want, 1)[0][0]
    assert ort_rec.warmup(1) > 0


def test_backends_bench_smoke(tmp_path, cache, capsys):
    from repflow_core import bench

    out = tmp_path / "backends.json"
    ckpt = save_tiny(tmp_path / "t.pt")
    assert bench.main(["--suite", "backends", "--checkpoint", str(ckpt), "--rounds", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["median_ms"]) == {"torch", "onnxruntime"} and len(res["samples_ms"]["torch"]) == 2
    assert res["onnxruntime_speedup"] > 0 and res["max_prob_diff"] < TOL and res["meta"]["command"]
    assert "onnxruntime speed-up over torch" in capsys.readouterr().out
