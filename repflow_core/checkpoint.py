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
    }
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .model import ActionNet, ModelConfig

FORMAT_TAG = "repflow_ros.checkpoint"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("format", "version", "model_config", "labels", "input_spec", "state_dict")

# Kinetics statistics, as used by torchvision's video models.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, incomplete or too new. The message names the file."""


@dataclass
class InputSpec:
    """How frames must be prepared for the model: sampled clip_len frames every frame_stride frames,
    short side resized to resize_short, centre crop to size (H, W), RGB scaled to [0, 1] then
    normalised by mean/std."""

    clip_len: int = 16
    frame_stride: int = 1
    size: tuple[int, int] = (112, 112)
    resize_short: int = 128
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        known = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.size = (int(spec.size[0]), int(spec.size[1]))
        spec.mean = tuple(float(v) for v in spec.mean)  # type: ignore[assignment]
        spec.std = tuple(float(v) for v in spec.std)  # type: ignore[assignment]
        if spec.clip_len < 2 or spec.frame_stride < 1 or min(spec.size) < 8 or spec.resize_short < min(spec.size):
            raise ValueError(f"invalid input spec {data}")
        return spec


@dataclass
class Checkpoint:
    model_config: ModelConfig
    labels: list[str]
    input_spec: InputSpec
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] | None = None

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
        return data

    def build_model(self) -> ActionNet:
        model = ActionNet(self.model_config)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint weights do not fit its model config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a truncated checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    return atomic_save(ckpt.to_dict(), path)


def load_checkpoint_dict(path: str | os.PathLike) -> dict:
    """Read and validate the raw dict; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since PyTorch 1.6; anything else is damaged or not ours.
        raise CheckpointError(f"not a readable checkpoint file: {path} (not a PyTorch archive: corrupt, truncated "
                              "or another format)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain data "
            f"(weights_only loading); only repflow checkpoints are accepted ({str(exc).splitlines()[0]})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"not a readable checkpoint file: {path} ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{path} is not a repflow checkpoint (no format tag {FORMAT_TAG!r}); "
            "to use torchvision backbone weights, pass them to training as --backbone-weights"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, newer than this code reads ({FORMAT_VERSION}); "
            "upgrade repflow_ros"
        )
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise CheckpointError(f"{path} lacks the checkpoint field {name!r}")
    return data


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    data = load_checkpoint_dict(path)
    try:
        model_config = ModelConfig.from_dict(dict(data["model_config"]))
        input_spec = InputSpec.from_dict(dict(data["input_spec"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an invalid model_config or input_spec: {exc}") from exc
    labels = [str(label) for label in data["labels"]]
    if len(labels) != model_config.num_classes:
        raise CheckpointError(f"{path} has {len(labels)} labels but its model has {model_config.num_classes} classes")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has a state_dict that is not a mapping of tensors")
    return Checkpoint(
        model_config=model_config,
        labels=labels,
        input_spec=input_spec,
        state_dict=state,
        training=dict(data.get("training") or {}),
        resume=data.get("resume"),
    )
