"""The checkpoint format (DESIGN.md section 4) and the Recognizer built on it."""

import os

import numpy as np
import pytest
import torch

from repflow_core.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    InputSpec,
    load_checkpoint,
    save_checkpoint,
)
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.recognizer import NonFiniteOutput, Recognizer, RecognizerError, resolve_device

LABELS = ["wave", "clap", "idle"]


def make_checkpoint(path, **overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=2, flow_after="layer1", dropout=0.0)
    model = ActionNet(cfg)
    ckpt = Checkpoint(cfg, LABELS, InputSpec(clip_len=6, size=(32, 32), resize_short=40), model.state_dict(),
                      training={"epochs": 1})
    data = ckpt.to_dict()
    data.update(overrides)
    torch.save(data, path)
    return model


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = make_checkpoint(tmp_path / "m.pt").eval()
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.labels == LABELS and ckpt.input_spec.clip_len == 6 and ckpt.training == {"epochs": 1}
    clip = torch.randn(1, 3, 6, 32, 32)
    assert torch.equal(ckpt.build_model().eval()(clip), model(clip))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    make_checkpoint(tmp_path / "seed.pt")
    ckpt = load_checkpoint(tmp_path / "seed.pt")
    save_checkpoint(ckpt, tmp_path / "out" / "best.pt")
    assert os.listdir(tmp_path / "out") == ["best.pt"]
    assert load_checkpoint(tmp_path / "out" / "best.pt").labels == LABELS


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_checkpoint(bad)


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_hostile_pickle_is_refused_by_weights_only_loading(tmp_path):
    bad = tmp_path / "hostile.pt"
    torch.save({"format": "repflow_ros.checkpoint", "payload": Hostile()}, bad)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(bad)


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="not a repflow checkpoint"):
        load_checkpoint(tmp_path / "sd.pt")


def test_missing_field_is_named(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    del data["labels"]
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="'labels'"):
        load_checkpoint(tmp_path / "m.pt")


def test_newer_format_version_is_refused(tmp_path):
    make_checkpoint(tmp_path / "m.pt", version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "m.pt")


def test_label_count_must_match_the_model(tmp_path):
    make_checkpoint(tmp_path / "m.pt", labels=["a", "b"])
    with pytest.raises(CheckpointError, match="2 labels"):
        load_checkpoint(tmp_path / "m.pt")


def test_recognizer_preprocesses_any_frame_size_to_the_input_size(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    rec = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert rec.labels == LABELS and rec.clip_len == 6 and rec.input_size == (32, 32)
    for shape in [(480, 640, 3), (40, 40, 3), (20, 30, 3)]:
        out = rec.preprocess(np.random.randint(0, 255, shape, np.uint8))
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_recognizer_predicts_probabilities_matching_the_model(tmp_path):
    model = make_checkpoint(tmp_path / "m.pt").eval()
    rec = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu")
    frames = np.random.RandomState(0).randint(0, 255, (6, 32, 32, 3), np.uint8)
    probs = rec.predict(frames)
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(255).unsqueeze(0)
    mean = torch.tensor(rec.checkpoint.input_spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(rec.checkpoint.input_spec.std).view(1, 3, 1, 1, 1)
    expected = torch.softmax(model((x - mean) / std), 1)[0].detach().numpy()
    assert np.allclose(probs, expected, atol=1e-5)
    assert rec.predict(np.stack([frames, frames])).shape == (2, 3)
    assert rec.top_k(probs, 2)[0][0] == LABELS[int(np.argmax(probs))]


def test_recognizer_rejects_unprepared_frames(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    rec = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu")
    with pytest.raises(RecognizerError, match="preprocess"):
        rec.predict(np.zeros((6, 64, 64, 3), np.uint8))
    with pytest.raises(RecognizerError, match="uint8"):
        rec.preprocess(np.zeros((10, 10, 3), np.float32))


def test_auto_device_says_what_it_chose():
    said = []
    device = resolve_device("auto", log=said.append)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert said and "auto" in said[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_silent_fallback(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(RecognizerError, match="CUDA is not available"):
        Recognizer.from_checkpoint(tmp_path / "m.pt", device="cuda")


def test_bad_device_and_precision_are_named(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(RecognizerError, match="tpu"):
        Recognizer.from_checkpoint(tmp_path / "m.pt", device="tpu")
    with pytest.raises(RecognizerError, match="fp8"):
        Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu", precision="fp8")


def test_bf16_on_cpu_stays_close_to_fp32(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    frames = np.random.RandomState(1).randint(0, 255, (6, 32, 32, 3), np.uint8)
    fp32 = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu").predict(frames)
    bf16 = Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu", precision="bf16").predict(frames)
    assert np.abs(fp32 - bf16).max() < 0.05


# ---------------------------------------------------------------- finite outputs only (issue 11 item 5)


def overflowing_checkpoint(path, **overrides):
    """Finite weights (so validation passes) that overflow to inf in the classifier: NaN probabilities."""
    make_checkpoint(path, **overrides)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["backbone.fc.weight"] = torch.full_like(data["state_dict"]["backbone.fc.weight"], 3e38)
    torch.save(data, path)


def test_predict_refuses_non_finite_scores_and_self_test_refuses_the_model(tmp_path):
    overflowing_checkpoint(tmp_path / "inf.pt")
    rec = Recognizer.from_checkpoint(tmp_path / "inf.pt", device="cpu")
    frames = np.random.RandomState(0).randint(0, 255, (6, 32, 32, 3), np.uint8)
    with pytest.raises(NonFiniteOutput, match=r"not finite \(NaN or inf\) for window\(s\) \[0\].*inf.pt"):
        rec.predict(frames)
    with pytest.raises(NonFiniteOutput, match="not finite"):
        rec.predict(np.stack([frames, frames]))
    with pytest.raises(NonFiniteOutput):
        rec.self_test()
    assert issubclass(NonFiniteOutput, RecognizerError)


def test_self_test_passes_a_good_model(tmp_path):
    make_checkpoint(tmp_path / "m.pt")
    assert Recognizer.from_checkpoint(tmp_path / "m.pt", device="cpu").self_test() >= 0


def test_nan_weights_and_zero_std_are_refused_before_any_inference(tmp_path):
    make_checkpoint(tmp_path / "nan.pt")
    data = torch.load(tmp_path / "nan.pt", weights_only=True)
    data["state_dict"]["backbone.fc.bias"] = torch.full_like(data["state_dict"]["backbone.fc.bias"], float("nan"))
    torch.save(data, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="state_dict.backbone.fc.bias.*non-finite"):
        Recognizer.from_checkpoint(tmp_path / "nan.pt", device="cpu")
    spec = InputSpec(clip_len=6, size=(32, 32), resize_short=40).to_dict()
    make_checkpoint(tmp_path / "std0.pt", input_spec=dict(spec, std=[0.0, 0.0, 0.0]))
    with pytest.raises(CheckpointError, match="'input_spec.std' must be > 0"):
        Recognizer.from_checkpoint(tmp_path / "std0.pt", device="cpu")


def test_evaluate_fails_clearly_on_non_finite_outputs(tmp_path, capsys):
    from repflow_core.config import TrainConfig, apply_overrides, dump_yaml
    from repflow_core.data.synthetic import ACTIONS, write_dataset
    from repflow_core.evaluate import main as evaluate_main

    write_dataset(tmp_path / "data", per_class=2, num_frames=8, size=40, fps=15, seed=1, test_fraction=0.5,
                  progress=False)
    cfg = apply_overrides(TrainConfig(), {"data.root": str(tmp_path / "data"), "data.num_workers": "0"})
    dump_yaml(cfg, tmp_path / "cfg.yaml")
    torch.manual_seed(0)
    mc = ModelConfig(width=0.125, num_classes=len(ACTIONS), flow_channels=4, iterations=1, flow_after="layer1",
                     dropout=0.0)
    sd = ActionNet(mc).state_dict()
    sd["backbone.fc.weight"] = torch.full_like(sd["backbone.fc.weight"], 3e38)
    torch.save(Checkpoint(mc, list(ACTIONS), InputSpec(clip_len=6, size=(32, 32), resize_short=36), sd).to_dict(),
               tmp_path / "inf.pt")
    code = evaluate_main(["--checkpoint", str(tmp_path / "inf.pt"), "--config", str(tmp_path / "cfg.yaml"),
                          "--clips", "1", "--device", "cpu", "--out", str(tmp_path / "eval"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "scores are not finite" in err and "no metrics written" in err
    assert not (tmp_path / "eval" / "metrics.json").exists()
