"""Shared parts of the staged backbones: the width multiplier and the stage interface (:class:`StagedBackbone`).

See :mod:`repflow_core.backbones` for the models and why they are staged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

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
