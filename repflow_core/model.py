"""ActionNet: a backbone with a representation-flow block after one of its stages (paper Sec. 3.3, Fig. 1).

The network takes a clip (B, 3, T, H, W), runs the backbone up to ``flow_after``, computes the flow of
the intermediate features between consecutive frames, continues through the remaining stages, and
classifies every remaining frame; the per-frame logits are averaged over time (Sec. 3.3, appendix A:
averaging predictions over 16 frames beat stacking flows).

The paper's other variants (``repflow_core.fusion`` holds the blocks and the shape conventions):

* ``flow_after: input`` -- the flow layer on the normalised RGB frames, before any convolution (Table 1).
* ``fusion`` (Fig. 2, Table 4) -- a second, RGB-only copy of the backbone's first stages runs on the clip and
  its features are combined with the flow stream's after stage ``fusion_after`` (``add``, ``multiply``,
  ``layer_multiply``, ``concat``); the stages after that point are shared. ``late``: two whole networks (RGB
  only, and with flow) whose per-frame class probabilities are averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES, build_backbone
from .flow import FlowBlock, FlowConvFlow, iter_flow_layers
from .fusion import FUSIONS, MID_FUSIONS, InputFlow, InputFlowConvFlow, StreamFusion, late_fusion

LEGACY_GRADIENT = "sobel"  # the gradient kind of model configs that do not name one
FLOW_KINDS = ("none", "single", "fcf")
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
LOCATIONS = ("input",) + STAGES  # where a flow layer or a fusion can sit: before the stem, or after a stage
GLOBAL_MOTIONS = ("none", "median")  # flow_global_motion: what is removed from every flow layer's output
MAX_PYRAMID_WARPS = 16  # each warp is a full Algorithm 1 solve per level; a checkpoint cannot ask for more


@dataclass
class ModelConfig:
    """Everything needed to rebuild an ActionNet; stored in every checkpoint.

    Checkpoints written before a field existed load with its default (``fusion: none`` etc.).
    """

    backbone: str = "resnet18"
    width: float = 1.0
    num_classes: int = 10
    flow: str = "single"  # none | single | fcf (flow-conv-flow, Table 5)
    flow_after: str = "layer2"  # input | stem | layer1..layer4; layer2 = the paper's "after block 3" (Tables 1, 6, 7)
    flow_channels: int = 32  # C' (appendix A)
    iterations: int = 10  # Table 3: 10 or 20
    # sobel_fd: Sobel image gradient (Eq. 8), forward-difference grad u adjoint to Eq. 9's divergence: converges
    # with iterations (issue 16). "sobel" (Eqs. 8, 10 literally; the default before, and of checkpoints that
    # lack this field: see from_dict) or "central" (TVNet).
    gradient: str = "sobel_fd"
    pyramid_levels: int = 1  # flow layer coarse to fine with warping (1 = Algorithm 1 at one scale)
    # with pyramid_levels > 1 (RepresentationFlow's docstring): linearisations per level, what each solve estimates
    # (residual increment | total flow, TV-L1 style) and the warp's interpolation. Older checkpoints: 1 / residual /
    # bilinear, the behaviour before these fields. TV-L1-like accuracy: 2 / total / bicubic (BENCHMARKS.md).
    pyramid_warps: int = 1
    pyramid_solve: str = "residual"
    pyramid_interp: str = "bilinear"
    learn_params: bool = True  # theta, lambda, tau (Table 2)
    learn_divergence: bool = True
    learn_gradient: bool = False
    dropout: float = 0.5  # appendix A: 0.5 (Kinetics), 0.8 (HMDB)
    input_flow_channels: int = 0  # flow_after=input: 0 = flow of the 3 colour channels; N = 1x1 conv 3 -> N first
    fusion: str = "none"  # none | late | add | multiply | layer_multiply | concat (Fig. 2, Table 4)
    fusion_after: str = ""  # where add/multiply/layer_multiply/concat combine the streams; "" = at flow_after
    # flow: this ActionNet; uftsn: repflow_core.uftsn.UFTSN (backbone, width, dropout, num_classes used; the flow
    # and fusion fields ignored). Built by repflow_core.uftsn.build_any_model. Older checkpoints: "flow".
    motion: str = "flow"
    # none | median: subtract each flow channel's spatial median (per frame pair) from every representation-flow
    # layer's output, a global camera motion compensation (issue 9; see subtract_global_motion). Older
    # checkpoints: "none", so they predict exactly as before.
    flow_global_motion: str = "none"

    def validate(self) -> ModelConfig:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.flow not in FLOW_KINDS:
            raise ValueError(f"unknown flow {self.flow!r}; choose one of {FLOW_KINDS}")
        if self.flow_after not in LOCATIONS:
            raise ValueError(f"unknown flow_after {self.flow_after!r}; choose one of {LOCATIONS}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.iterations < 1 or self.flow_channels < 1:
            raise ValueError("iterations and flow_channels must be >= 1")
        self._validate_pyramid()
        if self.input_flow_channels < 0:
            raise ValueError(f"input_flow_channels must be >= 0 (0 = no reduction), got {self.input_flow_channels}")
        self._validate_fusion()
        if self.motion not in ("flow", "uftsn"):
            raise ValueError(f"unknown motion {self.motion!r}; choose 'flow' (representation flow) or 'uftsn'")
        if self.flow_global_motion not in GLOBAL_MOTIONS:
            raise ValueError(f"unknown flow_global_motion {self.flow_global_motion!r}; choose one of {GLOBAL_MOTIONS}")
        if self.flow_global_motion != "none" and (self.flow == "none" or self.motion != "flow"):
            raise ValueError(f"flow_global_motion {self.flow_global_motion!r} acts on representation-flow layers, "
                             f"but this model has none (flow {self.flow!r}, motion {self.motion!r})")
        return self

    def _validate_pyramid(self) -> None:
        if self.pyramid_levels < 1 or not 1 <= self.pyramid_warps <= MAX_PYRAMID_WARPS:
            raise ValueError(f"pyramid_levels must be >= 1 and pyramid_warps in 1..{MAX_PYRAMID_WARPS}, got "
                             f"{self.pyramid_levels} and {self.pyramid_warps}")
        if self.pyramid_solve not in ("residual", "total"):
            raise ValueError(f"unknown pyramid_solve {self.pyramid_solve!r}; choose 'residual' or 'total'")
        if self.pyramid_interp not in ("bilinear", "bicubic"):
            raise ValueError(f"unknown pyramid_interp {self.pyramid_interp!r}; choose 'bilinear' or 'bicubic'")

    def _validate_fusion(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {FUSIONS}")
        if self.fusion_after not in ("",) + LOCATIONS:
            raise ValueError(f"unknown fusion_after {self.fusion_after!r}; choose one of {LOCATIONS} "
                             "or '' (= flow_after)")
        if self.fusion != "none" and self.flow == "none":
            raise ValueError(f"fusion {self.fusion!r} combines an RGB and a flow stream, but flow is 'none'")
        if self.fusion in MID_FUSIONS and LOCATIONS.index(self.fusion_point) < LOCATIONS.index(self.flow_after):
            raise ValueError(f"fusion_after {self.fusion_after!r} comes before flow_after {self.flow_after!r}: "
                             "the streams can only be fused where the flow stream exists")

    @property
    def fusion_point(self) -> str:
        """The location where a feature fusion combines the streams (``fusion_after`` or ``flow_after``)."""
        return self.fusion_after or self.flow_after

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields {sorted(unknown)}; known: {sorted(known)}")
        # A config written before the gradient kind was recorded used the then-default Sobel layer: keep it, so
        # old checkpoints rebuild and predict exactly as before.
        data = {"gradient": LEGACY_GRADIENT, **data}
        return cls(**data).validate()

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_consumed(self) -> int:
        """How many frames the flow blocks remove from the time axis (1 per flow layer)."""
        return {"none": 0, "single": 1, "fcf": 2}[self.flow]


def subtract_global_motion(flow: torch.Tensor) -> torch.Tensor:
    """Flow (B, 2C, T', H, W) minus each channel's spatial median, per frame pair: camera motion compensation.

    Why: a camera pan (a robot turning its head or driving) adds about the same displacement to every pixel of a
    frame pair, so it moves the whole flow field of every channel (u_x, u_y of Eqs. 2-10) by a constant that
    says nothing about the person's action. The median over H x W is that constant as long as the person (and
    whatever else moves on its own) covers under half of the frame: unlike the mean, it ignores the person's
    own motion entirely then, so a still camera leaves the person's flow unchanged (its median is ~0). A
    constant flow c added to every pixel is removed exactly: median(u + c) = median(u) + c.

    The median is written as the ((N-1)//2 + 1)-th smallest value from ``topk`` (torch.median's value, the
    lower median for even N, and its gradient reaches the same element): ONNX has no Median and the TorchScript
    exporter cannot export aten::median or aten::kthvalue, but topk exports as TopK.
    """
    flat = flow.flatten(3)
    k = (flat.shape[-1] - 1) // 2 + 1
    median = flat.topk(k, dim=-1, largest=False, sorted=True).values[..., -1:]
    return (flat - median).view_as(flow)


def _global_motion_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on a RepresentationFlow layer: its output with the global motion removed. A module-level
    function (not a closure), so a model deep-copied (EMA) or pickled keeps a working hook."""
    return subtract_global_motion(output)


class ActionNet(nn.Module):
    """Backbone + flow block(s) after a named stage (or on the input) + per-frame classifier averaged over time.

    Submodules: ``backbone`` (the flow stream, and the shared trunk after a fusion), ``flow``, and with a fusion
    ``rgb_backbone`` (the RGB stream: only its stages up to ``fusion_after``, or a whole network for ``late``)
    and ``fuse`` (:class:`~repflow_core.fusion.StreamFusion`). Without fusion the state_dict keys are those of
    the plain model, so older checkpoints load unchanged.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.backbone = build_backbone(config.backbone, width=config.width, num_classes=config.num_classes)
        self.is_video = bool(self.backbone.is_video)
        self.flow = self._build_flow(config)
        self.rgb_backbone: nn.Module | None = None
        self.fuse: StreamFusion | None = None
        if config.fusion == "late":
            self.rgb_backbone = build_backbone(config.backbone, width=config.width, num_classes=config.num_classes)
        elif config.fusion in MID_FUSIONS:
            point = config.fusion_point
            self.fuse = StreamFusion(config.fusion, 3 if point == "input" else self.backbone.stage_channels[point])
            if point != "input":
                self.rgb_backbone = self._truncated_backbone(config, point)
        self.dropout = nn.Dropout(config.dropout)
        if config.flow_global_motion == "median":
            # A forward hook on every flow layer (FcF: both), so the layer itself, its fused native / Triton
            # kernels and the state_dict keys stay exactly as without the option; the subtraction runs right
            # after the layer, before the block's projection (the rest of the network). Hooks added later (the
            # joint loss's) see the flow after the subtraction.
            for layer in iter_flow_layers(self):
                layer.register_forward_hook(_global_motion_hook)

    def _build_flow(self, config: ModelConfig) -> nn.Module | None:
        kwargs = dict(iterations=config.iterations, gradient=config.gradient, learn_params=config.learn_params,
                      learn_divergence=config.learn_divergence, learn_gradient=config.learn_gradient,
                      pyramid_levels=config.pyramid_levels, pyramid_warps=config.pyramid_warps,
                      pyramid_solve=config.pyramid_solve, pyramid_interp=config.pyramid_interp)
        if config.flow == "none":
            return None
        if config.flow_after == "input":
            block = InputFlow if config.flow == "single" else InputFlowConvFlow
            return block(3, config.input_flow_channels, **kwargs)
        channels = self.backbone.stage_channels[config.flow_after]
        block = FlowBlock if config.flow == "single" else FlowConvFlow
        return block(channels, flow_channels=config.flow_channels, **kwargs)

    @staticmethod
    def _truncated_backbone(config: ModelConfig, last_stage: str) -> nn.Module:
        """The RGB stream of a feature fusion: the backbone's stages up to ``last_stage``, nothing after
        (no unused parameters, which DDP and weight decay would otherwise carry around)."""
        rgb = build_backbone(config.backbone, width=config.width, num_classes=config.num_classes)
        names = rgb.stage_names
        for name in names[names.index(last_stage) + 1:]:
            delattr(rgb, name)
        del rgb.fc
        return rgb

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

    def _as_clip(self, x: torch.Tensor, b: int) -> torch.Tensor:
        return x if self.is_video else self._to_clip(x, b)

    def _as_backbone_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.is_video else self._to_frames(x)

    def _rgb_features(self, clip: torch.Tensor, last_stage: str) -> torch.Tensor:
        """The RGB stream's features after ``last_stage``, as a clip (B, C, T, H, W)."""
        x = self._as_backbone_input(clip)
        for name in self.rgb_backbone.stage_names:
            x = self.rgb_backbone.forward_stage(name, x)
            if name == last_stage:
                break
        return self._as_clip(x, clip.shape[0])

    def _classify(self, backbone: nn.Module, x: torch.Tensor, b: int) -> torch.Tensor:
        """Final features (backbone layout) -> per-frame logits (B, T', K)."""
        if self.is_video:
            feats = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T', C): spatial pool, keep time
        else:
            feats = F.adaptive_avg_pool2d(x, 1).flatten(1).view(b, -1, x.shape[1])
        return backbone.fc(self.dropout(feats))

    def _flow_stream(self, clip: torch.Tensor) -> torch.Tensor:
        """The flow stream (with a feature fusion joining it) up to the per-frame logits (B, T', K)."""
        cfg, b = self.config, clip.shape[0]
        x = clip
        if self.flow is not None and cfg.flow_after == "input":
            x = self.flow(x)
        if self.fuse is not None and cfg.fusion_point == "input":
            x = self.fuse(clip, x)
        x = self._as_backbone_input(x)
        for name in self.backbone.stage_names:
            x = self.backbone.forward_stage(name, x)
            if name == cfg.flow_after and self.flow is not None:
                x = self._as_backbone_input(self.flow(self._as_clip(x, b)))
            if name == cfg.fusion_point and self.fuse is not None:
                fused = self.fuse(self._rgb_features(clip, name), self._as_clip(x, b))
                x = self._as_backbone_input(fused)
        return self._classify(self.backbone, x, b)

    def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised clip -> per-frame logits (B, T', num_classes).

        With late fusion these are the log of the two networks' averaged per-frame probabilities.
        """
        if clip.dim() != 5:
            raise ValueError(f"ActionNet expects (B, 3, T, H, W), got shape {tuple(clip.shape)}")
        if clip.shape[2] < self.min_frames:
            raise ValueError(f"this model needs at least {self.min_frames} frames, got {clip.shape[2]}")
        logits = self._flow_stream(clip)
        if self.config.fusion == "late":
            x = self._as_backbone_input(clip)
            for name in self.rgb_backbone.stage_names:
                x = self.rgb_backbone.forward_stage(name, x)
            logits = late_fusion(self._classify(self.rgb_backbone, x, clip.shape[0]), logits)
        return logits

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> logits (B, num_classes): per-frame logits averaged over time (Sec. 3.3)."""
        return self.frame_logits(clip).mean(dim=1)


def build_model(config: ModelConfig) -> ActionNet:
    return ActionNet(config)
