"""Model cards (repflow_core.model_card): stored in checkpoints, validated when present, printed by
``python -m repflow_core.checkpoint info``; the packaged model's card says it knows synthetic people only."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repflow_core.checkpoint import (
    Checkpoint,
    CheckpointError,
    InputSpec,
    load_checkpoint,
    save_checkpoint,
    validate_checkpoint,
)
from repflow_core.model import ActionNet, ModelConfig
from repflow_core.model_card import CardError, format_card, make_card, validate_card
from repflow_core.recognizer import default_checkpoint

LABELS = ["wave", "clap", "idle"]
SPEC = InputSpec(clip_len=6, size=(32, 32), resize_short=40)


def tiny_checkpoint(card=None, training=None) -> Checkpoint:
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.125, num_classes=3, flow_channels=8, iterations=2, flow_after="layer1", dropout=0.0)
    return Checkpoint(cfg, LABELS, SPEC, ActionNet(cfg).state_dict(), training=training or {"epochs": 1}, card=card)


def a_card(**overrides):
    card = make_card(name="tiny", labels=LABELS, input_spec=SPEC.to_dict(), training_data="three synthetic clips",
                     metrics=[{"values": {"video_top1": 0.5}, "command": "python -m repflow_core.evaluate --x",
                               "data": "held-out"}],
                     known_limits=["knows three actions only"], summary="a test model")
    card.update(overrides)
    return card


def test_card_round_trips_through_a_checkpoint(tmp_path):
    card = a_card()
    save_checkpoint(tiny_checkpoint(card), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.card == card
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["card"] == card


def test_checkpoint_without_card_still_loads(tmp_path):
    data = tiny_checkpoint().to_dict()
    assert "card" not in data  # an old checkpoint
    torch.save(data, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").card is None


def test_save_fills_a_card_from_the_training_summary(tmp_path):
    training = {"epochs": 3, "best_val_acc": 0.75, "best_epoch": 2, "train_videos": 30, "val_videos": 9,
                "config": {"out_dir": "runs/x", "data": {"layout": "folders", "root": "/data/clips"},
                           "model": {"backbone": "resnet18"}}}
    save_checkpoint(tiny_checkpoint(training=training), tmp_path / "m.pt")
    card = load_checkpoint(tmp_path / "m.pt").card
    assert card["labels"] == LABELS and card["input_spec"]["clip_len"] == 6
    assert "/data/clips" in card["training_data"] and "30 training videos" in card["training_data"]
    assert card["metrics"][0]["values"]["best_val_acc"] == 0.75
    assert card["metrics"][0]["command"] == "python -m repflow_core.train --config runs/x/config.yaml"
    assert card["known_limits"]


@pytest.mark.parametrize("card, field", [
    ("not a dict", "card"),
    ({"summary": "no name"}, "card.name"),
    ({"name": "x", "labels": ["a", "b", "c"]}, "card.labels"),  # differs from the checkpoint's labels
    ({"name": "x", "summary": 3}, "card.summary"),
    ({"name": "x", "known_limits": "one string"}, "card.known_limits"),
    ({"name": "x", "metrics": [{"values": {"acc": 0.5}}]}, "card.metrics[0].command"),
    ({"name": "x", "metrics": [{"values": {"acc": float("nan")}, "command": "c"}]}, "card.metrics[0].values"),
    ({"name": "x", "metrics": {"acc": 0.5}}, "card.metrics"),
    ({"name": "x", "input_spec": [1]}, "card.input_spec"),
    ({"name": "x", "notes": {"deep": float("inf")}}, "card.notes.deep"),
    ({"name": "x", "notes": "x" * 30_000}, "card.notes"),
])
def test_bad_cards_are_refused_naming_the_field(card, field):
    data = tiny_checkpoint().to_dict()
    data["card"] = card
    with pytest.raises(CheckpointError) as err:
        validate_checkpoint(data, "bad.pt")
    assert err.value.field == field and "bad.pt" in str(err.value) and field in str(err.value)


def test_make_card_validates():
    with pytest.raises(CardError, match="command"):
        make_card(name="x", labels=LABELS, input_spec={}, training_data="", metrics=[{"values": {"a": 1}}])
    assert validate_card(a_card(), labels=LABELS)["name"] == "tiny"


def test_format_card_is_readable():
    text = format_card(a_card())
    assert "model card: tiny" in text and "video_top1 0.5" in text
    assert "measured by  python -m repflow_core.evaluate --x" in text and "- knows three actions only" in text
    assert "none" in format_card(None)


def test_info_command_prints_the_card(tmp_path):
    save_checkpoint(tiny_checkpoint(a_card()), tmp_path / "m.pt")
    out = subprocess.run([sys.executable, "-m", "repflow_core.checkpoint", "info", str(tmp_path / "m.pt")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "labels         (3) wave, clap, idle" in out.stdout and "model card: tiny" in out.stdout
    js = subprocess.run([sys.executable, "-m", "repflow_core.checkpoint", "info", "--json", str(tmp_path / "m.pt")],
                        capture_output=True, text=True, timeout=120)
    assert json.loads(js.stdout) == a_card()
    bad = subprocess.run([sys.executable, "-m", "repflow_core.checkpoint", "info", str(tmp_path / "nope.pt")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not found" in bad.stderr and "nope.pt" in bad.stderr


def test_packaged_model_card_says_synthetic_people_only():
    ckpt = load_checkpoint(default_checkpoint())
    card = ckpt.card
    assert card is not None and card["labels"] == ckpt.labels
    assert "synthetic people only" in card["summary"] and "synthetic people only" in card["known_limits"][0].lower()
    assert card["input_spec"] == ckpt.input_spec.to_dict()
    top1 = [m for m in card["metrics"] if "video_top1" in m["values"]]
    assert "repflow_core.evaluate" in top1[0]["command"]
    # the card's headline figure is the one README quotes for the packaged model (they were measured together)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"**video top-1 {top1[0]['values']['video_top1'] * 100:.1f} %**" in readme
    assert all(m["command"].strip() for m in card["metrics"])
