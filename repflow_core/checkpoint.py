"""The one checkpoint format (DESIGN.md section 4), saved atomically and loaded safely.

A checkpoint is a plain dict of tensors and built-in types so that ``torch.load(weights_only=True)`` can
read it: no pickled classes, so a hostile file cannot run code.

    {
      "format": "repflow_ros.checkpoint", "version": 1,
      "model_config": {...ModelConfig fields...},
      "labels": ["idle", "wave", ...],
      "input_spec": {"clip_len": 16, "frame_stride": 1, "size": [112, 112], "resize_short": 128,
                     "mean": [...], "std": [...]},
      "state_dict": {...}            # EMA weights when training kept an EMA
      "training": {...}              # summary: epochs, metrics, dataset fingerprint (plain types)
      "resume": {...}                # optional, training-only: optimiser, scheduler, RNG, epoch
      "card": {...}                  # model card (repflow_core.model_card); optional in files saved before cards
    }

``python -m repflow_core.checkpoint info CKPT`` prints a checkpoint's header, spec, training summary and card.

Every reader goes through :func:`load_checkpoint` -> :func:`validate_checkpoint`: the file's size is bounded
before it is read (MAX_CHECKPOINT_BYTES), then every field is checked against the model it describes and
the stated bounds (MAX_*), each failure a :class:`CheckpointError` naming the file and the field.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic_io import atomic_torch_save
from .data.transforms import CROP_POLICIES, KINETICS_MEAN, KINETICS_STD  # the one home of the normalisation constants
from .model import ModelConfig
from .model_card import CardError, card_from_training, validate_card
from .uftsn import build_any_model

FORMAT_TAG = "repflow_ros.checkpoint"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("format", "version", "model_config", "labels", "input_spec", "state_dict")
MIN_FORMAT_VERSION = 1  # versions MIN_FORMAT_VERSION..FORMAT_VERSION are read; anything else is refused

# Stated bounds of what a checkpoint may ask for (validate_checkpoint). They keep a hostile or broken file
# from making the consumer allocate without limit; each is far above what the paper's models use
# (inputs 112-224 px, clips of 16-64 frames, a few hundred classes, models of up to ~100 MB).
MAX_CHECKPOINT_BYTES = 2 * 1024**3  # size on disk (and uncompressed archive size), checked before reading
MAX_INPUT_SIZE = 1024  # model input height and width, px
MIN_INPUT_SIZE = 8
MAX_RESIZE_SHORT = 2048  # px
MAX_CLIP_LEN = 512  # frames per window
MAX_FRAME_STRIDE = 64
MAX_LABELS = 10_000
MAX_LABEL_CHARS = 256
MAX_FLOW_ITERATIONS = 100  # the paper uses 10 or 20 (Table 3)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, incomplete, too new, too large or inconsistent.

    The message names the file and, for a bad field, the field (``field`` holds its dotted name)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class InputSpec:
    """How frames must be prepared for the model: sampled clip_len frames every frame_stride frames,
    short side resized to resize_short, centre crop to size (H, W), RGB scaled to [0, 1] then
    normalised by mean/std. ``crop`` is the geometry policy (data/transforms.py ``preprocess_frame``):
    ``center`` (the above) or ``full`` (whole frame, aspect kept, letterboxed with the mean colour);
    checkpoints saved before the field existed read as ``center``."""

    clip_len: int = 16
    frame_stride: int = 1
    size: tuple[int, int] = (112, 112)
    resize_short: int = 128
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    crop: str = "center"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        known = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.size = (int(spec.size[0]), int(spec.size[1]))
        spec.mean = tuple(float(v) for v in spec.mean)  # type: ignore[assignment]
        spec.std = tuple(float(v) for v in spec.std)  # type: ignore[assignment]
        if spec.clip_len < 2 or spec.frame_stride < 1 or min(spec.size) < 8 or spec.resize_short < min(spec.size):
            raise ValueError(f"invalid input spec {data}")
        if spec.crop not in CROP_POLICIES:
            raise ValueError(f"input spec crop {spec.crop!r} is not one of {list(CROP_POLICIES)}")
        return spec


@dataclass
class Checkpoint:
    model_config: ModelConfig
    labels: list[str]
    input_spec: InputSpec
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] | None = None
    card: dict[str, Any] | None = None  # model card (repflow_core.model_card); None in files saved before cards

    def to_dict(self) -> dict:
        data = {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "model_config": self.model_config.to_dict(),
            "labels": list(self.labels),
            "input_spec": self.input_spec.to_dict(),
            "state_dict": self.state_dict,
            "training": self.training,
        }
        if self.resume is not None:
            data["resume"] = self.resume
        if self.card is not None:
            data["card"] = self.card
        return data

    def build_model(self) -> nn.Module:
        """The network this checkpoint describes (ActionNet, or UF-TSN for ``motion: uftsn``), weights loaded."""
        model = build_any_model(self.model_config)
        try:
            missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        except RuntimeError as exc:  # shape mismatch; validate_checkpoint reports it per field first
            raise CheckpointError(f"checkpoint weights do not fit its model config: {exc}",
                                  field="state_dict") from exc
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint weights do not fit its model config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a truncated checkpoint. The file
    gets the ordinary umask-respecting mode (0644 under umask 022), see :mod:`repflow_core.atomic_io`.
    """
    return atomic_torch_save(obj, path)


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Save atomically. A checkpoint without a card gets one made from its training summary
    (:func:`repflow_core.model_card.card_from_training`), so every checkpoint written carries a card."""
    data = ckpt.to_dict()
    if data.get("card") is None:
        data["card"] = card_from_training(ckpt.labels, ckpt.input_spec.to_dict(), ckpt.training or {})
    return atomic_save(data, path)


def load_checkpoint_dict(path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """Read the raw dict safely and check its header (format tag, version, required fields).

    The size on disk and the archive's uncompressed size are checked against ``max_bytes`` before anything
    is read. Every failure is a CheckpointError naming the file. The contents are validated by
    :func:`validate_checkpoint` (what :func:`load_checkpoint` does).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    _check_size_before_reading(path, max_bytes)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain data "
            f"(weights_only loading); only repflow checkpoints are accepted ({str(exc).splitlines()[0]})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"not a readable checkpoint file: {path} ({exc})") from exc
    _check_header(data, str(path))
    return data


def _check_size_before_reading(path: Path, max_bytes: int) -> None:
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{path}: file size {size} bytes exceeds the limit of {max_bytes} bytes "
                              "(max_bytes); not reading it", field="file size")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since PyTorch 1.6; anything else is damaged or not ours.
        raise CheckpointError(f"not a readable checkpoint file: {path} (not a PyTorch archive: corrupt, truncated "
                              "or another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            # A compressed member could expand far beyond the file's size: bound what it claims to expand to.
            unpacked = sum(max(0, info.file_size) for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"not a readable checkpoint file: {path} ({exc})") from exc
    if unpacked > max_bytes:
        raise CheckpointError(f"{path}: its archive unpacks to {unpacked} bytes, over the limit of {max_bytes} "
                              "bytes (max_bytes); not reading it", field="file size")


def _check_header(data: Any, source: str) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{source} is not a repflow checkpoint (no format tag {FORMAT_TAG!r}); "
            "to use torchvision backbone weights, pass them to training as --backbone-weights", field="format"
        )
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise CheckpointError(f"{source} lacks the checkpoint field {name!r}", field=name)
    version = data["version"]
    if type(version) is not int:  # bool is an int subclass: refuse it too
        raise CheckpointError(f"{source}: checkpoint field 'version' must be an integer, got "
                              f"{type(version).__name__} {version!r}", field="version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format version {version}, newer than this code reads ({FORMAT_VERSION}); "
            "upgrade repflow_ros", field="version")
    if version < MIN_FORMAT_VERSION:
        raise CheckpointError(f"{source}: checkpoint field 'version' is {version}, not a valid format version "
                              f"(supported: {MIN_FORMAT_VERSION}..{FORMAT_VERSION})", field="version")


def load_checkpoint(path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Checkpoint:
    """Read ``path`` safely (size bounded before reading) and validate it fully; see validate_checkpoint."""
    return validate_checkpoint(load_checkpoint_dict(path, max_bytes), source=str(path))


def validate_checkpoint(data: Any, source: str = "checkpoint") -> Checkpoint:
    """Validate a raw checkpoint dict completely, without loading its weights into a model.

    Checks the header (format tag, an integer version in MIN_FORMAT_VERSION..FORMAT_VERSION, the required
    fields), then every field: ``model_config`` (known fields of the right types, within the model's ranges),
    ``labels`` (a list of unique non-empty strings, as many as the classifier's outputs), ``input_spec``
    (types; clip_len, frame_stride, size and resize_short within the stated bounds MAX_*; mean and std three
    finite numbers, std > 0), ``state_dict`` (exactly the model's tensor names and shapes, compared with
    the model built on the meta device so nothing is allocated; floating weights finite), ``training`` and
    ``resume`` (dicts when present), ``card`` (types and sizes, labels equal to the checkpoint's; optional:
    checkpoints saved before cards have none). Returns the :class:`Checkpoint`; every failure is a CheckpointError
    naming ``source`` and the field. Used by load_checkpoint (hence Recognizer.from_checkpoint, the node's
    configure, evaluate and export).
    """
    _check_header(data, source)
    model_config = _validate_model_config(data["model_config"], source)
    labels = _validate_labels(data["labels"], model_config.num_classes, source)
    input_spec = _validate_input_spec(data["input_spec"], model_config, source)
    state = _validate_state_dict(data["state_dict"], model_config, source)
    training = data.get("training")
    if training is None:
        training = {}
    if not isinstance(training, dict):
        _fail(source, "training", f"must be a dict, got {type(training).__name__}")
    resume = data.get("resume")
    if resume is not None and not isinstance(resume, dict):
        _fail(source, "resume", f"must be a dict or absent, got {type(resume).__name__}")
    card = data.get("card")
    if card is not None:
        try:
            validate_card(card, labels=labels)
        except CardError as exc:
            raise CheckpointError(f"{source}: checkpoint field {exc.field!r} {exc}", field=exc.field) from exc
    return Checkpoint(model_config=model_config, labels=labels, input_spec=input_spec, state_dict=state,
                      training=dict(training), resume=resume, card=card)


def validate_spec_fields(model_config: Any, labels: Any, input_spec: Any,
                         source: str) -> tuple[ModelConfig, list[str], InputSpec]:
    """Validate the three descriptive fields alone (as validate_checkpoint does): for models that carry them
    without a state_dict, such as an exported ONNX file's metadata."""
    config = _validate_model_config(model_config, source)
    return config, _validate_labels(labels, config.num_classes, source), _validate_input_spec(input_spec, config,
                                                                                               source)


def _fail(source: str, name: str, problem: str) -> None:
    raise CheckpointError(f"{source}: checkpoint field {name!r} {problem}", field=name)


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, not float


def _is_real(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _check_typed_fields(values: dict, defaults: Any, prefix: str, source: str) -> None:
    """Each value must have the type of the dataclass default it replaces (int for float allowed)."""
    for f in fields(defaults):
        if f.name not in values:
            continue
        value, default = values[f.name], getattr(defaults, f.name)
        name = f"{prefix}.{f.name}"
        if isinstance(default, bool):
            ok = type(value) is bool
        elif isinstance(default, int):
            ok = _is_int(value)
        elif isinstance(default, float):
            ok = _is_real(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue  # sequences: checked by the caller
        if not ok:
            _fail(source, name, f"must be a {type(default).__name__}"
                                f"{' (finite)' if isinstance(default, float) else ''}, got "
                                f"{type(value).__name__} {value!r}")


def _validate_model_config(raw: Any, source: str) -> ModelConfig:
    if not isinstance(raw, dict):
        _fail(source, "model_config", f"must be a dict, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - {f.name for f in fields(ModelConfig)})
    if unknown:
        _fail(source, f"model_config.{unknown[0]}", f"is not a model config field (unknown: {unknown})")
    _check_typed_fields(raw, ModelConfig(), "model_config", source)
    if raw.get("iterations", 1) > MAX_FLOW_ITERATIONS:
        _fail(source, "model_config.iterations", f"is {raw['iterations']}, over the limit of {MAX_FLOW_ITERATIONS}")
    if raw.get("num_classes", 1) > MAX_LABELS:
        _fail(source, "model_config.num_classes", f"is {raw['num_classes']}, over the limit of {MAX_LABELS}")
    try:
        return ModelConfig.from_dict(dict(raw))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: checkpoint field 'model_config' is invalid: {exc}",
                              field="model_config") from exc


def _validate_labels(raw: Any, num_classes: int, source: str) -> list[str]:
    if not isinstance(raw, (list, tuple)):
        _fail(source, "labels", f"must be a list of class names, got {type(raw).__name__} {_short(raw)}")
    for i, label in enumerate(raw):
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
            _fail(source, "labels", f"entry {i} must be a non-empty string of at most {MAX_LABEL_CHARS} "
                                    f"characters, got {_short(label)}")
    duplicates = sorted(label for label, count in Counter(raw).items() if count > 1)
    if duplicates:
        _fail(source, "labels", f"has duplicate class names {duplicates[:5]}")
    if len(raw) != num_classes:
        _fail(source, "labels", f"has {len(raw)} labels but its model has {num_classes} classes "
                                "(model_config.num_classes)")
    return list(raw)


def _validate_input_spec(raw: Any, model_config: ModelConfig, source: str) -> InputSpec:
    if not isinstance(raw, dict):
        _fail(source, "input_spec", f"must be a dict, got {type(raw).__name__}")
    for name in ("clip_len", "frame_stride", "size", "resize_short", "mean", "std"):
        if name not in raw:
            _fail(source, f"input_spec.{name}", "is missing")
    _check_typed_fields(raw, InputSpec(), "input_spec", source)
    min_clip = max(2, model_config.frames_consumed + 1)
    _check_range(raw["clip_len"], min_clip, MAX_CLIP_LEN, "input_spec.clip_len", source)
    _check_range(raw["frame_stride"], 1, MAX_FRAME_STRIDE, "input_spec.frame_stride", source)
    size = raw["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) for v in size):
        _fail(source, "input_spec.size", f"must be two integers [height, width], got {_short(size)}")
    for v in size:
        _check_range(v, MIN_INPUT_SIZE, MAX_INPUT_SIZE, "input_spec.size", source)
    _check_range(raw["resize_short"], min(size), MAX_RESIZE_SHORT, "input_spec.resize_short", source)
    for name in ("mean", "std"):
        v = raw[name]
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_real(x) for x in v):
            _fail(source, f"input_spec.{name}", f"must be 3 finite numbers (R, G, B), got {_short(v)}")
    if not all(x > 0 for x in raw["std"]):
        _fail(source, "input_spec.std", f"must be > 0 for every channel, got {list(raw['std'])}")
    if raw.get("crop", "center") not in CROP_POLICIES:  # absent (older checkpoints) = center
        _fail(source, "input_spec.crop", f"must be one of {list(CROP_POLICIES)}, got {_short(raw['crop'])}")
    try:
        return InputSpec.from_dict(dict(raw))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: checkpoint field 'input_spec' is invalid: {exc}",
                              field="input_spec") from exc


def _check_range(value: int, low: int, high: int, name: str, source: str) -> None:
    if not low <= value <= high:
        _fail(source, name, f"is {value}, outside the supported range {low}..{high}")


def _validate_state_dict(raw: Any, model_config: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(raw, dict):
        _fail(source, "state_dict", f"must be a mapping of tensors, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            _fail(source, "state_dict", f"must map names to dense tensors; entry {_short(key)} is "
                                        f"{type(value).__name__}")
    expected = _expected_tensors(model_config)
    missing = [k for k in expected if k not in raw]
    extra = [k for k in raw if k not in expected]
    if missing:
        _fail(source, "state_dict", f"lacks {len(missing)} tensor(s) of the model {missing[:5]}")
    if extra:
        _fail(source, "state_dict", f"has {len(extra)} tensor(s) the model does not have {extra[:5]}")
    for key, (shape, floating) in expected.items():
        t = raw[key]
        if tuple(t.shape) != shape:
            _fail(source, f"state_dict.{key}", f"has shape {tuple(t.shape)}, the model's is {shape}")
        if t.is_floating_point() != floating or t.is_complex():
            _fail(source, f"state_dict.{key}", f"has dtype {t.dtype}, the model's is "
                                               f"{'floating point' if floating else 'integer'}")
        if floating and not bool(torch.isfinite(t).all()):
            _fail(source, f"state_dict.{key}", "has non-finite values (NaN or inf)")
    return raw


def _expected_tensors(model_config: ModelConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, is floating) of the model's state_dict, from the model built on the meta device
    (shapes only: no memory for weights, so a huge config costs nothing here)."""
    try:
        with torch.device("meta"):
            model = build_any_model(model_config)
    except (RuntimeError, NotImplementedError):
        # A layer whose construction reads values (e.g. .item()) cannot be built on meta: build it for
        # real. The config has passed its bounds, so this is a model of ordinary size.
        model = build_any_model(model_config)
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in model.state_dict().items()}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -------------------------------------------------------------------------------------------- CLI

def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (the checkpoint checksum the info command, exports and caches use)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_checkpoint(path: str | os.PathLike, max_bytes: int = MAX_CHECKPOINT_BYTES) -> str:
    """What ``python -m repflow_core.checkpoint info`` prints: file, model, input spec, training, card."""
    from .model_card import format_card

    path = Path(path)
    raw = load_checkpoint_dict(path, max_bytes)
    ckpt = validate_checkpoint(raw, source=str(path))
    params = sum(t.numel() for t in ckpt.state_dict.values() if t.is_floating_point())
    t = ckpt.training
    train_keys = ("epochs", "best_epoch", "best_val_acc", "train_acc", "train_videos", "val_videos", "test_videos",
                  "weights", "torch")
    lines = [
        f"checkpoint     {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {file_sha256(path)[:16]}...)",
        f"format         {FORMAT_TAG} version {raw['version']}",
        "model          " + ", ".join(f"{k}={v}" for k, v in ckpt.model_config.to_dict().items()),
        f"parameters     {params / 1e6:.2f} M",
        f"labels         ({len(ckpt.labels)}) {', '.join(ckpt.labels)}",
        "input spec     " + ", ".join(f"{k}={v}" for k, v in ckpt.input_spec.to_dict().items()),
        "training       " + (", ".join(f"{k}={t[k]:.4g}" if isinstance(t[k], float) else f"{k}={t[k]}"
                                       for k in train_keys if k in t) or "(no summary)"),
        f"resume state   {'yes' if ckpt.resume is not None else 'no'}",
        "",
        format_card(ckpt.card),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m repflow_core.checkpoint",
                                     description="Inspect a repflow checkpoint (validated in full first).")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the checkpoint's model, input spec, training summary and model card")
    info.add_argument("checkpoint", help="path of the .pt file")
    info.add_argument("--json", action="store_true", help="print the model card alone, as JSON")
    args = parser.parse_args(argv)
    try:
        if args.json:
            ckpt = load_checkpoint(args.checkpoint)
            print(json.dumps(ckpt.card, indent=2, ensure_ascii=False))
        else:
            print(describe_checkpoint(args.checkpoint))
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
