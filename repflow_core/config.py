"""Typed configuration: YAML files -> nested dataclasses, with command-line overrides.

One generic mechanism, no globals: :func:`from_dict` builds any (nested) dataclass from a plain mapping,
converting every value to the type its field declares, and :func:`apply_overrides` changes single fields
by dotted key (``model.width=0.5``, ``optim.lr=0.05``, ``data.root=/data/ucf101``). Unknown keys and
values that do not fit a field's type raise :class:`ConfigError` naming the dotted key, so a typo never
silently trains the wrong model.

The training schema (:class:`TrainConfig`) lives here too, so that training, evaluation and tools read
the same files::

    model:  ModelConfig   (repflow_core.model)     backbone, width, flow, flow_after, iterations, dropout, fusion...
    data:   DataConfig    (repflow_core.data.layouts) layout, root, splits, clip_len, size, augmentation...
    optim:  OptimConfig   lr, momentum, weight_decay, schedule, step_size, gamma, warmup_epochs,
                          flow_lr_scale, grad_clip, accumulate
    synthetic: SyntheticConfig  generate the synthetic dataset into data.root when it is missing
    loss:   LossConfig    photometric, census, smoothness weights of the joint loss (0 = off)
    stages: [StageConfig] UF-TSN's training stages (flow, classifier, end_to_end) with their epochs
    epochs, batch_size, amp, ema_decay, out_dir, seed, deterministic, device, log_every, eval_every,
    eval_batch_size, tensorboard
    freeze, freeze_until, early_stopping_patience   fine-tuning (repflow_core.train_finetune, config/finetune.yaml)

The generic machinery (from_dict, set_field, apply_overrides, load_yaml, dump_yaml, the --set flags) lives in
:mod:`repflow_core.config_io`; every name of it stays importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_io import (
    SHORTCUTS,
    ConfigError,
    add_override_arguments,
    apply_overrides,
    collect_overrides,
    dump_yaml,
    from_dict,
    load_yaml,
    set_field,
    to_dict,
)
from .data.layouts import DataConfig
from .devices import DEVICE_CHOICES, check_device_spec
from .model import ModelConfig

__all__ = [
    "ConfigError",
    "LossConfig",
    "OptimConfig",
    "StageConfig",
    "SyntheticConfig",
    "TrainConfig",
    "SHORTCUTS",
    "add_override_arguments",
    "apply_overrides",
    "collect_overrides",
    "dump_yaml",
    "from_dict",
    "load_train_config",
    "load_yaml",
    "set_field",
    "to_dict",
]



# ------------------------------------------------------------------------------------------ schema


@dataclass
class OptimConfig:
    """SGD with momentum (appendix A) and the learning-rate schedule.

    ``lr`` is the base rate for ``batch_size`` clips per step (x ``accumulate``); the flow layer's
    parameters get ``flow_lr_scale`` x lr (appendix A: 0.01, "otherwise the model produced poor
    predictions"). ``schedule``: ``step`` (x ``gamma`` every ``step_size`` epochs, the paper's) or
    ``cosine`` (to 0 at the last epoch); both after ``warmup_epochs`` of linear warm-up (may be
    fractional). ``grad_clip``: max global gradient norm, 0 = off. ``accumulate``: micro-batches per
    optimiser step (effective batch = batch_size x accumulate x world size).
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_size: int = 50
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    flow_lr_scale: float = 0.01
    grad_clip: float = 0.0
    accumulate: int = 1

    def validate(self) -> OptimConfig:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"optim.schedule must be 'step' or 'cosine', got {self.schedule!r}")
        if self.step_size < 1:
            raise ValueError(f"optim.step_size must be >= 1, got {self.step_size}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"optim.gamma must be in (0, 1], got {self.gamma}")
        if self.warmup_epochs < 0:
            raise ValueError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not self.flow_lr_scale > 0:
            raise ValueError(f"optim.flow_lr_scale must be > 0, got {self.flow_lr_scale}")
        if self.grad_clip < 0:
            raise ValueError(f"optim.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.accumulate < 1:
            raise ValueError(f"optim.accumulate must be >= 1, got {self.accumulate}")
        return self


@dataclass
class SyntheticConfig:
    """Write the synthetic action dataset (repflow_core.data.synthetic) into ``data.root`` before
    training when ``generate`` is true and ``data.root`` does not exist yet.

    With ``data.layout: synthetic_stream`` nothing is written: clips are rendered per item
    (repflow_core.data.synthetic_stream): ``train_clips`` per epoch (new seeds every epoch), fixed
    ``val_clips`` / ``test_clips`` seeds disjoint from training's; each item's frame geometry drawn from
    ``geometries`` ("WxH", as cameras name them) and rendered natively at ``render_scale`` of it;
    ``generator``: SynthConfig overrides ({"camera": {"motion": true}, ...}); ``generation``: 1 or 2.
    ``clip_frames``: the length of one action's timeline in frames, as camera_sim's clip_frames (an action
    moves as fast per frame as the node sees it); a window of ``data.clip_len`` frames every
    ``data.frame_stride`` is taken from it (random offset for training, spread over the timeline for
    evaluation), and only the window's frames are rendered; ``min_window_motion`` (generation 2): only
    windows holding at least this share of the person motion of the clip's busiest window (0 = any window;
    see repflow_core.data.synthetic_stream for why).

    ``generation2_per_class`` (files, with ``generation: 1``): that many generation-2 clips per class written
    beside the generation-1 ones into the same folders and split lists (files ``g2_<action>_<i>``; clip ``i`` at
    ``geometries[i % len]`` scaled to a short side of ``size``, rendered natively there; ``generator`` overrides;
    clip seeds from ``seed + 1``), so one folder trains a model on both worlds. 0 = generation 1 only.
    """

    generate: bool = False
    per_class: int = 40
    num_frames: int = 40
    size: int = 128
    fps: float = 15.0
    seed: int = 0
    test_fraction: float = 0.25
    generation: int = 2
    geometries: list[str] = field(default_factory=lambda: ["128x128", "320x240", "640x480", "640x360", "360x640"])
    render_scale: float = 1.0
    train_clips: int = 2000
    val_clips: int = 200
    test_clips: int = 400
    generator: dict[str, Any] = field(default_factory=dict)
    clip_frames: int = 40
    min_window_motion: float = 0.25
    generation2_per_class: int = 0

    def validate(self) -> SyntheticConfig:
        if self.per_class < 2 or self.num_frames < 2 or self.size < 16:
            raise ValueError("synthetic: per_class and num_frames must be >= 2 and size >= 16")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"synthetic.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.generation not in (1, 2):
            raise ValueError(f"synthetic.generation must be 1 or 2, got {self.generation}")
        if not 0.1 <= self.render_scale <= 1.0:
            raise ValueError(f"synthetic.render_scale must be in [0.1, 1], got {self.render_scale}")
        if self.train_clips < 1 or self.val_clips < 0 or self.test_clips < 0:
            raise ValueError("synthetic: train_clips must be >= 1, val_clips and test_clips >= 0")
        if self.generation2_per_class < 0:
            raise ValueError(f"synthetic.generation2_per_class must be >= 0, got {self.generation2_per_class}")
        if self.generation2_per_class and self.generation != 1:
            raise ValueError("synthetic.generation2_per_class adds generation-2 clips to a generation-1 set: "
                             f"it needs synthetic.generation: 1, got {self.generation}")
        if self.clip_frames < 1:
            raise ValueError(f"synthetic.clip_frames must be >= 1, got {self.clip_frames}")
        if not 0.0 <= self.min_window_motion <= 1.0:
            raise ValueError(f"synthetic.min_window_motion must be in [0, 1] (a share of the busiest window's "
                             f"motion; 0 = every window), got {self.min_window_motion}")
        from .data.synthetic_stream import parse_geometry  # validates each "WxH"

        if not self.geometries:
            raise ValueError("synthetic.geometries must list at least one WxH")
        for g in self.geometries:
            parse_geometry(g)
        return self


@dataclass
class LossConfig:
    """Unsupervised motion terms added to the cross-entropy (the joint loss, issue 13; 0 = off, the default).

    For the representation-flow network each flow layer's flow is scored in feature space at its stage
    (:mod:`repflow_core.joint_loss`): the next frame's normalised features, scaled to [0, 1], warped by the
    layer's flow of that channel, against the current frame's. ``photometric``: Charbonnier photometric
    loss (service-robot paper Eq. 1; L1 with ``photometric_l1``); ``census``: UF-TSN's census term;
    ``smoothness``: Charbonnier smoothness (Eq. 2), or UF-TSN's edge-aware one with ``edge_aware`` (an
    edge is a step of about 1 / ``edge_weight`` in [0, 1] units). For ``model.motion: uftsn`` non-zero
    weights replace the poster's defaults of its flow estimator. Each weighted term is logged in log.csv.
    """

    photometric: float = 0.0
    census: float = 0.0
    smoothness: float = 0.0
    photometric_l1: bool = False
    edge_aware: bool = False
    edge_weight: float = 10.0

    def validate(self) -> LossConfig:
        self.weights()  # MotionLossWeights names the bad key (loss.<name>)
        return self

    @property
    def active(self) -> bool:
        return self.photometric > 0 or self.census > 0 or self.smoothness > 0

    def weights(self):
        from .motion_losses import MotionLossWeights

        return MotionLossWeights(photometric=self.photometric, census=self.census, smoothness=self.smoothness,
                                 photometric_l1=self.photometric_l1, edge_aware=self.edge_aware,
                                 edge_weight=self.edge_weight)


@dataclass
class StageConfig:
    """One training stage of UF-TSN (``stages: [{name: flow, epochs: 2}, ...]``): ``name`` is ``flow`` (the
    estimator alone, unsupervised), ``classifier`` (estimator frozen, cross-entropy) or ``end_to_end``."""

    name: str = "end_to_end"
    epochs: int = 1

    def validate(self) -> StageConfig:
        from .uftsn import STAGES

        if self.name not in STAGES:
            raise ValueError(f"unknown stage {self.name!r}; choose one of {STAGES}")
        if self.epochs < 1:
            raise ValueError(f"stage {self.name!r}: epochs must be >= 1, got {self.epochs}")
        return self


AMP_MODES = ("none", "fp16", "bf16")
DEVICES = DEVICE_CHOICES  # kept for callers of the old name


@dataclass
class TrainConfig:
    """Everything ``python -m repflow_core.train`` needs; written to RUN_DIR/config.yaml.

    ``ema_decay``: exponential moving average of the weights (0 = off); the EMA weights are the ones
    validated and saved as the checkpoint ``state_dict``. ``amp``: mixed precision on CUDA (ignored
    with a warning on the CPU). ``eval_every``: validate every N epochs (and after the last; 0 = never).
    ``log_every``: progress-bar / TensorBoard update every N steps. ``device``: auto | cpu | cuda
    (cuda:N also accepted). ``deterministic``: torch.use_deterministic_algorithms + no cuDNN
    autotuning, for bit-exact reruns and resumes.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: list[StageConfig] = field(default_factory=list)  # UF-TSN stages; empty = one end-to-end stage
    epochs: int = 30
    batch_size: int = 8
    eval_batch_size: int = 0  # 0 = same as batch_size
    amp: str = "none"
    ema_decay: float = 0.999
    out_dir: str = "runs/default"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 1
    tensorboard: bool = True
    # Before validating, while the run has taken fewer optimiser steps than this, re-estimate the evaluated
    # weights' BatchNorm statistics on up to 20 training batches (young running estimates made the first
    # validation losses huge, issue 14; repflow_core.train_loop.recalibrate_batchnorm). 0 = never.
    bn_recalibrate_until: int = 50
    # Fine-tuning from few clips (issue 10.3; repflow_core.train_finetune): stages whose weights and BatchNorm
    # statistics stay as --init-from gave them (stem, layer1..layer4, flow, fc), or every stage up to and
    # including ``freeze_until``; stop after ``early_stopping_patience`` validated epochs without a better
    # validation accuracy (0 = off).
    freeze: list[str] = field(default_factory=list)
    freeze_until: str = ""
    early_stopping_patience: int = 0

    def validate(self) -> TrainConfig:
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        self.synthetic.validate()
        self.loss.validate()
        for st in self.stages:
            st.validate()
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 0:
            raise ValueError(f"batch_size must be >= 1 and eval_batch_size >= 0, got {self.batch_size}, "
                             f"{self.eval_batch_size}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        self.device = check_device_spec(self.device)  # the one device rule (repflow_core.devices); DeviceError names it
        if self.log_every < 1 or self.eval_every < 0:
            raise ValueError("log_every must be >= 1 and eval_every >= 0")
        if self.bn_recalibrate_until < 0:
            raise ValueError(f"bn_recalibrate_until must be >= 0 (0 = never), got {self.bn_recalibrate_until}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience must be >= 0 (0 = off), got {self.early_stopping_patience}")
        if self.freeze or self.freeze_until:
            from .train_finetune import resolve_frozen_stages  # deferred: train_finetune imports the training loop

            resolve_frozen_stages(self.freeze, self.freeze_until, self.model.flow_after)  # names the bad stage
        if self.data.layout == "synthetic_stream":
            from .data.synthetic_stream import check_window  # names synthetic.clip_frames / data.clip_len

            check_window(self.synthetic.clip_frames, self.data.clip_len, self.data.frame_stride)
        if self.data.clip_len < self.model.frames_consumed + 1:
            raise ValueError(f"data.clip_len {self.data.clip_len} is too short for flow {self.model.flow!r}")
        if self.model.flow_global_motion != "none" and self.loss.active and self.model.motion == "flow":
            # The joint loss scores each flow layer's flow by warping the next frame's features with it; after the
            # global motion is subtracted that flow no longer explains a pan, so the loss would punish the right flow.
            raise ValueError(f"model.flow_global_motion {self.model.flow_global_motion!r} cannot be combined with the "
                             "joint loss (loss.photometric / census / smoothness > 0): the loss would see the flow "
                             "with the camera motion removed; use one or the other")
        return self

    def check_stages(self) -> TrainConfig:
        """Stages against the rest of the config (not in :meth:`validate`: overrides are applied one at a time,
        and ``stages`` and ``epochs`` may change in either order). Called when a run starts."""
        if not self.stages:
            return self
        if self.model.motion != "uftsn":
            raise ConfigError(f"stages are UF-TSN's training stages; they need model.motion=uftsn, got "
                             f"{self.model.motion!r}")
        total = sum(st.epochs for st in self.stages)
        if total != self.epochs:
            raise ConfigError(f"epochs is {self.epochs} but the stages add up to {total} epochs "
                             f"({', '.join(f'{st.name}: {st.epochs}' for st in self.stages)}); make them agree")
        return self

    def stage_at(self, epoch: int) -> str:
        """The UF-TSN stage of 0-based ``epoch`` (the stage follows from the epoch, so a resume continues in
        the right one); ``end_to_end`` without stages."""
        end = 0
        for st in self.stages:
            end += st.epochs
            if epoch < end:
                return st.name
        return self.stages[-1].name if self.stages else "end_to_end"


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None
                      ) -> TrainConfig:
    """TrainConfig from a YAML file (or the defaults when ``path`` is None) plus overrides."""
    data = load_yaml(path) if path else {}
    try:
        cfg = from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from exc
    return apply_overrides(cfg, overrides)


