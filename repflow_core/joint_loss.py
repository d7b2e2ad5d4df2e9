"""The joint loss (issue 13.2): cross-entropy + unsupervised motion terms on the representation-flow layers' flow.

*Learning Optical Flow for Action Classification* (service-robot paper, ``shared/papers``) trains flow and action
together with ``L_G = a1 L_C + a2 L_P + a3 L_S`` (its Eq. 3): the cross-entropy ``L_C``, the Charbonnier
photometric loss after warping ``L_P = rho(W(I_k, O_k) - I_{k-1})`` (Eq. 1) and the Charbonnier smoothness ``L_S``
(Eq. 2); UF-TSN adds a census term and an edge-aware smoothness. Here the "images" are the features the flow layer
sees, at its stage of the network: a :class:`~repflow_core.flow.RepresentationFlow` layer gets features
(B, C, T, H, W) normalised to [0, 255] per clip and channel (Sec. 3.2) and returns the flow of every channel,
(B, 2C, T-1, H, W) with channel c's flow in output channels (c, C + c) (x along W, then y along H). For every
channel and frame pair the next frame's features are warped back with that channel's flow and compared with the
current frame's (:mod:`repflow_core.motion_losses`). The features are scaled to [0, 1] first, the range of the
papers' images, so the weights mean what they mean there and the census transform's constants fit.

:class:`JointLoss` reads the flow with forward hooks on every RepresentationFlow layer of the model, so
flow.py and model.py stay unchanged; FcF's two layers each contribute (averaged). A model that exposes
``extra_losses`` (:class:`~repflow_core.uftsn.UFTSN`: its multi-scale unsupervised terms) has those added too.
The gradient of the terms reaches the flow layer's parameters and, through the features, the convolutions
before it: flow and features are learned together, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from . import motion_losses as ml
from .flow import iter_flow_layers

__all__ = ["JointLoss", "feature_motion_terms"]


def _census_radius(h: int, w: int) -> int:
    """Census patch radius for a feature map: 3 (UnFlow's 7x7) needs room; small maps (8x8 at layer2 of a
    64 px input) keep a 3x3 patch so the eroded border leaves pixels to score."""
    return max(1, min(3, min(h, w) // 8))


def feature_motion_terms(features: torch.Tensor, flow: torch.Tensor, weights: ml.MotionLossWeights
                         ) -> dict[str, torch.Tensor]:
    """The weighted motion terms of one flow layer.

    ``features``: its input (B, C, T, H, W) in [0, 255]; ``flow``: its output (B, 2C, T-1, H, W). Every
    (clip, frame pair, channel) is one grey image pair with its own flow field. Returns the non-zero-weight
    terms among ``photometric``, ``census``, ``smoothness``, each already multiplied by its weight.
    """
    b, c, t, h, w = features.shape
    if flow.shape != (b, 2 * c, t - 1, h, w):
        raise ValueError(f"flow {tuple(flow.shape)} does not match features {tuple(features.shape)}: expected "
                         f"(B, 2C, T-1, H, W) = {(b, 2 * c, t - 1, h, w)}")
    f = features.float() / 255.0  # [0, 1], the papers' image range

    def pairs(x: torch.Tensor) -> torch.Tensor:  # (B, C, T', H, W) -> (B * T' * C, 1, H, W)
        return x.transpose(1, 2).reshape(-1, 1, h, w)

    i1, i2 = pairs(f[:, :, :-1]), pairs(f[:, :, 1:])
    uv = flow.float()
    field = torch.stack([pairs(uv[:, :c])[:, 0], pairs(uv[:, c:])[:, 0]], 1)  # (N, 2, H, W): x then y
    terms: dict[str, torch.Tensor] = {}
    if weights.photometric > 0:
        photometric = ml.photometric_l1 if weights.photometric_l1 else ml.photometric_charbonnier
        terms["photometric"] = weights.photometric * photometric(i1, i2, field)
    if weights.census > 0:
        terms["census"] = weights.census * ml.census_loss(i1, i2, field, radius=_census_radius(h, w), scale=255.0)
    if weights.smoothness > 0:
        if weights.edge_aware:
            terms["smoothness"] = weights.smoothness * ml.smoothness_edge_aware(field, i1, weights.edge_weight)
        else:
            terms["smoothness"] = weights.smoothness * ml.smoothness_charbonnier(field)
    return terms


class JointLoss:
    """Collects the unsupervised motion terms of a model's training forward passes.

    Hooks every RepresentationFlow layer of ``model`` when ``weights`` has a non-zero term; the hooks compute
    the terms only for a layer in training mode with gradients enabled (never in validation, never for the EMA
    copy, which is in eval mode). After each forward call :meth:`collect` (the terms of that pass, averaged over
    the flow layers, plus the model's ``extra_losses``). Create it after any ``copy.deepcopy`` of the model (a
    copied hook would call this object too) and :meth:`remove` the hooks when done.
    """

    def __init__(self, model: nn.Module, weights: ml.MotionLossWeights) -> None:
        self.weights = weights
        self._pending: list[dict[str, torch.Tensor]] = []
        self._handles = []
        if weights.active:
            self._handles = [layer.register_forward_hook(self._hook) for layer in iter_flow_layers(model)]

    @property
    def hooked_layers(self) -> int:
        return len(self._handles)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self._pending.append(feature_motion_terms(inputs[0], output, self.weights))

    def collect(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The terms of the last forward pass (flow layers averaged, plus ``model.extra_losses``); resets."""
        pending, self._pending = self._pending, []
        terms: dict[str, torch.Tensor] = {}
        for layer_terms in pending:
            for name, value in layer_terms.items():
                terms[name] = terms.get(name, 0.0) + value / len(pending)
        for name, value in (getattr(model, "extra_losses", None) or {}).items():
            terms[name] = terms.get(name, 0.0) + value
        return terms

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._pending = []
