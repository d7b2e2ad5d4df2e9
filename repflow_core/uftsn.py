"""UF-TSN: a two-stream network whose temporal stream learns optical flow without labels (related paper).

The poster (``shared/papers/uf-tsn-poster.md``) describes:

- a *spatial stream*: a ResNet on the RGB frames;
- a *temporal stream*: a shallow feature pyramid on each frame, and per level, coarse to fine, the second
  frame's features warped by the upsampled coarser flow, ``q2_hat(x) = q2(x + up(U^{l+1})(x))``, a cost volume
  ``CostVolume(x1, x2) = q1(x1)^T q2_hat(x2) / N`` (N = channel count) over a small displacement range, and a
  decoder that refines the flow; then a classifier on the stacked flows;
- unsupervised training of the flow by photometric L1 and census losses and the edge-aware smoothness, at
  every level (``L = (l1 L_diff + l2 L_census + l3 L_smooth) / M``, :mod:`repflow_core.motion_losses`);
- late fusion of the two streams' scores, and three training stages: the flow estimator alone
  (unsupervised), then the classifier on its flows, then everything end to end.

:class:`UFTSN` follows the same contract as :class:`repflow_core.model.ActionNet`: a normalised clip
(B, 3, T, H, W) in, logits (B, K) out (the mean of the two streams' logits: late fusion), so the Recognizer, the
trainer and export treat it like any model. After a forward pass in training mode it holds the weighted
unsupervised terms of that pass in :attr:`UFTSN.extra_losses`, which the trainer adds to the cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import motion_losses as ml
from .backbones import build_backbone

STAGES = ("flow", "classifier", "end_to_end")


def poster_weights() -> ml.MotionLossWeights:
    """The unsupervised terms UF-TSN's estimator trains with by default: L1 + census + edge-aware smoothness."""
    return ml.MotionLossWeights(photometric=1.0, census=1.0, smoothness=0.5, edge_aware=True, edge_weight=10.0)

# Normalised frames are in units of the dataset std (about 0.23 of the [0, 1] range): this brings their
# differences to the 0-255 units the census transform's 0.81 constant expects.
_CENSUS_SCALE = 255.0 * 0.23


def cost_volume(q1: torch.Tensor, q2: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """The poster's cost volume: for every displacement d in [-r, r]^2, ``q1(x)^T q2(x + d) / C``.

    (N, C, H, W) x2 -> (N, (2r+1)^2, H, W); q2 is zero outside the frame.
    """
    r = max_displacement
    c, h, w = q1.shape[1:]
    padded = F.pad(q2, (r, r, r, r))
    costs = [
        (q1 * padded[:, :, dy:dy + h, dx:dx + w]).sum(1, keepdim=True)
        for dy in range(2 * r + 1)
        for dx in range(2 * r + 1)
    ]
    return torch.cat(costs, 1) / c


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class FlowEstimator(nn.Module):
    """Shallow feature pyramid + coarse-to-fine flow with warping and a cost volume per level.

    ``levels`` feature maps at 1/2, 1/4, ... of the input size; the flow is estimated at the coarsest level
    first and refined at each finer one. :meth:`forward` returns the flows finest first, each (N, 2, h, w)
    in pixels *of its own level* (x along W, y along H, the convention of :mod:`repflow_core.motion_losses`).
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 48), max_displacement: int = 3,
                 decoder_channels: int = 32) -> None:
        super().__init__()
        if not channels or max_displacement < 1:
            raise ValueError("FlowEstimator needs at least one level and max_displacement >= 1")
        self.max_displacement = max_displacement
        self.pyramid = nn.ModuleList()
        cin = 3
        for cout in channels:
            self.pyramid.append(nn.Sequential(_conv(cin, cout, 2), _conv(cout, cout)))
            cin = cout
        cost = (2 * max_displacement + 1) ** 2
        self.decoders = nn.ModuleList(
            nn.Sequential(_conv(cost + c + 2, decoder_channels), _conv(decoder_channels, decoder_channels),
                          nn.Conv2d(decoder_channels, 2, 3, 1, 1))
            for c in channels
        )

    @property
    def levels(self) -> int:
        return len(self.pyramid)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], images
        for stage in self.pyramid:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, i1: torch.Tensor, i2: torch.Tensor) -> list[torch.Tensor]:
        """Frames (N, 3, H, W) x2 -> flows from I1 to I2, finest level first."""
        both = self.features(torch.cat([i1, i2]))
        n = i1.shape[0]
        q1s, q2s = [f[:n] for f in both], [f[n:] for f in both]
        flow = None
        flows = []
        for level in reversed(range(self.levels)):
            q1, q2 = q1s[level], q2s[level]
            if flow is None:
                flow = q1.new_zeros(n, 2, *q1.shape[-2:])
            else:  # up(U^{l+1}): twice the size, twice the pixels
                flow = 2.0 * F.interpolate(flow, size=q1.shape[-2:], mode="bilinear", align_corners=False)
            warped, _ = ml.backward_warp(q2, flow)
            volume = F.leaky_relu(cost_volume(q1, warped, self.max_displacement), 0.1)
            flow = flow + self.decoders[level](torch.cat([volume, q1, flow], 1))
            flows.append(flow)
        return flows[::-1]


def pyramid_loss(i1: torch.Tensor, i2: torch.Tensor, flows: list[torch.Tensor],
                 weights: ml.MotionLossWeights) -> dict[str, torch.Tensor]:
    """Multi-scale unsupervised loss: the terms of :func:`motion_loss_terms` at every level (frames
    area-downsampled to the level), averaged over the M levels as in the poster's ``L = (...) / M``."""
    totals: dict[str, torch.Tensor] = {}
    for flow in flows:
        size = flow.shape[-2:]
        a = F.interpolate(i1, size=size, mode="area")
        b = F.interpolate(i2, size=size, mode="area")
        for name, value in _level_terms(a, b, flow, weights).items():
            totals[name] = totals.get(name, 0.0) + value / len(flows)
    return totals


def _level_terms(a, b, flow, weights: ml.MotionLossWeights) -> dict[str, torch.Tensor]:
    terms = {}
    if weights.photometric > 0:
        terms["photometric"] = weights.photometric * ml.photometric_l1(a, b, flow)
    if weights.census > 0:
        terms["census"] = weights.census * ml.census_loss(a, b, flow, radius=2 if min(a.shape[-2:]) > 8 else 1,
                                                          scale=_CENSUS_SCALE)
    if weights.smoothness > 0:
        terms["smoothness"] = weights.smoothness * ml.smoothness_edge_aware(flow, a, weights.edge_weight)
    return terms


class UFTSN(nn.Module):
    """Spatial RGB stream + unsupervised-flow temporal stream, late fusion of their logits.

    Args:
        num_classes: K.
        backbone: the 2D ResNet of both streams' classifiers (``resnet18``, ``resnet34``, ``resnet50``).
        width: width multiplier of those ResNets.
        flow_weights: weights of the unsupervised terms (the poster's l1, l2, l3); all 0 = none computed.
        stage: ``flow`` (only the estimator learns, from the unsupervised loss), ``classifier`` (the
            estimator is frozen, the classifiers learn from the labels) or ``end_to_end`` (everything, the
            cross-entropy plus the unsupervised loss).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet18", width: float = 1.0, dropout: float = 0.5,
                 flow_weights: ml.MotionLossWeights | None = None, stage: str = "end_to_end",
                 estimator: FlowEstimator | None = None) -> None:
        super().__init__()
        self.spatial = build_backbone(backbone, width=width, num_classes=num_classes)
        if getattr(self.spatial, "is_video", False):
            raise ValueError(f"UF-TSN needs a 2D backbone, got {backbone!r}")
        self.estimator = estimator or FlowEstimator()
        self.temporal = build_backbone(backbone, width=width, num_classes=num_classes)
        old = self.temporal.conv1
        self.temporal.conv1 = nn.Conv2d(2, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.flow_weights = flow_weights or poster_weights()
        self.extra_losses: dict[str, torch.Tensor] = {}
        self.stage = "end_to_end"
        self.set_stage(stage)

    def set_stage(self, stage: str) -> None:
        """Which parts learn (the poster's three stages); see the class docstring."""
        if stage not in STAGES:
            raise ValueError(f"unknown UF-TSN stage {stage!r}; choose one of {STAGES}")
        self.stage = stage
        for p in self.estimator.parameters():
            p.requires_grad_(stage != "classifier")
        for module in (self.spatial, self.temporal):
            for p in module.parameters():
                p.requires_grad_(stage != "flow")

    @staticmethod
    def _classify(net, frames: torch.Tensor, b: int, dropout: nn.Module) -> torch.Tensor:
        x = frames
        for name in net.stage_names:
            x = net.forward_stage(name, x)
        feats = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return net.fc(dropout(feats)).view(b, -1, net.fc.out_features).mean(1)

    def flows(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, T, H, W) -> the estimator's flows of the T-1 consecutive pairs, finest level first."""
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2)
        i1 = frames[:, :-1].reshape(-1, c, h, w)
        i2 = frames[:, 1:].reshape(-1, c, h, w)
        flows = self.estimator(i1, i2)
        if self.training and self.stage != "classifier" and self.flow_weights.active:
            self.extra_losses = pyramid_loss(i1, i2, flows, self.flow_weights)
        else:
            self.extra_losses = {}
        return flows

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dim() != 5 or clip.shape[2] < 2:
            raise ValueError(f"UF-TSN expects (B, 3, T>=2, H, W), got shape {tuple(clip.shape)}")
        b, c, t, h, w = clip.shape
        flow = self.flows(clip)[0]
        if self.stage == "classifier":
            flow = flow.detach()
        spatial = self._classify(self.spatial, clip.transpose(1, 2).reshape(b * t, c, h, w), b, self.dropout)
        temporal = self._classify(self.temporal, flow, b, self.dropout)
        return 0.5 * (spatial + temporal)  # late fusion of the two streams' scores


def build_any_model(config, flow_weights: ml.MotionLossWeights | None = None) -> nn.Module:
    """The model a :class:`~repflow_core.model.ModelConfig` describes: :class:`UFTSN` for ``motion: uftsn``
    (backbone, width, dropout and num_classes from the config; ``flow_weights``: its unsupervised terms,
    default the poster's), else :class:`~repflow_core.model.ActionNet`. Checkpoints and training build
    through here so that both kinds load (the import is local: model.py must not depend on this module)."""
    if getattr(config, "motion", "flow") == "uftsn":
        config.validate()
        return UFTSN(config.num_classes, backbone=config.backbone, width=config.width, dropout=config.dropout,
                     flow_weights=flow_weights)
    from .model import ActionNet

    return ActionNet(config)
