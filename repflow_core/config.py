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
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied; the message names the key."""


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
        if self.data.clip_len < self.model.frames_consumed + 1:
            raise ValueError(f"data.clip_len {self.data.clip_len} is too short for flow {self.model.flow!r}")
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


# ------------------------------------------------------------------------------ generic conversion

_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_NONE = {"none", "null", "~", ""}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or the command line) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot convert {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping for section {_describe(tp)}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, str):
            value = _parse_scalar(value)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    return value


def _build(cls: type, kwargs: dict, prefix: str) -> Any:
    """Construct and validate; the dataclasses' own checks (ValueError) become ConfigErrors."""
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        where = f"{prefix}: " if prefix else ""
        raise ConfigError(f"{where}{exc}") from exc
    return obj


def from_dict(cls: type, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, converting values to the field types.
    Missing keys keep their defaults; unknown keys raise ConfigError naming the dotted key."""
    data = dict(data or {})
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise ConfigError(_unknown_key_message(key, sorted(names)))
        kwargs[name] = _convert(value, hints[name], key)
    return _build(cls, kwargs, prefix)


def _unknown_key_message(key: str, known: Sequence[str]) -> str:
    import difflib

    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (known keys here: {', '.join(known)})"


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dicts/lists/scalars, suitable for YAML and weights_only checkpoints."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------- overrides


def _parse_scalar(text: str) -> Any:
    """A command-line value as YAML (so lists ``[0.5,1.0]`` and numbers ``1e-3`` work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_field(cfg: Any, key: str, raw: Any) -> Any:
    """Return a copy of ``cfg`` with the dotted field ``key`` set to ``raw`` (converted and validated).

    ``raw`` may be a string from the command line; string fields take it verbatim (``data.root=123``
    stays the string "123"), others parse it as YAML then convert to the field's type."""
    cfg = copy.deepcopy(cfg)
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"invalid config key {key!r}")
    # Walk down to the parent section, remembering the chain to rebuild (and re-validate) it.
    chain = [cfg]
    for i, part in enumerate(parts[:-1]):
        node = chain[-1]
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names or not dataclasses.is_dataclass(getattr(node, part)):
            raise ConfigError(_unknown_key_message(".".join(parts[: i + 1]), names))
        chain.append(getattr(node, part))
    parent, leaf = chain[-1], parts[-1]
    names = [f.name for f in dataclasses.fields(parent)]
    if leaf not in names:
        raise ConfigError(_unknown_key_message(key, names))
    tp = _hints(type(parent))[leaf]
    if dataclasses.is_dataclass(tp):
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        new = _convert(value, tp, key)
    else:
        if isinstance(raw, str) and tp is not str:
            raw_value = _parse_scalar(raw)
        else:
            raw_value = raw
        new = _convert(raw_value, tp, key)
    # Rebuild the parent through its constructor so __post_init__/validate checks the new value.
    values = {f.name: getattr(parent, f.name) for f in dataclasses.fields(parent) if f.init}
    values[leaf] = new
    prefix = ".".join(parts[:-1])
    rebuilt = _build(type(parent), values, prefix or key)
    if len(chain) == 1:
        return rebuilt
    for depth in range(len(chain) - 2, -1, -1):
        setattr(chain[depth], parts[depth], rebuilt)
        rebuilt = chain[depth]
    return chain[0]


def apply_overrides(cfg: Any, overrides: Sequence[str] | Mapping[str, Any] | None) -> Any:
    """Apply ``["model.width=0.5", "optim.lr=0.05"]`` (or a {key: value} mapping) in order."""
    if not overrides:
        return cfg
    items: list[tuple[str, Any]]
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r} must look like key=value (e.g. model.width=0.5)")
            key, value = text.split("=", 1)
            items.append((key.strip(), value))
    for key, value in items:
        cfg = set_field(cfg, key, value)
    top_validate = getattr(cfg, "validate", None)
    if callable(top_validate):
        try:
            top_validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return cfg


# ------------------------------------------------------------------------------------------- files


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return dict(data)


def dump_yaml(obj: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)
    if path is not None:
        from .atomic_io import atomic_write_text  # temp + fsync + rename, the usual file mode

        atomic_write_text(path, text)
    return text


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None
                      ) -> TrainConfig:
    """TrainConfig from a YAML file (or the defaults when ``path`` is None) plus overrides."""
    data = load_yaml(path) if path else {}
    try:
        cfg = from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from exc
    return apply_overrides(cfg, overrides)


# ------------------------------------------------------------------------------------ command line

#: Direct flags for the common fields: flag -> dotted key.
SHORTCUTS: dict[str, str] = {
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "optim.lr",
    "--out-dir": "out_dir",
    "--device": "device",
    "--amp": "amp",
    "--data-root": "data.root",
    "--num-workers": "data.num_workers",
    "--seed": "seed",
}


def add_override_arguments(parser: argparse.ArgumentParser, shortcuts: Mapping[str, str] | None = None) -> None:
    """``--set key=value ...`` plus the direct flags in ``shortcuts`` (default :data:`SHORTCUTS`)."""
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="override any config field by dotted key, e.g. --set model.width=0.5 optim.lr=0.05 data.root=/data",
    )
    for flag, key in (shortcuts if shortcuts is not None else SHORTCUTS).items():
        parser.add_argument(flag, dest=f"short_{key.replace('.', '__')}", default=None, metavar="V",
                            help=f"same as --set {key}=V")


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides followed by the direct flags that were given, as key=value strings."""
    out = list(getattr(args, "overrides", None) or [])
    for name, value in vars(args).items():
        if name.startswith("short_") and value is not None:
            out.append(f"{name[len('short_'):].replace('__', '.')}={value}")
    return out
