"""Training loop: learning, checkpoints the Recognizer loads, exact resume, clear data errors.

Tiny everything: ResNet-18 at width 0.125, 8 frames at 32x32, 10 classes x 2 synthetic videos.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from repflow_core.config import TrainConfig, apply_overrides
from repflow_core.data.synthetic import write_dataset
from repflow_core.recognizer import Recognizer
from repflow_core.train import main, train

SYNTHETIC_YAML = str(Path(__file__).resolve().parents[1] / "config" / "train_synthetic.yaml")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    # 3 per class: 1 test, 2 training of which data.val_fraction=0.5 holds 1 out for validation (selection).
    write_dataset(root, per_class=3, num_frames=12, size=48, fps=15, seed=0, test_fraction=1 / 3, progress=False)
    return root


def tiny_config(root, out_dir, **extra) -> TrainConfig:
    overrides = {
        "model.backbone": "resnet18", "model.width": "0.125", "model.flow_after": "layer1",
        "model.flow_channels": "8", "model.iterations": "3", "model.dropout": "0",
        "data.layout": "splitlist", "data.root": str(root), "data.clip_len": "8", "data.size": "32",
        "data.resize_short": "36", "data.num_workers": "0", "data.test_clips": "1", "data.val_fraction": "0.5",
        "optim.lr": "0.05", "optim.schedule": "step", "optim.step_size": "100", "optim.weight_decay": "0",
        "epochs": "2", "batch_size": "5", "ema_decay": "0.5", "out_dir": str(out_dir), "seed": "3",
        "tensorboard": "false", "device": "cpu", "log_every": "1",
    }
    overrides.update({k: str(v) for k, v in extra.items()})
    return apply_overrides(TrainConfig(), overrides)


def test_training_reduces_loss_and_writes_loadable_checkpoints(tiny_data, tmp_path):
    # No augmentation: every epoch sees the same clips, so the loss must fall as the model fits them.
    cfg = tiny_config(tiny_data, tmp_path / "run", epochs=5, **{"data.hflip": "false",
                                                                "data.scale_jitter": "[1.0, 1.0]"})
    result = train(cfg, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 5 and min(losses[-2:]) < 0.8 * losses[0], losses
    run = result.run_dir
    for name in ("last.pt", "best.pt", "log.csv", "config.yaml", "curves.png", "confusion.png", "confusion.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5] and rows[0]["val_acc"] != ""
    for name in ("best.pt", "last.pt"):
        rec = Recognizer.from_checkpoint(run / name, device="cpu")
        assert rec.labels == result.classes and rec.clip_len == 8 and rec.input_size == (32, 32)
        frames = [rec.preprocess(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))
                  for i in range(8)]
        probs = rec.predict(frames)
        assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-4
    # The checkpoint's weights are the EMA weights.
    state = torch.load(run / "last.pt", weights_only=True)
    ema = result.ema_model.state_dict()
    assert all(torch.equal(state["state_dict"][k], ema[k]) for k in ema)


def test_resume_is_bit_exact(tiny_data, tmp_path):
    straight = train(tiny_config(tiny_data, tmp_path / "a", deterministic="true"), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", deterministic="true")
    first = train(cfg, progress=False, stop_after_epochs=1)  # as if killed after epoch 1's checkpoint
    assert first.epochs_done == 1
    resumed = train(cfg, resume=tmp_path / "b", progress=False)
    assert resumed.epochs_done == 2
    assert not torch.are_deterministic_algorithms_enabled()  # train() restores the global switch
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for key in ("model",):
        assert all(torch.equal(a["resume"][key][k], b["resume"][key][k]) for k in a["resume"][key])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(torch.equal(v, straight.model.state_dict()[k]) for k, v in resumed.model.state_dict().items())
    assert [r["train_loss"] for r in a["resume"]["history"]] == [r["train_loss"] for r in b["resume"]["history"]]


def test_missing_dataset_and_existing_run_give_clear_errors(tiny_data, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["--config", SYNTHETIC_YAML, "--set", f"data.root={missing}",
                 "synthetic.generate=false", f"out_dir={tmp_path / 'r'}", "--no-progress"])
    assert code == 2 and f"dataset folder not found: {missing}" in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"")
    code = main(["--config", SYNTHETIC_YAML, "--set", f"data.root={tiny_data}",
                 f"out_dir={tmp_path / 'r'}", "--no-progress"])
    assert code == 2 and "--resume" in capsys.readouterr().err


def test_best_is_selected_on_validation_and_test_is_measured_once(tiny_data, tmp_path):
    import json

    result = train(tiny_config(tiny_data, tmp_path / "sel", epochs=3), progress=False)
    run = result.run_dir
    split = json.loads((run / "split.json").read_text())
    assert split["num_val"] == 10 and split["num_train"] == 10 and split["num_test"] == 10
    rows = list(csv.DictReader(open(run / "log.csv")))
    val = [float(r["val_acc"]) for r in rows]
    assert result.best_epoch == 1 + val.index(max(val))  # first epoch with the best *validation* accuracy
    tested = [r for r in rows if r["test_acc"] != ""]
    assert [int(r["epoch"]) for r in tested] == [result.best_epoch]  # the test split, once, best weights
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["training"]["saved_epoch"] == result.best_epoch
    assert best["training"]["test_acc"] == pytest.approx(result.test["acc"])
    assert "epoch 3/3" in (run / "train.log").read_text()


def test_ema_copies_batchnorm_statistics():
    from repflow_core.train_loop import ModelEMA

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = ModelEMA(net, 0.999)
    net.train()
    net(torch.randn(8, 3, 8, 8) * 5 + 3)
    ema.update(net)
    assert torch.equal(ema.module[1].running_var, net[1].running_var)  # buffers belong to the live weights
    with torch.no_grad():
        net[0].weight.add_(1.0)
    before = ema.module[0].weight.clone()
    ema.update(net)
    d = ema.current_decay()  # warmed-up decay (2 updates: 3/12)
    assert torch.allclose(ema.module[0].weight, d * before + (1 - d) * net[0].weight)
