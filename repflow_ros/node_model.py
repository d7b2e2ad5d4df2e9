"""The recognizer node's model set-up at configure time (no ROS import): checkpoint, device, precision, clip length.

Kept apart from the node so the checks that turn a parameter into a clear "configure failed: parameter X=..." message
are one function with one error type, and the node only wires the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigureError", "ModelSetup", "prepare_model"]


class ConfigureError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the value."""


@dataclass
class ModelSetup:
    cfg: dict  #: the checked parameters, clip_len and frame_stride resolved from the checkpoint when 0
    checkpoint: Any
    path: str  #: the checkpoint file actually loaded (the packaged default when model_path is empty)
    device: Any  #: torch.device
    device_description: str


def prepare_model(cfg: dict, log: Callable[[str], None]) -> ModelSetup:
    """Load and check the checkpoint on the CPU and resolve the device; raises :class:`ConfigureError`."""
    # Imported here, after the node's cheap parameter checks: torch takes seconds to import.
    from repflow_core.checkpoint import CheckpointError, load_checkpoint
    from repflow_core.devices import DeviceError, check_precision, describe_device, resolve_device
    from repflow_core.recognizer import default_checkpoint

    cfg = dict(cfg)
    try:
        path = cfg["model_path"] or str(default_checkpoint())
    except FileNotFoundError as exc:
        raise ConfigureError(f"parameter model_path='' (the packaged default model): {exc}") from exc
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigureError(f"parameter model_path={path!r}: {exc}") from exc
    except Exception as exc:  # anything else while reading the file
        raise ConfigureError(f"parameter model_path={path!r}: cannot load the checkpoint: {exc}") from exc
    try:
        device = resolve_device(cfg["device"], log=log)
    except DeviceError as exc:
        raise ConfigureError(f"parameter device={cfg['device']!r}: {exc}") from exc
    try:
        check_precision(cfg["precision"], device)  # the one fp16-needs-CUDA rule
    except DeviceError as exc:
        raise ConfigureError(f"parameter precision={cfg['precision']!r}: {exc}") from exc
    spec = checkpoint.input_spec
    consumed = getattr(checkpoint.model_config, "frames_consumed", 0)
    min_frames = (consumed() if callable(consumed) else int(consumed)) + 1
    cfg["clip_len"] = cfg["clip_len"] or int(spec.clip_len)
    cfg["frame_stride"] = cfg["frame_stride"] or int(spec.frame_stride)
    if cfg["clip_len"] < min_frames:
        raise ConfigureError(f"parameter clip_len={cfg['clip_len']} is too short: this model needs at least "
                             f"{min_frames} frames (0 uses the checkpoint's {spec.clip_len})")
    return ModelSetup(cfg, checkpoint, path, device, describe_device(device))
