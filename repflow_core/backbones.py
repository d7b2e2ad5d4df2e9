"""ResNet backbones that host the representation-flow layer.

Representation flow (Piergiovanni & Ryoo, CVPR 2019) is a layer inserted *between* the stages of an
ordinary CNN, so the hosting model must be able to run a backbone one stage at a time. This module
provides the backbones used in the paper and its follow-ups, written in plain PyTorch (torchvision is
deliberately not a dependency of this project):

* 2D ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), applied per
  frame to ``(N, 3, H, W)``. Bottleneck blocks put the stride on the 3x3 convolution ("ResNet v1.5"),
  as torchvision does.
* R(2+1)D-18 (Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
  CVPR 2018), applied to clips ``(B, 3, T, H, W)``. Every 3x3x3 convolution is factorised into a
  spatial (1x3x3) and a temporal (3x1x1) convolution whose intermediate width ``midplanes`` keeps the
  parameter count of the full 3D convolution.

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
import math
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "Conv2Plus1D",
    "LoadReport",
    "R2Plus1dStem",
    "ResNet",
    "StagedBackbone",
    "VideoBasicBlock",
    "VideoResNet",
    "build_backbone",
    "load_backbone_weights",
    "r2plus1d_18",
    "resnet18",
    "resnet34",
    "resnet50",
    "scaled_channels",
]

_LOG = logging.getLogger(__name__)

#: Narrowest channel count a width multiplier may produce; fewer channels make BatchNorm statistics
#: and the flow layer's per-channel computation degenerate.
MIN_CHANNELS = 8


def scaled_channels(channels: int, width: float) -> int:
    """Return ``channels * width`` rounded to the nearest int, never below :data:`MIN_CHANNELS`.

    At ``width == 1.0`` this is the identity for every channel count used here, which is what keeps
    torchvision checkpoints loadable.
    """
    return max(MIN_CHANNELS, int(round(channels * width)))


def _check_width(width: float) -> float:
    if not isinstance(width, (int, float)) or isinstance(width, bool):
        raise TypeError(f"width must be a number, got {type(width).__name__}")
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return float(width)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    return num_classes


# --------------------------------------------------------------------------------------------------
# Shared stage interface
# --------------------------------------------------------------------------------------------------


class StagedBackbone(nn.Module):
    """A classifier that can also be run one stage at a time.

    The representation-flow layer is placed after one of the stages (the paper finds after ``layer2``
    or ``layer3`` works best), so the hosting model calls :meth:`forward_stage` for each name in
    :attr:`stage_names` and inserts its own layer in between. :meth:`forward` behaves like the
    corresponding torchvision model: all stages, global average pooling, flatten, ``fc``.

    Subclasses set ``stage_channels`` and ``feature_dim`` and implement :meth:`_run_stage`.
    """

    stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")
    #: False: input is a batch of frames ``(N, C, H, W)``; True: a batch of clips ``(B, C, T, H, W)``.
    is_video: bool = False

    stage_channels: dict[str, int]
    feature_dim: int
    avgpool: nn.Module
    fc: nn.Linear

    @property
    def input_ndim(self) -> int:
        """Number of dimensions of a valid input tensor (4 for frames, 5 for clips)."""
        return 5 if self.is_video else 4

    def forward_stage(self, name: str, x: Tensor) -> Tensor:
        """Run only stage ``name`` (one of :attr:`stage_names`) on ``x``."""
        if name not in self.stage_names:
            raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(self.stage_names)}")
        if x.dim() != self.input_ndim:
            layout = "(B, C, T, H, W)" if self.is_video else "(N, C, H, W)"
            raise ValueError(
                f"{type(self).__name__} expects a {self.input_ndim}-D input {layout}, "
                f"got shape {tuple(x.shape)}"
            )
        return self._run_stage(name, x)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """All stages, then global average pooling, flattened to ``(N, feature_dim)``."""
        for name in self.stage_names:
            x = self.forward_stage(name, x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, ``fc(forward_features(x))``, as torchvision's models compute them."""
        return self.fc(self.forward_features(x))


# --------------------------------------------------------------------------------------------------
# 2D ResNet (He et al. 2016), names as torchvision.models.resnet
# --------------------------------------------------------------------------------------------------


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4; ResNet-50.

    The stride sits on the 3x3 convolution as in torchvision ("ResNet v1.5"), not on the first 1x1
    convolution as in the original paper; the parameter count is the same, the accuracy slightly higher.
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(StagedBackbone):
    """2D ResNet applied frame by frame to ``(N, 3, H, W)``.

    Attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``downsample.0/.1``, ``fc``) match
    ``torchvision.models.ResNet``. The "stem" stage is ``conv1 -> bn1 -> relu -> maxpool``.
    """

    is_video = False

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        width: float = 1.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        width = _check_width(width)
        num_classes = _check_num_classes(num_classes)
        self.width = width

        stem_planes = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(3, stem_planes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage_channels = {"stem": stem_planes}
        self._inplanes = stem_planes
        self.layer1 = self._make_layer(block, scaled_channels(64, width), layers[0], stride=1)
        self.stage_channels["layer1"] = self._inplanes
        self.layer2 = self._make_layer(block, scaled_channels(128, width), layers[1], stride=2)
        self.stage_channels["layer2"] = self._inplanes
        self.layer3 = self._make_layer(block, scaled_channels(256, width), layers[2], stride=2)
        self.stage_channels["layer3"] = self._inplanes
        self.layer4 = self._make_layer(block, scaled_channels(512, width), layers[3], stride=2)
        self.stage_channels["layer4"] = self._inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = self.stage_channels["layer4"]
        self.fc = nn.Linear(self.feature_dim, num_classes)

        # torchvision's init: He (kaiming) normal with fan_out for convolutions, BN as identity.
        # The fc layer keeps nn.Linear's default init, as in torchvision.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules: list[nn.Module] = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        modules.extend(block(self._inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        if name == "stem":
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return getattr(self, name)(x)


def resnet18(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2016); 11,689,512 parameters at ``width=1`` like torchvision's."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width=width, num_classes=num_classes)


def resnet34(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-34 (He et al. 2016); 21,797,672 parameters at ``width=1`` like torchvision's."""
    return ResNet(BasicBlock, (3, 4, 6, 3), width=width, num_classes=num_classes)


def resnet50(width: float = 1.0, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (He et al. 2016, v1.5 strides); 25,557,032 parameters at ``width=1`` like torchvision's."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width=width, num_classes=num_classes)


# --------------------------------------------------------------------------------------------------
# R(2+1)D-18 (Tran et al. 2018), names as torchvision.models.video.resnet
# --------------------------------------------------------------------------------------------------


def _midplanes(inplanes: int, planes: int) -> int:
    """Width of the (2+1)D intermediate space (Tran et al. 2018, Sec. 3.5).

    Chosen so that the spatial 1x3x3 plus temporal 3x1x1 pair has about as many parameters as the
    full 3x3x3 convolution it replaces; same integer formula as torchvision.
    """
    return max(MIN_CHANNELS, (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes))


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factorised into spatial 1x3x3, BN, ReLU, temporal 3x1x1.

    Indices 0-3 are the torchvision sub-module names (``...conv1.0.0.weight`` etc.). The spatial
    convolution carries the spatial stride, the temporal one the temporal stride.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(
                in_planes,
                midplanes,
                kernel_size=(1, 3, 3),
                stride=(1, stride, stride),
                padding=(0, padding, padding),
                bias=False,
            ),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                midplanes,
                out_planes,
                kernel_size=(3, 1, 1),
                stride=(stride, 1, 1),
                padding=(padding, 0, 0),
                bias=False,
            ),
        )


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: spatial 1x7x7 stride (1,2,2) to 45 channels, then temporal 3x1x1 to 64.

    The 45 comes from torchvision's Kinetics-400 model (both are scaled by ``width``). No max-pooling,
    so time is not reduced in the stem.
    """

    def __init__(self, mid_planes: int = 45, out_planes: int = 64) -> None:
        super().__init__(
            nn.Conv3d(3, mid_planes, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_planes, out_planes, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(inplace=True),
        )


class VideoBasicBlock(nn.Module):
    """Residual block of two (2+1)D convolutions (torchvision's video ``BasicBlock``).

    As in torchvision, both convolutions use the ``midplanes`` computed from the block's *input*
    width, which matters for the first block of a stage where ``inplanes != planes``.
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, midplanes, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            Conv2Plus1D(planes, planes, midplanes),
            nn.BatchNorm3d(planes),
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class VideoResNet(StagedBackbone):
    """R(2+1)D video ResNet on clips ``(B, 3, T, H, W)``; names as ``torchvision.models.video.VideoResNet``.

    Stages 2-4 halve time as well as space (stride 2 in the temporal convolution and in the 1x1x1
    projection shortcut), so a clip of T frames leaves ``layer4`` with ``ceil(T / 8)`` time steps.
    """

    is_video = True

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        width: float = 1.0,
        num_classes: int = 400,
    ) -> None:
        super().__init__()
        width = _check_width(width)
        num_classes = _check_num_classes(num_classes)
        self.width = width

        stem_planes = scaled_channels(64, width)
        self.stem = R2Plus1dStem(scaled_channels(45, width), stem_planes)
        self.stage_channels = {"stem": stem_planes}
        self._inplanes = stem_planes
        self.layer1 = self._make_layer(scaled_channels(64, width), layers[0], stride=1)
        self.stage_channels["layer1"] = self._inplanes
        self.layer2 = self._make_layer(scaled_channels(128, width), layers[1], stride=2)
        self.stage_channels["layer2"] = self._inplanes
        self.layer3 = self._make_layer(scaled_channels(256, width), layers[2], stride=2)
        self.stage_channels["layer3"] = self._inplanes
        self.layer4 = self._make_layer(scaled_channels(512, width), layers[3], stride=2)
        self.stage_channels["layer4"] = self._inplanes
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.feature_dim = self.stage_channels["layer4"]
        self.fc = nn.Linear(self.feature_dim, num_classes)

        # torchvision's VideoResNet init: He normal (fan_out) convolutions, BN as identity,
        # fc ~ N(0, 0.01) with zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != planes * VideoBasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self._inplanes,
                    planes * VideoBasicBlock.expansion,
                    kernel_size=1,
                    stride=(stride, stride, stride),
                    bias=False,
                ),
                nn.BatchNorm3d(planes * VideoBasicBlock.expansion),
            )
        modules: list[nn.Module] = [VideoBasicBlock(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * VideoBasicBlock.expansion
        modules.extend(VideoBasicBlock(self._inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        return getattr(self, name)(x)


def r2plus1d_18(width: float = 1.0, num_classes: int = 400) -> VideoResNet:
    """R(2+1)D-18 (Tran et al. 2018); 31,505,325 parameters at ``width=1`` like torchvision's."""
    return VideoResNet((2, 2, 2, 2), width=width, num_classes=num_classes)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

BACKBONES: dict[str, Callable[..., StagedBackbone]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "r2plus1d_18": r2plus1d_18,
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
