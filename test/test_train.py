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


def test_selection_follows_validation_when_validation_and_test_disagree(tiny_data, tmp_path, monkeypatch):
    """Validation peaks at epoch 2, the test split would peak at epoch 3: best.pt must be epoch 2's weights, and
    the single test evaluation must see exactly those weights (its figure is epoch 2's, not the test's best)."""
    import repflow_core.train as train_mod
    import repflow_core.train_data as train_data_mod
    from repflow_core.train_loop import validate as real_validate

    val_acc = {1: 0.2, 2: 0.9, 3: 0.5}
    test_acc = {1: 0.3, 2: 0.4, 3: 0.95}  # what the test split would say of each epoch's weights
    seen: dict[int, dict] = {}  # epoch -> the weights validated at that epoch
    tested: list[int] = []

    def scripted_val(model, loader, s, num_classes, desc="validate"):
        res = real_validate(model, loader, s, num_classes, desc)
        epoch = int(desc.split()[-1])
        seen[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return dict(res, acc=val_acc[epoch])

    def scripted_test(model, loader, s, num_classes, desc="test"):
        res = real_validate(model, loader, s, num_classes, desc)
        state = model.state_dict()
        match = [e for e, w in seen.items() if all(torch.equal(w[k], state[k]) for k in w)]
        assert len(match) == 1, match
        tested.append(match[0])
        return dict(res, acc=test_acc[match[0]])

    monkeypatch.setattr(train_mod, "validate", scripted_val)
    monkeypatch.setattr(train_data_mod, "validate", scripted_test)
    result = train(tiny_config(tiny_data, tmp_path / "disagree", epochs=3), progress=False)
    assert result.best_epoch == 2 and result.best_val_acc == 0.9
    assert tested == [2] and result.test["acc"] == 0.4  # once, with the validation-selected weights
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert best["training"]["saved_epoch"] == 2
    assert all(torch.equal(best["state_dict"][k], seen[2][k]) for k in seen[2])
    assert not all(torch.equal(best["state_dict"][k], seen[3][k]) for k in seen[3])  # not the last weights
    rows = list(csv.DictReader(open(result.run_dir / "log.csv")))
    assert [r["test_acc"] != "" for r in rows] == [False, True, False]


def test_young_batchnorm_statistics_are_re_estimated_before_validation():
    """Issue 14.3: after a few optimiser steps BatchNorm's running estimates (momentum 0.1) are still mostly
    their initial (0, 1), so the eval-mode network sees activations at the wrong scale and the first validation
    loss exploded. recalibrate_batchnorm re-estimates them for the evaluated weights from training batches."""
    from repflow_core.train_loop import StepSettings, recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.Dropout(0.5),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 4 * 4, 3))
    with torch.no_grad():
        net[0].weight.mul_(40.0)  # activations far from unit scale, as a flow block's can be
    gen = torch.Generator().manual_seed(1)
    loader = [(torch.randint(0, 256, (4, 3, 2, 4, 4), dtype=torch.uint8, generator=gen),
               torch.zeros(4, dtype=torch.long), None) for _ in range(5)]
    steps = StepSettings(device=torch.device("cpu"), amp="none", mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    x = torch.cat([normalize(c) for c, _, _ in loader])
    net.train()
    for clips, _, _ in loader[:3]:  # three training steps' worth of running-statistics updates
        net(normalize(clips))
    bn = net[1]
    true_var = net[0](x).transpose(0, 1).flatten(1).var(1)
    assert (bn.running_var / true_var).max() < 0.5  # young: still mostly the initial variance of 1
    net.eval()
    used = recalibrate_batchnorm(net, loader, steps, max_batches=20)
    assert used == 5 and not net.training and bn.momentum == 0.1  # mode and momentum restored
    assert torch.allclose(bn.running_var, true_var, rtol=0.05)
    assert torch.allclose(bn.running_mean, net[0](x).transpose(0, 1).flatten(1).mean(1), rtol=1e-3, atol=1e-2)


def normalize(clips):
    from repflow_core.data.transforms import normalize_on_device

    return normalize_on_device(clips, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225))


def test_a_synthetic_folder_of_another_size_is_used_with_a_note(tiny_data, tmp_path):
    from repflow_core.data.prepare import maybe_generate_synthetic

    said = []
    cfg = tiny_config(tiny_data, tmp_path / "r", **{"synthetic.generate": "true", "synthetic.per_class": "320"})
    assert maybe_generate_synthetic(cfg, said.append, progress=False) is False  # nothing rewritten
    assert len(said) == 1 and "holds 30 clips (3 per class), not synthetic.per_class=320" in said[0]
    said.clear()
    cfg = tiny_config(tiny_data, tmp_path / "r", **{"synthetic.generate": "true", "synthetic.per_class": "3"})
    assert maybe_generate_synthetic(cfg, said.append, progress=False) is False and said == []
