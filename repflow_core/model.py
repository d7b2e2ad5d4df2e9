"""ActionNet: a backbone with a representation-flow block after one of its stages (paper Sec. 3.3, Fig. 1).

The network takes a clip (B, 3, T, H, W), runs the backbone up to ``flow_after``, computes the flow of
the intermediate features between consecutive frames, continues through the remaining stages, and
classifies every remaining frame; the per-frame logits are averaged over time (Sec. 3.3, appendix A:
averaging predictions over 16 frames beat stacking flows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, build_backbone
from .flow import FlowBlock, FlowConvFlow

FLOW_KINDS = ("none", "single", "fcf")
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclass
class ModelConfig:
    """Everything needed to rebuild an ActionNet; stored in every checkpoint."""

    backbone: str = "resnet18"
    width: float = 1.0
    num_classes: int = 10
    flow: str = "single"  # none | single | fcf (flow-conv-flow, Table 5)
    flow_after: str = "layer2"  # the paper's "after block 3" (Tables 1, 6, 7)
    flow_channels: int = 32  # C' (appendix A)
    iterations: int = 10  # Table 3: 10 or 20
    gradient: str = "sobel"  # Eqs. 8, 10; or "central" (TVNet)
    learn_params: bool = True  # theta, lambda, tau (Table 2)
    learn_divergence: bool = True
    learn_gradient: bool = False
    dropout: float = 0.5  # appendix A: 0.5 (Kinetics), 0.8 (HMDB)

    def validate(self) -> "ModelConfig":
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.flow not in FLOW_KINDS:
            raise ValueError(f"unknown flow {self.flow!r}; choose one of {FLOW_KINDS}")
        if self.flow_after not in STAGES:
            raise ValueError(f"unknown flow_after {self.flow_after!r}; choose one of {STAGES}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.iterations < 1 or self.flow_channels < 1:
            raise ValueError("iterations and flow_channels must be >= 1")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data).validate()

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_consumed(self) -> int:
        """How many frames the flow blocks remove from the time axis (1 per flow layer)."""
        return {"none": 0, "single": 1, "fcf": 2}[self.flow]


class ActionNet(nn.Module):
    """Backbone + flow block(s) after a named stage + per-frame classifier averaged over time."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.backbone = build_backbone(config.backbone, width=config.width, num_classes=config.num_classes)
        self.is_video = bool(self.backbone.is_video)
        channels = self.backbone.stage_channels[config.flow_after]
        flow_kwargs = dict(
            flow_channels=config.flow_channels,
            iterations=config.iterations,
            gradient=config.gradient,
            learn_params=config.learn_params,
            learn_divergence=config.learn_divergence,
            learn_gradient=config.learn_gradient,
        )
        if config.flow == "single":
            self.flow: nn.Module | None = FlowBlock(channels, **flow_kwargs)
        elif config.flow == "fcf":
            self.flow = FlowConvFlow(channels, **flow_kwargs)
        else:
            self.flow = None
        self.dropout = nn.Dropout(config.dropout)

    @property
    def min_frames(self) -> int:
        return self.config.frames_consumed + 1

    def _to_frames(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(b * t, c, h, w)

    @staticmethod
    def _to_clip(x: torch.Tensor, b: int) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(b, n // b, c, h, w).transpose(1, 2)

    def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised clip -> per-frame logits (B, T', num_classes)."""
        if clip.dim() != 5:
            raise ValueError(f"ActionNet expects (B, 3, T, H, W), got shape {tuple(clip.shape)}")
        b, t = clip.shape[0], clip.shape[2]
        if t < self.min_frames:
            raise ValueError(f"this model needs at least {self.min_frames} frames, got {t}")
        x = clip if self.is_video else self._to_frames(clip)
        for name in self.backbone.stage_names:
            x = self.backbone.forward_stage(name, x)
            if name == self.config.flow_after and self.flow is not None:
                x = self.flow(x if self.is_video else self._to_clip(x, b))
                if not self.is_video:
                    x = self._to_frames(x)
        if self.is_video:
            feats = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T', C): spatial pool, keep time
        else:
            feats = F.adaptive_avg_pool2d(x, 1).flatten(1).view(b, -1, x.shape[1])
        return self.backbone.fc(self.dropout(feats))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> logits (B, num_classes): per-frame logits averaged over time (Sec. 3.3)."""
        return self.frame_logits(clip).mean(dim=1)


def build_model(config: ModelConfig) -> ActionNet:
    return ActionNet(config)
