"""Model cards: what a checkpoint knows, what it was trained on, how well, measured how, and its limits.

A card is a plain dict stored in the checkpoint under ``"card"`` (DESIGN.md section 4), so that
``torch.load(weights_only=True)`` reads it and every copy of the model (checkpoint, ONNX, TorchScript)
carries the same text. Fields (all optional except ``name``; :func:`validate_card` checks the types)::

    name            str    short model name
    summary         str    what the model recognises, in one or two sentences
    labels          [str]  the class names (must equal the checkpoint's labels when present)
    input_spec      dict   the checkpoint's input spec (clip_len, frame_stride, size, resize_short, mean, std, ...)
    training_data   str    what data it was trained on (dataset, size, splits)
    metrics         [ {"values": {name: number}, "command": str, "data": str} ]
                           measured figures, each with the command that produced them and on what data
    known_limits    [str]  what it does not do / where it fails
    created         str    ISO date
    extra keys      plain JSON values (kept and shown as they are)

Makers: :func:`make_card` (any caller), :func:`card_from_training` (what :func:`checkpoint.save_checkpoint`
fills in when a trainer gives no card). Readers: :func:`format_card` (the ``info`` command), :func:`card_json`.
This module never imports the checkpoint module (no cycle): it works on plain dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

__all__ = ["CardError", "card_from_training", "card_json", "format_card", "make_card", "validate_card"]

MAX_CARD_TEXT = 20_000  # characters per string field: a card is prose, not a payload
MAX_CARD_ITEMS = 10_000  # entries per list / dict
MAX_CARD_DEPTH = 6

_STR_FIELDS = ("name", "summary", "training_data", "created")


class CardError(ValueError):
    """A card field of the wrong type or size; ``field`` holds its dotted name (``card.metrics[0].command``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def make_card(
    name: str,
    labels: Sequence[str],
    input_spec: Mapping[str, Any],
    training_data: str,
    metrics: Sequence[Mapping[str, Any]] = (),
    known_limits: Sequence[str] = (),
    summary: str = "",
    created: str | None = None,
    **extra: Any,
) -> dict:
    """A card dict for :class:`repflow_core.checkpoint.Checkpoint` ``card`` (validated before it is returned).

    ``metrics``: entries ``{"values": {"video_top1": 0.82, ...}, "command": "python -m ...", "data": "..."}``.
    """
    card = {
        "name": name,
        "summary": summary,
        "labels": list(labels),
        "input_spec": dict(input_spec),
        "training_data": training_data,
        "metrics": [dict(m) for m in metrics],
        "known_limits": list(known_limits),
        "created": created or date.today().isoformat(),
        **extra,
    }
    validate_card(card, labels=list(labels))
    return card


def card_from_training(labels: Sequence[str], input_spec: Mapping[str, Any], training: Mapping[str, Any]) -> dict:
    """The card a training run's checkpoint gets: labels and input spec, the data and the validation figures
    from the training summary (``checkpoint.Checkpoint.training``), with the command that reproduces them
    (the run folder keeps the config it ran with as ``config.yaml``)."""
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    out_dir = config.get("out_dir", "RUN_DIR")
    layout = data.get("layout", "?")
    root = data.get("root", "?")
    data_text = (f"layout {layout} at {root}: {training.get('train_videos', '?')} training videos, "
                 f"{training.get('val_videos', '?')} validation, {training.get('test_videos', 0)} test; "
                 f"{len(labels)} classes; dataset fingerprint {training.get('dataset_fingerprint', '?')}")
    values = {}
    for key in ("best_val_acc", "best_epoch", "epochs", "train_acc", "test_acc", "test_video_top1"):
        v = training.get(key)
        if _is_number(v):
            values[key] = v
    metrics = []
    if values:
        metrics.append({"values": values, "data": f"validation split of {root} (single view per clip)",
                        "command": f"python -m repflow_core.train --config {out_dir}/config.yaml"})
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    return make_card(
        name=f"repflow {model.get('backbone', 'model')} ({len(labels)} actions)",
        summary=f"Recognises {len(labels)} actions: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''}.",
        labels=labels, input_spec=input_spec, training_data=data_text, metrics=metrics,
        known_limits=["Knows only the classes above, as they appear in its training data; anything else is "
                      "forced onto one of them (use score_threshold).",
                      "Figures are from the validation split used to select the weights: optimistic; run "
                      "python -m repflow_core.evaluate on held-out data before deploying."],
    )


# -------------------------------------------------------------------------------------------- validation

def validate_card(raw: Any, labels: Sequence[str] | None = None) -> dict:
    """Check a card's types and sizes (see the module docstring); returns it. Raises :class:`CardError`
    naming the field. ``labels``: the checkpoint's labels, which a card's ``labels`` must equal."""
    if not isinstance(raw, dict):
        raise CardError(f"must be a dict, got {type(raw).__name__}", "card")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise CardError(f"'name' must be a non-empty string, got {_short(raw.get('name'))}", "card.name")
    for key in raw:
        if not isinstance(key, str):
            raise CardError(f"keys must be strings, got {_short(key)}", "card")
    for key in _STR_FIELDS:
        if key in raw and not isinstance(raw[key], str):
            raise CardError(f"must be a string, got {type(raw[key]).__name__} {_short(raw[key])}", f"card.{key}")
    if "labels" in raw:
        _check_str_list(raw["labels"], "card.labels")
        if labels is not None and list(raw["labels"]) != list(labels):
            raise CardError(f"{_short(raw['labels'])} differ from the checkpoint's labels {_short(list(labels))}",
                            "card.labels")
    if "known_limits" in raw:
        _check_str_list(raw["known_limits"], "card.known_limits")
    if "input_spec" in raw and not isinstance(raw["input_spec"], dict):
        raise CardError(f"must be a dict, got {type(raw['input_spec']).__name__}", "card.input_spec")
    if "metrics" in raw:
        _check_metrics(raw["metrics"])
    _check_plain(raw, "card", 0)
    return raw


def _check_metrics(metrics: Any) -> None:
    if not isinstance(metrics, list):
        raise CardError(f"must be a list of {{values, command, data}}, got {type(metrics).__name__}", "card.metrics")
    for i, entry in enumerate(metrics):
        name = f"card.metrics[{i}]"
        if not isinstance(entry, dict):
            raise CardError(f"must be a dict, got {type(entry).__name__}", name)
        values = entry.get("values")
        if not isinstance(values, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in values.items()):
            raise CardError(f"'values' must map names to finite numbers, got {_short(values)}", f"{name}.values")
        if not isinstance(entry.get("command"), str) or not entry["command"].strip():
            raise CardError(f"'command' (what produced the figures) must be a non-empty string, got "
                            f"{_short(entry.get('command'))}", f"{name}.command")
        if "data" in entry and not isinstance(entry["data"], str):
            raise CardError(f"must be a string, got {type(entry['data']).__name__}", f"{name}.data")


def _check_str_list(value: Any, name: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CardError(f"must be a list of strings, got {_short(value)}", name)


def _check_plain(value: Any, name: str, depth: int) -> None:
    """Only JSON-like values (what weights_only loading and ONNX metadata can carry), bounded in size."""
    if depth > MAX_CARD_DEPTH:
        raise CardError(f"is nested deeper than {MAX_CARD_DEPTH} levels", name)
    if isinstance(value, str):
        if len(value) > MAX_CARD_TEXT:
            raise CardError(f"is {len(value)} characters long, over the limit of {MAX_CARD_TEXT}", name)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CardError(f"must be finite, got {value!r}", name)
    elif value is None or isinstance(value, (bool, int)):
        pass
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_CARD_ITEMS:
            raise CardError(f"has {len(value)} entries, over the limit of {MAX_CARD_ITEMS}", name)
        for i, v in enumerate(value):
            _check_plain(v, f"{name}[{i}]", depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_CARD_ITEMS:
            raise CardError(f"has {len(value)} entries, over the limit of {MAX_CARD_ITEMS}", name)
        for k, v in value.items():
            if not isinstance(k, str):
                raise CardError(f"keys must be strings, got {_short(k)}", name)
            _check_plain(v, f"{name}.{k}", depth + 1)
    else:
        raise CardError(f"must hold plain values (str, number, bool, list, dict), got {type(value).__name__}", name)


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -------------------------------------------------------------------------------------------- output

def card_json(card: Mapping[str, Any]) -> str:
    """The card as indented JSON (the file written beside an exported model, and its metadata)."""
    return json.dumps(card, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def format_card(card: Mapping[str, Any] | None) -> str:
    """A readable text rendering of a card (``python -m repflow_core.checkpoint info``)."""
    if not card:
        return "model card: none (a checkpoint saved before cards existed; re-save it with a card)"
    lines = [f"model card: {card.get('name', '?')}"]
    if card.get("summary"):
        lines.append(f"  summary        {card['summary']}")
    if card.get("labels"):
        lines.append(f"  labels         ({len(card['labels'])}) {', '.join(card['labels'])}")
    if card.get("input_spec"):
        spec = card["input_spec"]
        lines.append("  input          " + ", ".join(f"{k} {_fmt(v)}" for k, v in spec.items()))
    if card.get("training_data"):
        lines.append(f"  training data  {card['training_data']}")
    for i, m in enumerate(card.get("metrics") or []):
        values = ", ".join(f"{k} {_fmt(v)}" for k, v in m.get("values", {}).items())
        lines.append(f"  metrics [{i + 1}]    {values}")
        if m.get("data"):
            lines.append(f"    on           {m['data']}")
        lines.append(f"    measured by  {m.get('command', '?')}")
    for i, limit in enumerate(card.get("known_limits") or []):
        lines.append(("  known limits   " if i == 0 else "                 ") + f"- {limit}")
    known = {"name", "summary", "labels", "input_spec", "training_data", "metrics", "known_limits"}
    for key, value in card.items():
        if key not in known:
            lines.append(f"  {key:<14} {_fmt(value)}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
