"""Building blocks for the paper's remaining variants: flow on the RGB input and RGB + flow fusion.

Paper (Piergiovanni & Ryoo, "Representation Flow for Action Recognition"):

* Table 1, "Flow Layer on RGB Input" (also the "RGB" column of Table 4 and "Input (RGB)" of Tables 6-7): the
  flow layer computed on the frames themselves, before any convolution. :class:`InputFlow` does this.
* Fig. 2 and Table 4, two-stream fusion: an RGB stream and a flow stream combined at one point of the network
  by element-wise addition, multiplication, "layer + multiply" (a conv layer on the flow before multiplying)
  or concatenation (:class:`StreamFusion`), or by averaging the scores of two separate networks (late fusion,
  :func:`late_fusion`).

How the flow stream is brought to the RGB stream's shape at the fusion point (the paper does not say):

* **Channels.** Both streams have the backbone's channel count C at every stage: the flow block already maps
  its 2C' flow channels back to C (appendix A: "a 3x3 convolutional layer ... to produce C output channels"),
  and :class:`InputFlow` maps them back to the 3 input channels. So add / multiply / layer + multiply need no
  extra projection. Concatenation gives 2C channels; a 1x1 conv maps them to C so the rest of the backbone
  (and torchvision weights for it) stays unchanged -- a 1x1 conv followed by the next stage's first conv is a
  factorised version of widening that conv to 2C inputs.
* **Time.** The flow of frames (t, t+1) is paired with RGB frame t, and the RGB stream's last frame(s) are
  dropped (T -> T-1 for one flow layer, T-2 for FcF). This is the pairing the flow block's own residual uses
  (``x[:, :, :-1]``, DESIGN.md), and it never invents a frame (padding the flow would). With a video backbone
  whose later stages stride time, the two streams can differ by one step; the RGB stream is cut to the flow
  stream's length in the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .flow import RepresentationFlow, normalise_to_image_range, per_frame_conv

FUSIONS = ("none", "late", "add", "multiply", "layer_multiply", "concat")
MID_FUSIONS = ("add", "multiply", "layer_multiply", "concat")  # combine features at one point (Fig. 2c)


class InputFlow(nn.Module):
    """Representation flow of the normalised RGB frames (Table 1 "Flow Layer on RGB Input").

    ``(B, 3, T, H, W) -> (B, 3, T-1, H, W)``: optional 1x1 conv 3 -> C' (``flow_channels > 0``; by default the
    flow is computed on the 3 colour channels themselves), normalisation to [0, 255] (Sec. 3.2), the flow layer
    (Algorithm 1, 2C' channels), a 1x3x3 conv 2C' -> 3 and batch norm, so the backbone's stem takes it like an
    image. There is deliberately no residual with the RGB input (unlike :class:`~repflow_core.flow.FlowBlock`):
    the stream then sees motion only, as the paper's flow-only CNN does, and RGB comes back only by fusion --
    which is what Table 4's "RGB" column measures.
    """

    def __init__(self, in_channels: int = 3, flow_channels: int = 0, **flow_kwargs) -> None:
        super().__init__()
        channels = flow_channels if flow_channels > 0 else in_channels
        self.reduce = nn.Conv3d(in_channels, channels, kernel_size=1, bias=False) if flow_channels > 0 else None
        self.flow = RepresentationFlow(channels, **flow_kwargs)
        self.project = nn.Conv3d(2 * channels, in_channels, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x if self.reduce is None else self.reduce(x)
        flow = self.flow(normalise_to_image_range(features))
        return self.bn(per_frame_conv(self.project, flow))


class InputFlowConvFlow(nn.Module):
    """Flow-conv-flow (FcF, Sec. 3.2, Table 5) on the RGB input: input flow, 1x3x3 conv + BN, input flow.

    No ReLU between the two (FlowConvFlow has one): the second flow layer normalises each channel to
    [min, max] -> [0, 255] anyway, so a ReLU on 3 channels would only clip away half of the first flow.
    Output ``(B, 3, T-2, H, W)``.
    """

    def __init__(self, in_channels: int = 3, flow_channels: int = 0, **flow_kwargs) -> None:
        super().__init__()
        self.flow1 = InputFlow(in_channels, flow_channels, **flow_kwargs)
        self.conv = nn.Conv3d(in_channels, in_channels, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(in_channels)
        self.flow2 = InputFlow(in_channels, flow_channels, **flow_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow2(self.bn(per_frame_conv(self.conv, self.flow1(x))))


def align_time(rgb: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both clips ``(B, C, T, H, W)`` to the shorter one's frames, dropping the *last* frames.

    The flow of frames (t, t+1) stays paired with RGB frame t (see the module docstring).
    """
    t = min(rgb.shape[2], flow.shape[2])
    if rgb.shape[0] != flow.shape[0] or rgb.shape[3:] != flow.shape[3:]:
        raise ValueError(f"RGB stream {tuple(rgb.shape)} and flow stream {tuple(flow.shape)} differ in batch or "
                         "spatial size at the fusion point")
    return rgb[:, :, :t], flow[:, :, :t]


class StreamFusion(nn.Module):
    """Combine RGB and flow features ``(B, C, T, H, W)`` at one point of the network (Fig. 2c, Table 4).

    ``add``: rgb + flow; ``multiply``: rgb * flow; ``layer_multiply`` ("Layer + Multiply"): rgb * conv(flow)
    with a 1x3x3 conv (the paper's best fusion); ``concat``: a 1x1 conv of [rgb, flow] (2C -> C channels).
    The output has the flow stream's T' frames (the RGB stream's extra frames at the end are dropped).
    """

    def __init__(self, mode: str, channels: int) -> None:
        super().__init__()
        if mode not in MID_FUSIONS:
            raise ValueError(f"unknown feature fusion {mode!r}; choose one of {MID_FUSIONS}")
        self.mode = mode
        self.layer: nn.Conv3d | None = None
        if mode == "layer_multiply":
            self.layer = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        elif mode == "concat":
            self.layer = nn.Conv3d(2 * channels, channels, kernel_size=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        rgb, flow = align_time(rgb, flow)
        if self.mode == "add":
            return rgb + flow
        if self.mode == "multiply":
            return rgb * flow
        if self.mode == "layer_multiply":
            return rgb * per_frame_conv(self.layer, flow)
        return per_frame_conv(self.layer, torch.cat([rgb, flow], dim=1))


def late_fusion(rgb_logits: torch.Tensor, flow_logits: torch.Tensor) -> torch.Tensor:
    """Late fusion (Fig. 2b): average the two networks' class probabilities, per frame ``(B, T, K)``.

    Returns ``log((softmax(rgb) + softmax(flow)) / 2)``: valid logits whose softmax *is* the averaged score,
    so training (cross-entropy) and the Recognizer (softmax) need nothing special. Frames are aligned as in
    :func:`align_time` (the RGB network sees one more frame per flow layer).
    """
    t = min(rgb_logits.shape[1], flow_logits.shape[1])
    both = torch.stack([F.log_softmax(rgb_logits[:, :t], dim=-1), F.log_softmax(flow_logits[:, :t], dim=-1)])
    return torch.logsumexp(both, dim=0) - math.log(2.0)
