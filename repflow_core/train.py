"""Training: ``python -m repflow_core.train --config config/train_synthetic.yaml [overrides]``.

Usage::

    python -m repflow_core.train --config config/train_synthetic.yaml
    python -m repflow_core.train --config config/train_ucf101.yaml --set data.root=/data/UCF101 \\
        model.width=0.5 --epochs 3 --out-dir runs/ucf_try
    python -m repflow_core.train --resume runs/synthetic            # continue an interrupted run
    torchrun --nproc_per_node 4 -m repflow_core.train --config config/train_kinetics.yaml  # multi-GPU

What it does (paper appendix A where it says something):

* SGD, momentum 0.9, weight decay; the flow layer's parameters at 0.01 x lr (``flow.parameter_groups``);
  step (x0.1 every ``step_size`` epochs) or cosine schedule after an optional linear warm-up, updated
  every optimiser step; gradient clipping; gradient accumulation; dropout from the model config.
* The loaders hand uint8 clips; the float conversion and normalisation happen on the device.
* Mixed precision (fp16 with loss scaling, or bf16) on CUDA; ignored with a warning on the CPU.
* An exponential moving average (EMA) of the weights, with the usual warm-up of its decay
  (``min(decay, (1 + n) / (10 + n))`` after n updates) so short runs are not dominated by the initial
  weights. Validation uses the EMA weights, and checkpoints store them as ``state_dict``.
* Validation every ``eval_every`` epochs (and after the last) on the test split: one centre clip and
  centre crop per video (clip accuracy). ``python -m repflow_core.evaluate`` does the full multi-view
  protocol.
* RUN_DIR (``out_dir``): ``config.yaml`` (resolved), ``last.pt`` (every epoch, with resume state),
  ``best.pt`` (best validation accuracy), ``log.csv``, ``curves.png``, ``confusion.png``/``.json``
  (validation at the best epoch), ``tb/`` (TensorBoard, when the ``tensorboard`` package is
  installed). Checkpoints are written atomically (temp file + rename); killing the process at any
  moment loses at most the current epoch, and ``--resume RUN_DIR`` continues exactly where the last
  completed epoch left off.
* Reproducibility: every epoch reseeds the torch / numpy / python generators from (seed, epoch, rank),
  the shuffle order depends only on (seed, epoch), and each clip's augmentation only on (seed, epoch,
  index) (see data/dataset.py). So a resumed run sees exactly the batches an uninterrupted one would;
  with ``--deterministic`` (torch.use_deterministic_algorithms) the weights are bit-identical on the CPU.
* Distributed: under torchrun (WORLD_SIZE > 1) one process per GPU (NCCL) or per CPU process (gloo),
  DistributedDataParallel, a DistributedSampler per epoch, validation sharded over ranks and summed;
  only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime
import hashlib
import io
import math
import os
import random
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

from .backbones import load_backbone_weights
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    InputSpec,
    atomic_save,
    load_checkpoint_dict,
    save_checkpoint,
)
from .config import (
    ConfigError,
    TrainConfig,
    add_override_arguments,
    collect_overrides,
    dump_yaml,
    load_train_config,
    to_dict,
)
from .data.dataset import INVALID_LABEL, VideoClipDataset, make_loader, scan_dataset
from .data.layouts import DatasetError, build_samples, fingerprint
from .data.transforms import KINETICS_MEAN, KINETICS_STD, normalize_on_device
from .flow import parameter_groups
from .model import ActionNet, ModelConfig

__all__ = ["ModelEMA", "TrainResult", "lr_factor", "main", "train"]

LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "clips_per_s",
              "data_time", "seconds")


# ------------------------------------------------------------------------------------ distributed


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        kwargs = {}
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            kwargs["device_id"] = torch.device("cuda", local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that depends only on (seed, epoch): the order after a resume is the same."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(_derive_seed(self.seed, "shuffle", self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... (evaluation: every sample exactly once over all ranks)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------------------------- helpers


def _derive_seed(*parts: Any) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_train_device(spec: str, dist_info: DistInfo | None = None) -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} was requested but CUDA is not available; use device=cpu or auto")
        if dist_info is not None and dist_info.enabled:
            return torch.device("cuda", dist_info.local_rank)
        return torch.device(spec)
    if spec != "cpu":
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {spec!r}")
    return torch.device("cpu")


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate before optimiser step ``step`` (0-based).

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


class ModelEMA:
    """Exponential moving average of a model's state (parameters and float buffers such as the
    BatchNorm statistics; integer buffers are copied). The decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` so the average forgets the random initialisation quickly."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = model.state_dict()
        for name, value in self.module.state_dict().items():
            s = src[name].detach()
            if value.dtype.is_floating_point:
                value.lerp_(s.to(value.dtype), 1.0 - d)
            else:
                value.copy_(s)

    def state_dict(self) -> dict:
        return {"state_dict": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ------------------------------------------------------------------------------------------ data


def maybe_generate_synthetic(cfg: TrainConfig, log: Callable[[str], None], progress: bool = True) -> bool:
    """Write the synthetic dataset into ``data.root`` when ``synthetic.generate`` is set and the
    split list is missing. Written to a temporary sibling folder then renamed, so an interrupted
    generation never leaves a half dataset behind. Returns True when something was generated."""
    syn, data = cfg.synthetic, cfg.data
    if not syn.generate or data.layout != "splitlist" or not data.root:
        return False
    root = Path(data.root).expanduser()
    if (root / data.train_list).is_file():
        return False
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} exists but has no {data.train_list}; not generating the synthetic "
                           f"dataset over it (remove the folder or point data.root elsewhere)")
    from .data.synthetic import write_dataset

    log(f"synthetic dataset not found at {root}: generating {syn.per_class} clips per class "
        f"({syn.num_frames} frames, {syn.size}x{syn.size}, seed {syn.seed}) ...")
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    info = write_dataset(tmp, syn.per_class, num_frames=syn.num_frames, size=syn.size, fps=syn.fps,
                         seed=syn.seed, test_fraction=syn.test_fraction, progress=progress)
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    log(f"wrote {info['num_videos']} videos ({info['num_train']} train / {info['num_test']} test) to {root} "
        f"in {info['seconds']:.0f} s")
    return True


# ------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    run_dir: Path
    best_val_acc: float | None
    best_epoch: int | None
    epochs_done: int
    history: list[dict]
    classes: list[str]
    model: nn.Module | None = None  # raw (unwrapped) model, trained weights
    ema_model: nn.Module | None = None
    rank: int = 0
    extras: dict = field(default_factory=dict)


def _autocast(device: torch.device, amp: str):
    if amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, num_classes: int, mean, std, amp: str,
             dist_info: DistInfo, progress: bool = False, desc: str = "validate") -> dict:
    """Single-view clip accuracy and loss (summed over ranks) and the confusion matrix."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    skipped = 0
    for clips, labels, _ in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        keep = labels != INVALID_LABEL
        skipped += int((~keep).sum())
        if not bool(keep.any()):
            continue
        clips, labels = clips[keep], labels[keep]
        x = normalize_on_device(clips.to(device, non_blocking=True), mean, std)
        y = labels.to(device)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
        pred = logits.argmax(1).cpu()
        conf.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    model.train(was_training)
    totals = torch.cat([conf.flatten().double(), loss_sum.view(1), torch.tensor([float(skipped)], dtype=torch.float64)])
    if dist_info.enabled:
        totals = totals.to(device if device.type == "cuda" else "cpu")
        _all_reduce_sum(totals, dist_info)
        totals = totals.cpu()
    conf = totals[: num_classes * num_classes].round().long().view(num_classes, num_classes)
    n = int(conf.sum())
    return {
        "acc": float(conf.diag().sum()) / n if n else float("nan"),
        "loss": float(totals[-2]) / n if n else float("nan"),
        "n": n,
        "skipped": int(totals[-1]),
        "confusion": conf,
    }


def _input_spec(cfg: TrainConfig) -> InputSpec:
    d = cfg.data
    return InputSpec(clip_len=d.clip_len, frame_stride=d.frame_stride, size=(d.size, d.size),
                     resize_short=max(d.resize_short, d.size), mean=tuple(KINETICS_MEAN), std=tuple(KINETICS_STD))


def _write_log_csv(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None or (isinstance(row.get(k), float) and math.isnan(row[k]))
                             else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])) for k in LOG_FIELDS})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _open_tensorboard(run_dir: Path, enabled: bool, log: Callable[[str], None]):
    if not enabled:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except Exception:  # the tensorboard package is optional
        log("TensorBoard not available (pip install tensorboard to enable it); logging to log.csv only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def train(
    cfg: TrainConfig,
    resume: str | os.PathLike | None = None,
    backbone_weights: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg``; see the module docstring. ``resume``: a run folder (or its last.pt) to continue.
    ``backbone_weights``: torchvision ResNet weights for the backbone. ``init_from``: a repflow
    checkpoint whose weights (all that fit, e.g. not a classifier for another class count) start the model.
    ``stop_after_epochs``: return after that many epochs of this call, as if the process had been
    killed right after the checkpoint (used to test resuming)."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        return _train(cfg, resume=resume, backbone_weights=backbone_weights, init_from=init_from, progress=progress,
                      stop_after_epochs=stop_after_epochs, overwrite=overwrite, log=log)
    finally:
        # Leave the process's global switches as they were (a caller may train and then do other work).
        torch.use_deterministic_algorithms(flags[0])
        torch.utils.deterministic.fill_uninitialized_memory = flags[1]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]


def _train(
    cfg: TrainConfig,
    resume: str | os.PathLike | None = None,
    backbone_weights: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    cfg = copy.deepcopy(cfg).validate()
    if cfg.deterministic:
        # cuBLAS needs this before its first use to be deterministic (harmless on the CPU).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    want_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    dinfo = _init_distributed("cuda" if want_cuda else "cpu")
    is_main = dinfo.is_main

    def say(msg: str) -> None:
        if is_main:
            (log or tqdm.write)(msg)

    device = resolve_train_device(cfg.device, dinfo)
    if cfg.amp != "none" and device.type != "cuda":
        say(f"warning: amp={cfg.amp} needs CUDA; training in fp32 on {device}")
        cfg.amp = "none"
    amp = cfg.amp
    torch.use_deterministic_algorithms(cfg.deterministic)
    if cfg.deterministic:
        # Filling new tensors with NaN is a debugging aid of deterministic mode, not needed for
        # determinism, and it makes CPU training several times slower.
        torch.utils.deterministic.fill_uninitialized_memory = False
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = cfg.deterministic
        torch.backends.cudnn.benchmark = not cfg.deterministic

    # ---- run folder and resume state -------------------------------------------------------------
    resume_state: dict | None = None
    if resume is not None:
        rpath = Path(resume)
        ckpt_path = rpath / "last.pt" if rpath.is_dir() else rpath
        data = load_checkpoint_dict(ckpt_path)
        resume_state = data.get("resume")
        if not resume_state:
            raise CheckpointError(f"{ckpt_path} has no resume state (best.pt files do not; use last.pt)")
        run_dir = ckpt_path.parent
        cfg.out_dir = str(run_dir)
        saved_model = dict(data["model_config"])
        current = cfg.model.to_dict()
        diff = sorted(k for k in set(saved_model) | set(current)
                      if k != "num_classes" and saved_model.get(k) != current.get(k))
        if diff:
            raise ConfigError(f"--resume: the model config differs from the one in {ckpt_path} in "
                              + ", ".join(f"model.{k} ({saved_model.get(k)!r} there, {current.get(k)!r} here)"
                                          for k in diff))
        resume_labels = [str(x) for x in data["labels"]]
    else:
        run_dir = Path(cfg.out_dir)
        if is_main and (run_dir / "last.pt").exists() and not overwrite:
            raise ConfigError(f"{run_dir} already holds a run (last.pt): continue it with --resume {run_dir}, "
                              f"pick another --out-dir, or pass --overwrite")

    # ---- data ------------------------------------------------------------------------------------
    if is_main:
        maybe_generate_synthetic(cfg, say, progress)
    _barrier(dinfo)
    train_samples, classes = build_samples(cfg.data, "train")
    test_samples: list = []
    if cfg.eval_every > 0:
        try:
            test_samples, test_classes = build_samples(cfg.data, "test")
        except DatasetError as exc:
            raise DatasetError(f"{exc} (no validation split: set eval_every=0 to train without validation)") from exc
        if list(test_classes) != list(classes):
            raise DatasetError(f"the test split's classes {test_classes[:5]}... differ from the training classes "
                               f"{classes[:5]}...")
    if resume_state is not None and list(classes) != resume_labels:
        raise DatasetError(f"--resume: the dataset's classes differ from the run's labels "
                           f"({len(classes)} vs {len(resume_labels)} classes)")
    if cfg.model.num_classes != len(classes):
        say(f"model.num_classes {cfg.model.num_classes} -> {len(classes)} (classes found in the data)")
        cfg.model.num_classes = len(classes)
    cfg.validate()

    bad_log = run_dir / "bad_videos.txt" if is_main else None
    train_ds = VideoClipDataset(train_samples, classes, cfg.data, train=True, seed=cfg.seed, bad_log=bad_log)
    scan = scan_dataset(train_ds, progress=progress and is_main, desc="checking training videos")
    say(f"training videos: {scan.summary}")
    val_ds = None
    if test_samples:
        val_ds = VideoClipDataset(test_samples, classes, cfg.data, train=False, seed=cfg.seed, bad_log=bad_log)
        vscan = scan_dataset(val_ds, progress=progress and is_main, desc="checking test videos")
        say(f"test videos: {vscan.summary}")
    say(f"{len(classes)} classes, {len(train_ds)} training / {len(val_ds) if val_ds else 0} validation videos; "
        f"{train_ds.flip.describe(classes)}")

    if dinfo.enabled:
        from torch.utils.data.distributed import DistributedSampler

        train_sampler: Any = DistributedSampler(train_ds, num_replicas=dinfo.world_size, rank=dinfo.rank,
                                                shuffle=True, seed=cfg.seed, drop_last=False)
    else:
        train_sampler = EpochShuffleSampler(len(train_ds), cfg.seed)
    nw = cfg.data.num_workers
    pin = device.type == "cuda"
    train_loader = make_loader(train_ds, cfg.batch_size, sampler=train_sampler, num_workers=nw, pin_memory=pin,
                               seed=cfg.seed, persistent_workers=nw > 0)
    val_loader = None
    if val_ds is not None:
        val_loader = make_loader(val_ds, cfg.eval_batch_size or cfg.batch_size,
                                 sampler=ShardSampler(len(val_ds), dinfo.rank, dinfo.world_size),
                                 num_workers=nw, pin_memory=pin, seed=cfg.seed, persistent_workers=nw > 0)

    # ---- model, optimiser, EMA ------------------------------------------------------------------
    seed_everything(_derive_seed(cfg.seed, "init"))
    model = ActionNet(cfg.model)
    if backbone_weights and resume_state is None:
        try:
            report = load_backbone_weights(model, backbone_weights, prefix="backbone.")
        except ValueError as exc:
            raise CheckpointError(f"--backbone-weights: {exc}") from exc
        say(f"backbone weights {backbone_weights}: {len(report.missing)} missing, {len(report.unexpected)} "
            f"unexpected, {len(report.mismatched)} mismatched tensors"
            + (f" (mismatched: {report.mismatched[:4]})" if report.mismatched else ""))
    if init_from and resume_state is None:
        say(init_from_checkpoint(model, init_from))
    model.to(device)
    groups = parameter_groups(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.flow_lr_scale)
    for g in groups:
        g["initial_lr"] = g["lr"]
    initial_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0)
    scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16"))
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    start_epoch, global_step = 0, 0
    best_acc: float | None = None
    best_epoch: int | None = None
    best_conf: list | None = None
    history: list[dict] = []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        for g, lr0 in zip(optimizer.param_groups, initial_lrs):
            g["initial_lr"] = lr0  # the current config's rates (an override on resume wins)
        if ema is not None:
            if resume_state.get("ema") is None:
                raise CheckpointError("--resume: this run was trained without EMA; set ema_decay=0")
            ema.load_state_dict(_to_device(resume_state["ema"], device))
        if resume_state.get("scaler") and amp == "fp16":
            scaler.load_state_dict(resume_state["scaler"])
        start_epoch = int(resume_state["epoch"])
        global_step = int(resume_state["global_step"])
        best_acc = resume_state.get("best_acc")
        best_epoch = resume_state.get("best_epoch")
        best_conf = resume_state.get("best_confusion")
        history = list(resume_state.get("history") or [])
        _set_rng_state(resume_state["rng"])
        say(f"resuming {run_dir} after epoch {start_epoch} (step {global_step})")

    ddp_model: nn.Module = model
    if dinfo.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- files ------------------------------------------------------------------------------------
    writer = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".*.pt.*.tmp"):  # a save cut short by a kill (the .pt files are intact)
            stale.unlink(missing_ok=True)
        dump_yaml(cfg, run_dir / "config.yaml")
        if resume_state is None:
            _write_log_csv(run_dir / "log.csv", [])
        writer = _open_tensorboard(run_dir, cfg.tensorboard, say)
    fingerprints = {"train": fingerprint(train_ds.samples), "test": fingerprint(val_ds.samples) if val_ds else ""}
    spec = _input_spec(cfg)
    mean, std = spec.mean, spec.std
    nparams = sum(p.numel() for p in model.parameters())
    say(f"run folder: {run_dir.resolve()}")
    say(f"model: {cfg.model.backbone} x{cfg.model.width} flow={cfg.model.flow} after {cfg.model.flow_after} "
        f"({nparams / 1e6:.2f} M parameters); device {device}"
        + (f" x {dinfo.world_size} processes" if dinfo.enabled else "") + f"; amp {amp}; "
        f"batch {cfg.batch_size} x accumulate {cfg.optim.accumulate}; {cfg.epochs} epochs")

    steps_per_epoch = max(1, math.ceil(len(train_loader) / cfg.optim.accumulate))
    eval_model = ema.module if ema is not None else model
    start_time = time.perf_counter()
    epochs_this_call = 0

    for epoch in range(start_epoch, cfg.epochs):
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            break
        seed_everything(_derive_seed(cfg.seed, "epoch", epoch, dinfo.rank))
        train_sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        ddp_model.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        seen = 0
        data_time = 0.0
        n_batches = len(train_loader)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (progress and is_main), dynamic_ncols=True)
        t_data = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for i, (clips, labels, _) in enumerate(train_loader):
            data_time += time.perf_counter() - t_data
            group = i // cfg.optim.accumulate
            group_size = min(cfg.optim.accumulate, n_batches - group * cfg.optim.accumulate)
            last_in_group = (i + 1) % cfg.optim.accumulate == 0 or i + 1 == n_batches
            if i % cfg.optim.accumulate == 0:
                factor = lr_factor(global_step, steps_per_epoch, cfg)
                for g in optimizer.param_groups:
                    g["lr"] = g["initial_lr"] * factor
            x = normalize_on_device(clips.to(device, non_blocking=True), mean, std)
            y = labels.to(device, non_blocking=True)
            sync = contextlib.nullcontext() if (last_in_group or not dinfo.enabled) else ddp_model.no_sync()
            with sync:
                with _autocast(device, amp):
                    logits = ddp_model(x)
                    loss = F.cross_entropy(logits.float(), y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {global_step}; "
                                             f"lower optim.lr or set optim.grad_clip")
                scaler.scale(loss / group_size).backward()
            if last_in_group:
                if cfg.optim.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                if ema is not None:
                    ema.update(model)
            b = labels.shape[0]
            loss_sum += loss.detach().double().cpu() * b
            correct += (logits.detach().argmax(1) == y).sum().cpu()
            seen += b
            if (i + 1) % cfg.log_every == 0 or i + 1 == n_batches:
                elapsed = time.perf_counter() - t_epoch
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}",
                                clips_s=f"{seen * dinfo.world_size / elapsed:.1f}",
                                data=f"{data_time / (i + 1) * 1000:.0f}ms", refresh=False)
                if writer is not None:
                    writer.add_scalar("train/loss_step", float(loss.detach()), global_step)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)
            bar.update(1)
            t_data = time.perf_counter()
        bar.close()
        train_seconds = time.perf_counter() - t_epoch
        totals = _all_reduce_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64)])
                                 .to(device if (dinfo.enabled and device.type == "cuda") else "cpu"), dinfo).cpu()
        train_loss = float(totals[0] / totals[2])
        train_acc = float(totals[1] / totals[2])
        clips_per_s = float(totals[2]) / train_seconds

        val = None
        do_eval = val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)
        if do_eval:
            val = validate(eval_model, val_loader, device, len(classes), mean, std, amp, dinfo,
                           progress=progress and is_main, desc=f"validate {epoch + 1}")
        row = {
            "epoch": epoch + 1, "step": global_step, "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss, "train_acc": train_acc,
            "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
            "clips_per_s": clips_per_s, "data_time": data_time / max(1, n_batches),
            "seconds": time.perf_counter() - t_epoch,
        }
        history.append(row)
        improved = val is not None and (best_acc is None or val["acc"] > best_acc)
        if improved:
            best_acc, best_epoch, best_conf = val["acc"], epoch + 1, val["confusion"].tolist()

        if is_main:
            summary = {
                "epochs": epoch + 1, "global_step": global_step, "classes": len(classes),
                "train_videos": len(train_ds), "val_videos": len(val_ds) if val_ds else 0,
                "best_val_acc": best_acc, "best_epoch": best_epoch,
                "last_val_acc": val["acc"] if val else None, "train_loss": train_loss, "train_acc": train_acc,
                "dataset_fingerprint": fingerprints, "config": to_dict(cfg),
                "weights": "ema" if ema is not None else "raw", "world_size": dinfo.world_size,
                "torch": str(torch.__version__),
            }
            weights = _cpu_state((ema.module if ema is not None else model).state_dict())
            if improved or val_loader is None:
                save_checkpoint(Checkpoint(cfg.model, classes, spec, weights, dict(summary, saved_epoch=epoch + 1)),
                                run_dir / "best.pt")
            resume_out = {
                "model": _cpu_state(model.state_dict()),
                "ema": ({"state_dict": weights, "updates": ema.updates, "decay": ema.decay} if ema is not None else None),
                "optimizer": _to_device(optimizer.state_dict(), torch.device("cpu")),
                "scaler": scaler.state_dict() if amp == "fp16" else None,
                "epoch": epoch + 1, "global_step": global_step,
                "best_acc": best_acc, "best_epoch": best_epoch, "best_confusion": best_conf,
                "history": history, "rng": _rng_state(),
            }
            save_checkpoint(Checkpoint(cfg.model, classes, spec, weights, dict(summary, saved_epoch=epoch + 1),
                                       resume=resume_out), run_dir / "last.pt")
            _write_log_csv(run_dir / "log.csv", history)
            _write_plots(run_dir, history, classes, best_conf, best_epoch)
            if writer is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_acc", "clips_per_s"):
                    if row[key] is not None:
                        writer.add_scalar(f"epoch/{key}", row[key], epoch + 1)
                writer.flush()
            vtxt = f" val_loss {val['loss']:.3f} val_acc {val['acc'] * 100:.1f}%" if val else ""
            say(f"epoch {epoch + 1}/{cfg.epochs}: loss {train_loss:.3f} acc {train_acc * 100:.1f}%{vtxt} "
                f"lr {row['lr']:.2g} {clips_per_s:.1f} clips/s data {row['data_time'] * 1000:.0f} ms/batch "
                f"({_fmt_time(row['seconds'])})" + (" *best*" if improved else ""))
        _barrier(dinfo)
        epochs_this_call += 1

    if writer is not None:
        writer.close()
    epochs_done = len(history)
    if is_main:
        total = time.perf_counter() - start_time
        best_txt = f"{best_acc * 100:.2f}% (epoch {best_epoch})" if best_acc is not None else "n/a (no validation)"
        say(f"done: {epochs_done}/{cfg.epochs} epochs in {_fmt_time(total)}; run folder {run_dir.resolve()}; "
            f"best validation accuracy {best_txt}")
    return TrainResult(run_dir=run_dir, best_val_acc=best_acc, best_epoch=best_epoch, epochs_done=epochs_done,
                       history=history, classes=list(classes), model=model,
                       ema_model=ema.module if ema is not None else None, rank=dinfo.rank)


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


def _write_plots(run_dir: Path, history: list[dict], classes: list[str], best_conf: list | None,
                 best_epoch: int | None) -> None:
    from . import viz

    cols: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")}
    for row in history:
        for k in cols:
            v = row.get(k)
            cols[k].append(float("nan") if v is None else float(v))
    viz.plot_curves(cols, run_dir / "curves.png", title=f"{run_dir.name}")
    if best_conf is not None:
        viz.plot_confusion(np.asarray(best_conf), classes, run_dir / "confusion.png",
                           title=f"validation, epoch {best_epoch} (single view)",
                           json_path=run_dir / "confusion.json")


# -------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m repflow_core.train",
        description="Train a representation-flow action recognition model (see config/*.yaml).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m repflow_core.train --config config/train_synthetic.yaml\n"
               "  python -m repflow_core.train --config config/train_ucf101.yaml --set data.root=/data/UCF101 "
               "model.width=0.5 --epochs 3\n"
               "  python -m repflow_core.train --resume runs/synthetic\n"
               "  torchrun --nproc_per_node 4 -m repflow_core.train --config config/train_kinetics.yaml",
    )
    p.add_argument("--config", help="YAML config (default with --resume: RUN_DIR/config.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--backbone-weights", metavar="PATH", help="torchvision ResNet weights to start the backbone from")
    p.add_argument("--init-from", metavar="CKPT", help="start from a repflow checkpoint's weights (fine-tuning; "
                                                        "a classifier for another class count is left fresh)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact reruns)")
    p.add_argument("--overwrite", action="store_true", help="start over in an out_dir that already holds a run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)
    add_override_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    path = args.config
    if path is None and args.resume:
        candidate = Path(args.resume) / "config.yaml"
        if candidate.is_file():
            path = str(candidate)
    if path is None:
        raise ConfigError("pass --config FILE (e.g. config/train_synthetic.yaml) or --resume RUN_DIR")
    overrides = collect_overrides(args)
    if args.deterministic:
        overrides.append("deterministic=true")
    return load_train_config(path, overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        result = train(cfg, resume=args.resume, backbone_weights=args.backbone_weights, init_from=args.init_from,
                       progress=not args.no_progress, stop_after_epochs=args.stop_after_epochs,
                       overwrite=args.overwrite)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last completed epoch is in last.pt; continue with --resume RUN_DIR",
              file=sys.stderr)
        return 130
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if result.rank == 0:
        best = f"{result.best_val_acc * 100:.2f}%" if result.best_val_acc is not None else "n/a"
        print(f"run folder: {result.run_dir.resolve()}")
        print(f"best validation accuracy: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
