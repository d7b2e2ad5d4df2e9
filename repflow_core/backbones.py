"""ResNet backbones that host the representation-flow layer.

Representation flow (Piergiovanni & Ryoo, CVPR 2019) is a layer inserted *between* the stages of an
ordinary CNN, so the hosting model must be able to run a backbone one stage at a time. This module
provides the backbones used in the paper and its follow-ups, written in plain PyTorch (torchvision is
deliberately not a dependency of this project):

* 2D ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), applied per
  frame to ``(N, 3, H, W)``. Bottleneck blocks put the stride on the 3x3 convolution ("ResNet v1.5"),
  as torchvision does.
* R(2+1)D-18 and the 3D ResNet-18 ``r3d_18`` (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
  Action Recognition", CVPR 2018), applied to clips ``(B, 3, T, H, W)``. In R(2+1)D every 3x3x3 convolution
  is factorised into a spatial (1x3x3) and a temporal (3x1x1) convolution whose intermediate width
  ``midplanes`` keeps the parameter count of the full 3D convolution; r3d_18 keeps the full 3x3x3 ones.

Parameter and buffer names follow ``torchvision.models.resnet`` and ``torchvision.models.video.resnet``
exactly, so at ``width=1.0`` a torchvision ``state_dict`` file (ImageNet or Kinetics-400 weights) loads
with :func:`load_backbone_weights`. A ``width`` multiplier scales every channel count, keeping the key
names, so that small models can be trained and tested on a CPU.

Every backbone exposes the same stage interface (see :class:`StagedBackbone`): ``stage_names``,
``forward_stage(name, x)``, ``stage_channels``, ``feature_dim``, ``is_video``, ``forward_features`` and
``forward``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# The models live in three modules (each under ~300 lines); this one re-exports them with the registry and
# the weight loading, so ``from repflow_core.backbones import ...`` is the one public import path.
from .backbones_2d import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .backbones_common import MIN_CHANNELS, StagedBackbone, scaled_channels
from .backbones_video import (
    BasicStem3D,
    Conv2Plus1D,
    Conv3DSimple,
    R2Plus1dStem,
    VideoBasicBlock,
    VideoResNet,
    r2plus1d_18,
    r3d_18,
)

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "BasicStem3D",
    "Bottleneck",
    "Conv2Plus1D",
    "Conv3DSimple",
    "MIN_CHANNELS",
    "LoadReport",
    "R2Plus1dStem",
    "ResNet",
    "StagedBackbone",
    "VideoBasicBlock",
    "VideoResNet",
    "build_backbone",
    "load_backbone_weights",
    "r2plus1d_18",
    "r3d_18",
    "resnet18",
    "resnet34",
    "resnet50",
    "scaled_channels",
]

_LOG = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

BACKBONES: dict[str, Callable[..., StagedBackbone]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "r2plus1d_18": r2plus1d_18,
    "r3d_18": r3d_18,
}


def build_backbone(name: str, width: float = 1.0, num_classes: int | None = None) -> StagedBackbone:
    """Build backbone ``name`` from :data:`BACKBONES`.

    ``num_classes=None`` keeps the builder's torchvision default (1000 for the ImageNet ResNets, 400
    for the Kinetics R(2+1)D), so that a torchvision checkpoint's fc also loads.
    """
    try:
        builder = BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {name!r}; valid choices: {', '.join(sorted(BACKBONES))}") from None
    if num_classes is None:
        return builder(width=width)
    return builder(width=width, num_classes=num_classes)


# --------------------------------------------------------------------------------------------------
# Loading checkpoints
# --------------------------------------------------------------------------------------------------

_DDP_PREFIX = "module."
_NESTED_STATE_KEYS = ("state_dict", "model")


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did.

    Keys in ``missing`` and ``mismatched`` are the module's own names (including ``prefix``); keys in
    ``unexpected`` are the file's names after stripping a leading ``module.``.
    """

    #: Module keys (under ``prefix``) that the file did not provide; they keep their current values.
    missing: list[str] = field(default_factory=list)
    #: File keys with no counterpart in the module; ignored.
    unexpected: list[str] = field(default_factory=list)
    #: Module keys present in the file with a different shape (another class count, another width);
    #: skipped, they keep their current values.
    mismatched: list[str] = field(default_factory=list)

    @property
    def loaded_all(self) -> bool:
        """True when every targeted tensor came from the file."""
        return not (self.missing or self.mismatched)


def _extract_state_dict(obj: object, path: str) -> dict[str, Tensor]:
    """Find the tensors in a loaded checkpoint: a raw state_dict or one under "state_dict"/"model"."""
    if isinstance(obj, Mapping):
        for key in _NESTED_STATE_KEYS:
            nested = obj.get(key)
            if isinstance(nested, Mapping):
                obj = nested
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict of tensors")
    tensors: dict[str, Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, Tensor):
            tensors[key[len(_DDP_PREFIX):] if key.startswith(_DDP_PREFIX) else key] = value
    if not tensors:
        raise ValueError(
            f"{path}: holds no tensors (expected a state_dict, or a dict with one under "
            f"{' or '.join(repr(k) for k in _NESTED_STATE_KEYS)})"
        )
    return tensors


def load_backbone_weights(
    module: nn.Module,
    path: str | os.PathLike[str],
    *,
    prefix: str = "",
    skip_mismatched_fc: bool = True,
) -> LoadReport:
    """Copy the tensors of a checkpoint file (e.g. a torchvision ``state_dict``) into ``module``.

    The file is read with ``torch.load(..., weights_only=True)``: checkpoints come from the internet,
    and a full unpickle could run arbitrary code, so files holding anything but tensors and plain
    containers are refused with a :class:`ValueError` (re-export such a file as a plain state_dict).

    Args:
        module: the model to fill, modified in place.
        path: the checkpoint file. It may hold a raw state_dict or a dict with one under
            ``"state_dict"`` or ``"model"``; a leading ``module.`` (from DistributedDataParallel) is
            stripped from each key; entries that are not tensors (epoch counters etc.) are ignored.
        prefix: when the backbone sits inside a larger model (e.g. ``"backbone."``), only the keys of
            ``module`` under this prefix are targets, and file key ``k`` goes to ``prefix + k``.
        skip_mismatched_fc: with True (the default) tensors whose shape differs from the module's are
            skipped and listed in ``LoadReport.mismatched``; this is the usual case for the ``fc`` of
            a checkpoint trained on another class count. A mismatch anywhere else means the file does
            not fit the architecture (e.g. ``width != 1``) and is also logged as a warning. With False
            any shape mismatch raises :class:`ValueError`.

    Returns:
        A :class:`LoadReport` of missing, unexpected and mismatched keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be loaded with ``weights_only=True``, holds no tensors, or (with
            ``skip_mismatched_fc=False``) a tensor's shape differs.
    """
    path_str = os.fspath(path)
    if not os.path.isfile(path_str):
        raise FileNotFoundError(f"backbone weights file not found: {path_str}")
    try:
        obj = torch.load(path_str, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path_str}: refused to load with weights_only=True; the file holds Python objects other "
            f"than tensors and plain containers, which could run code when unpickled (or it is not a "
            f"PyTorch checkpoint). Re-export the weights with torch.save(model.state_dict(), path)."
        ) from exc
    except OSError:
        raise
    except Exception as exc:  # torch.load surfaces corrupt data as assorted errors (IndexError, RuntimeError...)
        raise ValueError(f"{path_str}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    source = _extract_state_dict(obj, path_str)

    targets = {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    fc_prefix = f"{prefix}fc."
    loadable: dict[str, Tensor] = {}
    report = LoadReport()
    for key, tensor in source.items():
        target_key = prefix + key
        if target_key not in targets:
            report.unexpected.append(key)
        elif tensor.shape != targets[target_key].shape:
            report.mismatched.append(target_key)
        else:
            loadable[target_key] = tensor

    if report.mismatched:
        details = ", ".join(
            f"{k} (file {tuple(source[k[len(prefix):]].shape)}, model {tuple(targets[k].shape)})"
            for k in report.mismatched
        )
        if not skip_mismatched_fc:
            raise ValueError(f"{path_str}: tensor shapes differ from the model: {details}")
        if any(not k.startswith(fc_prefix) for k in report.mismatched):
            _LOG.warning("%s: skipped tensors whose shape differs from the model: %s", path_str, details)

    result = module.load_state_dict(loadable, strict=False)
    mismatched = set(report.mismatched)
    # BatchNorm fills in a missing num_batches_tracked itself (old torchvision files lack it), so the
    # module's own account of what is missing is used rather than a plain set difference.
    report.missing = [k for k in result.missing_keys if k.startswith(prefix) and k not in mismatched]
    return report
