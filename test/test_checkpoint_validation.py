"""validate_checkpoint: one test per field (issue 11), each failure a CheckpointError naming the field."""

import zipfile

import pytest
import torch

from repflow_core import checkpoint as ckpt_mod
from repflow_core.checkpoint import (
    FORMAT_VERSION,
    MAX_CLIP_LEN,
    MAX_INPUT_SIZE,
    Checkpoint,
    CheckpointError,
    InputSpec,
    load_checkpoint,
    validate_checkpoint,
)
from repflow_core.evaluate import main as evaluate_main
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.recognizer import Recognizer, default_checkpoint

LABELS = ["wave", "clap", "idle"]
CFG = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=2, flow_after="layer1", dropout=0.0)


@pytest.fixture(scope="module")
def good():
    """A valid raw checkpoint dict (fresh copy per use: see ``fresh``)."""
    torch.manual_seed(0)
    return Checkpoint(CFG, LABELS, InputSpec(clip_len=6, size=(32, 32), resize_short=40),
                      ActionNet(CFG).state_dict(), training={"epochs": 1}).to_dict()


def fresh(good, **overrides):
    data = dict(good)
    data["model_config"] = dict(good["model_config"])
    data["input_spec"] = dict(good["input_spec"])
    data["state_dict"] = dict(good["state_dict"])
    data.update(overrides)
    return data


def refused(data, field, match):
    with pytest.raises(CheckpointError, match=match) as info:
        validate_checkpoint(data, source="m.pt")
    assert info.value.field == field, (info.value.field, str(info.value))
    assert "m.pt" in str(info.value)
    return info.value


def test_a_valid_checkpoint_and_the_packaged_model_pass(good):
    ckpt = validate_checkpoint(fresh(good))
    assert ckpt.labels == LABELS and ckpt.input_spec.clip_len == 6
    assert load_checkpoint(default_checkpoint()).model_config.num_classes > 1


@pytest.mark.parametrize("labels, match", [
    (5, "must be a list of class names, got int 5"),
    ("wave", "must be a list"),
    (["wave", 3, "idle"], "entry 1 must be a non-empty string"),
    (["wave", "", "idle"], "entry 1 must be a non-empty string"),
    (["wave", "wave", "idle"], r"duplicate class names \['wave'\]"),
    (["wave", "clap"], "has 2 labels but its model has 3 classes"),
])
def test_labels(good, labels, match):
    refused(fresh(good, labels=labels), "labels", match)


@pytest.mark.parametrize("version, match", [
    ("1", "'version' must be an integer, got str '1'"),
    (None, "'version' must be an integer, got NoneType None"),
    (True, "'version' must be an integer, got bool True"),
    (1.0, "must be an integer, got float"),
    (0, "'version' is 0, not a valid format version"),
    (-7, "'version' is -7, not a valid format version"),
    (999, f"version 999, newer than this code reads \\({FORMAT_VERSION}\\)"),
])
def test_version(good, version, match):
    refused(fresh(good, version=version), "version", match)


def test_missing_version_is_named_as_missing(good):
    data = fresh(good)
    del data["version"]
    refused(data, "version", "lacks the checkpoint field 'version'")


def test_state_dict_shape_mismatch(good):
    sd = dict(good["state_dict"])
    sd["backbone.fc.weight"] = torch.zeros(3, 65)
    refused(fresh(good, state_dict=sd), "state_dict.backbone.fc.weight", r"shape \(3, 65\), the model's is \(3, 64\)")


def test_state_dict_extra_and_missing_tensors(good):
    sd = dict(good["state_dict"], payload=torch.zeros(10))
    refused(fresh(good, state_dict=sd), "state_dict", r"1 tensor\(s\) the model does not have \['payload'\]")
    sd = dict(good["state_dict"])
    del sd["backbone.fc.bias"]
    refused(fresh(good, state_dict=sd), "state_dict", "lacks 1 tensor.*backbone.fc.bias")


def test_state_dict_types_and_values(good):
    refused(fresh(good, state_dict=[1, 2]), "state_dict", "must be a mapping of tensors, got list")
    sd = dict(good["state_dict"], **{"backbone.fc.bias": [0.0, 0.0, 0.0]})
    refused(fresh(good, state_dict=sd), "state_dict", "entry 'backbone.fc.bias' is list")
    sd = dict(good["state_dict"], **{"backbone.fc.bias": torch.zeros(3, dtype=torch.int64)})
    refused(fresh(good, state_dict=sd), "state_dict.backbone.fc.bias", "dtype torch.int64")
    nan = good["state_dict"]["backbone.fc.weight"].clone()
    nan[0, 0] = float("nan")
    sd = dict(good["state_dict"], **{"backbone.fc.weight": nan})
    refused(fresh(good, state_dict=sd), "state_dict.backbone.fc.weight", "non-finite values")


def test_class_count_mismatch_between_config_and_classifier(good):
    cfg = dict(good["model_config"], num_classes=4)
    # 4 labels so the label check passes: the classifier tensor shapes are what must disagree.
    refused(fresh(good, model_config=cfg, labels=LABELS + ["sit"]), "state_dict.backbone.fc.weight", r"\(4, 64\)")


@pytest.mark.parametrize("field, value, match", [
    ("mean", [0.5], "must be 3 finite numbers"),
    ("mean", [0.5, 0.5, float("nan")], "must be 3 finite numbers"),
    ("mean", "0.5", "must be 3 finite numbers"),
    ("std", [0, 0, 0], r"must be > 0 for every channel"),
    ("std", [0.2, -0.1, 0.2], r"must be > 0 for every channel"),
    ("std", [0.2, float("inf"), 0.2], "must be 3 finite numbers"),
    ("clip_len", 1e6, "must be a int, got float 1000000.0"),
    ("clip_len", 1_000_000, f"outside the supported range 2..{MAX_CLIP_LEN}"),
    ("clip_len", 1, "outside the supported range"),
    ("clip_len", True, "must be a int, got bool"),
    ("frame_stride", 0, "outside the supported range 1..64"),
    ("size", [8192, 8192], f"is 8192, outside the supported range 8..{MAX_INPUT_SIZE}"),
    ("size", [32], "must be two integers"),
    ("size", [32.0, 32.0], "must be two integers"),
    ("resize_short", 16, "outside the supported range 32..2048"),
])
def test_input_spec(good, field, value, match):
    spec = dict(good["input_spec"], **{field: value})
    refused(fresh(good, input_spec=spec), f"input_spec.{field}", match)


def test_input_spec_missing_field_and_type(good):
    spec = dict(good["input_spec"])
    del spec["mean"]
    refused(fresh(good, input_spec=spec), "input_spec.mean", "is missing")
    refused(fresh(good, input_spec=[1, 2]), "input_spec", "must be a dict, got list")


@pytest.mark.parametrize("field, value, match", [
    ("width", "0.25", "must be a float .finite., got str '0.25'"),
    ("num_classes", 3.0, "must be a int, got float"),
    ("iterations", 10**6, "over the limit of 100"),
    ("flow", 1, "must be a str"),
    ("learn_params", 1, "must be a bool, got int"),
    ("colour", "red", "is not a model config field"),
])
def test_model_config(good, field, value, match):
    cfg = dict(good["model_config"], **{field: value})
    refused(fresh(good, model_config=cfg), f"model_config.{field}", match)


def test_model_config_range_from_the_model(good):
    cfg = dict(good["model_config"], backbone="vgg")
    refused(fresh(good, model_config=cfg), "model_config", "unknown backbone 'vgg'")


def test_training_and_resume_types(good):
    refused(fresh(good, training=[1]), "training", "must be a dict")
    refused(fresh(good, resume="x"), "resume", "must be a dict or absent")


def test_not_a_dict_and_wrong_format(good):
    refused([1, 2], "format", "not a repflow checkpoint")
    refused(fresh(good, format="other"), "format", "not a repflow checkpoint")


def test_oversize_file_is_refused_before_reading(good, tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    torch.save(fresh(good, state_dict=dict(good["state_dict"], extra=torch.zeros(300_000))), path)
    size = path.stat().st_size
    calls = []
    monkeypatch.setattr(ckpt_mod.torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointError, match=f"file size {size} bytes exceeds the limit of 1000000") as info:
        load_checkpoint(path, max_bytes=1_000_000)
    assert info.value.field == "file size" and "big.pt" in str(info.value)
    assert calls == []  # refused from its size alone: nothing was read


def test_compressed_archive_expanding_beyond_the_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/data/0", b"\0" * 5_000_000)  # ~5 KB on disk, 5 MB unpacked
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(ckpt_mod.torch, "load", lambda *a, **k: pytest.fail("read before the size check"))
    with pytest.raises(CheckpointError, match="unpacks to 5000000 bytes, over the limit of 1000000"):
        load_checkpoint(path, max_bytes=1_000_000)


def test_an_extra_tensor_file_is_refused_by_load_and_the_recognizer(good, tmp_path):
    path = tmp_path / "extra.pt"
    torch.save(fresh(good, state_dict=dict(good["state_dict"], extra=torch.zeros(1000))), path)
    with pytest.raises(CheckpointError, match="extra.pt.*does not have \\['extra'\\]"):
        Recognizer.from_checkpoint(path, device="cpu")


def test_evaluate_refuses_a_bad_checkpoint_with_a_message_not_a_traceback(good, tmp_path, capsys):
    path = tmp_path / "labels5.pt"
    torch.save(fresh(good, labels=5), path)
    (tmp_path / "cfg.yaml").write_text("synthetic:\n  generate: false\ndata:\n  root: " + str(tmp_path) + "\n")
    code = evaluate_main(["--checkpoint", str(path), "--config", str(tmp_path / "cfg.yaml"), "--device", "cpu",
                          "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "labels5.pt: checkpoint field 'labels' must be a list" in err and "Traceback" not in err


def test_the_recognizer_passes_its_size_bound_to_the_loader(good, tmp_path):
    path = tmp_path / "m.pt"
    torch.save(fresh(good), path)
    with pytest.raises(CheckpointError, match="exceeds the limit of 1000 bytes"):
        Recognizer.from_checkpoint(path, device="cpu", max_checkpoint_bytes=1000)
    assert Recognizer.from_checkpoint(path, device="cpu").labels == LABELS
