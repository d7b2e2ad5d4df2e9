"""Model and optimiser construction for training (backbone weights, fine-tuning start, parameter groups)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch import nn

from .backbones import load_backbone_weights
from .checkpoint import CheckpointError, load_checkpoint_dict
from .flow import parameter_groups
from .train_finetune import freeze_stages, resolve_frozen_stages
from .uftsn import build_any_model

__all__ = ["build_model", "frozen_stages", "init_from_checkpoint", "lr_factor", "set_training_stage"]


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Copy every tensor of a repflow checkpoint's state_dict whose name and shape fit ``model``
    (fine-tuning, e.g. Kinetics -> HMDB51: everything but the classifier). Returns a summary line."""
    data = load_checkpoint_dict(path)
    src = data["state_dict"]
    own = model.state_dict()
    fit = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in src if k not in fit)
    missing = sorted(k for k in own if k not in fit)
    if not fit:
        raise CheckpointError(f"{path}: none of its tensors fit this model (different backbone or width?)")
    model.load_state_dict(fit, strict=False)
    return (f"initialised {len(fit)}/{len(own)} tensors from {path}"
            + (f"; not taken: {skipped[:4]}" if skipped else "") + (f"; kept fresh: {missing[:4]}" if missing else ""))


def frozen_stages(cfg) -> list[str]:
    """The stages ``cfg.freeze`` / ``cfg.freeze_until`` freeze, in forward order (empty: none)."""
    if not (cfg.freeze or cfg.freeze_until):
        return []
    return resolve_frozen_stages(cfg.freeze, cfg.freeze_until, cfg.model.flow_after)


def build_model(cfg, device: torch.device, say: Callable[[str], None], backbone_weights=None, init_from=None
                ) -> tuple[nn.Module, torch.optim.Optimizer, list[float]]:
    """The model of ``cfg.model`` (ActionNet, or UF-TSN for ``model.motion: uftsn``, built with all parts
    trainable so every parameter is in the optimiser; the stage of each epoch freezes parts) on ``device`` and
    its SGD optimiser (flow parameters at ``flow_lr_scale`` x lr, appendix A).
    Returns (model, optimizer, the groups' initial learning rates)."""
    uftsn = cfg.model.motion == "uftsn"
    model = build_any_model(cfg.model, cfg.loss.weights() if uftsn and cfg.loss.active else None)
    if backbone_weights:
        try:  # UF-TSN: the RGB (spatial) stream takes them
            report = load_backbone_weights(model, backbone_weights, prefix="spatial." if uftsn else "backbone.")
        except ValueError as exc:
            raise CheckpointError(f"--backbone-weights: {exc}") from exc
        say(f"backbone weights {backbone_weights}: {len(report.missing)} missing, {len(report.unexpected)} "
            f"unexpected, {len(report.mismatched)} mismatched tensors"
            + (f" (mismatched: {report.mismatched[:4]})" if report.mismatched else ""))
    if init_from:
        say(init_from_checkpoint(model, init_from))
    stages = frozen_stages(cfg)
    if stages:  # before the optimiser is built: frozen parameters get no weight decay and no momentum
        say(freeze_stages(model, stages))
    model.to(device)
    groups = parameter_groups(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.flow_lr_scale)
    for g in groups:
        g["initial_lr"] = g["lr"]  # LambdaLR scales these
    initial_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0)
    return model, optimizer, initial_lrs


def set_training_stage(model: nn.Module, cfg, epoch: int) -> str | None:
    """Put a staged model (UF-TSN) in the stage of 0-based ``epoch`` (``cfg.stage_at``: derived from the epoch
    number, so a resumed run continues in the right stage). Returns the stage, or None for other models."""
    if not hasattr(model, "set_stage"):
        return None
    stage = cfg.stage_at(epoch)
    model.set_stage(stage)
    return stage


def lr_factor(step: int, steps_per_epoch: int, cfg) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based); the ``lr_lambda`` of the
    run's ``LambdaLR``.

    Linear warm-up over ``warmup_epochs``, then ``step``: gamma ** (epoch // step_size) (the paper's
    x0.1 every 50 epochs on Kinetics, every 20 on HMDB), or ``cosine``: half a cosine from 1 at the
    end of the warm-up to 0 at the end of the last epoch."""
    o = cfg.optim
    spe = max(1, steps_per_epoch)
    warm_steps = o.warmup_epochs * spe
    if warm_steps > 0 and step < warm_steps:
        return (step + 1) / warm_steps
    epoch = step // spe
    if o.schedule == "step":
        return o.gamma ** (epoch // o.step_size)
    total = cfg.epochs * spe
    progress = (step - warm_steps) / max(1.0, total - warm_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
