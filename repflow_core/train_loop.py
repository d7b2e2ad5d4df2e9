"""The inner loops of training: :func:`train_one_epoch`, :func:`validate`, the weight EMA, and the
distributed / reproducibility helpers they need. The run around them (data, resume, checkpoints, logs,
CLI) is in :mod:`repflow_core.train`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

from . import devices
from .data.dataset import INVALID_LABEL
from .data.transforms import normalize_on_device

__all__ = ["DistInfo", "EpochShuffleSampler", "ModelEMA", "ShardSampler", "StepSettings", "derive_seed",
           "init_distributed", "recalibrate_batchnorm", "seed_everything", "train_one_epoch", "validate"]


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


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        kwargs = {}
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            kwargs["device_id"] = torch.device("cuda", local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo, device: torch.device) -> torch.Tensor:
    """Sum ``t`` over ranks (NCCL needs CUDA tensors, gloo CPU ones); returns a CPU tensor."""
    if not info.enabled:
        return t
    t = t.to(device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that depends only on (seed, epoch): the order after a resume is the same."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, "shuffle", self.epoch))
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


# ---------------------------------------------------------------------------------- reproducibility


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of parts (stable across processes and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The python / numpy / torch (and CUDA) generator states, as weights_only-loadable values."""
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


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state_dict (what checkpoints store)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors in nested dicts / lists moved to ``device`` (optimiser and EMA states on resume)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------- EMA


class ModelEMA:
    """Exponential moving average of a model's weights, validated and saved as the checkpoint's weights.

    Parameters are averaged with a decay that warms up as ``min(decay, (1 + n) / (10 + n))`` after n
    updates, so the average forgets the random initialisation quickly. Buffers (the BatchNorm running
    statistics and counters) are *copied* from the live model, not averaged: BatchNorm statistics belong to
    the weights that produced them. Measured (issue 14, README "Training and evaluation"): this alone lowered
    the first validation losses only a little (5.1 / 8.4 vs 6.0 / 11.6 in epochs 2-3; the raw weights: 11.1 /
    14.2); the cause was BatchNorm's young running estimates, which :func:`recalibrate_batchnorm` re-estimates
    for the evaluated weights before validation (as torch's ``AveragedModel`` + ``update_bn`` would).
    """

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
        params = dict(model.named_parameters())
        for name, value in self.module.named_parameters():
            value.lerp_(params[name].detach().to(value.dtype), 1.0 - d)
        buffers = dict(model.named_buffers())
        for name, value in self.module.named_buffers():
            value.copy_(buffers[name].detach())

    def state_dict(self) -> dict:
        return {"state_dict": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])


# ------------------------------------------------------------------------------------------ loops


@dataclass
class StepSettings:
    """What one epoch of optimisation needs besides the model, data and optimiser."""

    device: torch.device
    amp: str  # none | fp16 | bf16 (CUDA only; the caller turned it off elsewhere)
    mean: tuple
    std: tuple
    accumulate: int = 1
    grad_clip: float = 0.0
    log_every: int = 10
    dist: DistInfo = field(default_factory=DistInfo)
    progress: bool = False
    joint: Any = None  # repflow_core.joint_loss.JointLoss: unsupervised motion terms added to the cross-entropy
    # BatchNorm layers of frozen stages (module names; repflow_core.train_finetune): kept in eval mode in training
    # and never re-estimated, so their statistics stay those of the checkpoint fine-tuning started from.
    frozen_bn: tuple[str, ...] = ()


def autocast(device: torch.device, amp: str):
    """Mixed precision for training and validation (``amp`` none | fp16 | bf16), CUDA only."""
    if amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    return devices.autocast(device, amp)


def train_one_epoch(model: nn.Module, ddp_model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scheduler, scaler, ema: ModelEMA | None, s: StepSettings, epoch_desc: str = "",
                    writer=None, global_step: int = 0) -> dict:
    """One pass over ``loader``; the schedule steps with every optimiser step (accumulated micro-batches).

    The objective is the cross-entropy plus the weighted motion terms that ``s.joint`` collects from the
    forward pass (the joint loss, Eq. 3 of the service-robot paper); in UF-TSN's ``flow`` stage the motion
    terms alone (the estimator learns without labels; the cross-entropy is still reported).

    Returns ``train_loss`` (the cross-entropy), ``train_acc``, ``terms`` ({name: mean weighted term}),
    ``clips_per_s`` (summed over ranks), ``data_time`` (seconds per batch waiting for the loader),
    ``global_step`` (optimiser steps so far) and ``seconds``."""
    import time

    ddp_model.train()
    keep_frozen_bn_eval(model, s.frozen_bn)
    t0 = time.perf_counter()
    use_ce = getattr(model, "stage", None) != "flow"
    term_sums: dict[str, torch.Tensor] = {}
    loss_sum, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    seen, data_time = 0, 0.0
    n = len(loader)
    bar = tqdm(total=n, desc=epoch_desc, unit="batch", leave=False, disable=not s.progress, dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    t_data = time.perf_counter()
    for i, (clips, labels, _) in enumerate(loader):
        data_time += time.perf_counter() - t_data
        group_size = min(s.accumulate, n - (i // s.accumulate) * s.accumulate)
        last_in_group = (i + 1) % s.accumulate == 0 or i + 1 == n
        x = normalize_on_device(clips.to(s.device, non_blocking=True), s.mean, s.std)
        y = labels.to(s.device, non_blocking=True)
        # DDP: only the last micro-batch of a group all-reduces its gradients.
        sync = contextlib.nullcontext() if (last_in_group or not s.dist.enabled) else ddp_model.no_sync()
        with sync:
            with autocast(s.device, s.amp):
                logits = ddp_model(x)
                ce = F.cross_entropy(logits.float(), y)
            terms = s.joint.collect(model) if s.joint is not None else {}
            loss = (ce if use_ce else 0.0) + sum(terms.values())
            if not use_ce and not terms:
                raise ValueError("UF-TSN's flow stage learns from the motion terms only, and there are none")
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} ({_describe_terms(ce, terms)}) at {epoch_desc} "
                                         f"step {global_step}; lower optim.lr or set optim.grad_clip")
            scaler.scale(loss / group_size).backward()
        if last_in_group:
            if s.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            global_step += 1
            if ema is not None:
                ema.update(model)
        loss_sum += ce.detach().double().cpu() * labels.shape[0]
        for name, value in terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + value.detach().double().cpu() * labels.shape[0]
        correct += (logits.detach().argmax(1) == y).sum().cpu()
        seen += labels.shape[0]
        if (i + 1) % s.log_every == 0 or i + 1 == n:
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}",
                            data=f"{data_time / (i + 1) * 1000:.0f}ms", refresh=False)
            if writer is not None:
                writer.add_scalar("train/loss_step", float(loss.detach()), global_step)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)
        bar.update(1)
        t_data = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - t0
    names = sorted(term_sums)  # the same on every rank (the same model and config)
    totals = all_reduce_sum(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64)]
                                        + [term_sums[k] for k in names]), s.dist, s.device)
    return {"train_loss": float(totals[0] / totals[2]), "train_acc": float(totals[1] / totals[2]),
            "terms": {k: float(totals[3 + i] / totals[2]) for i, k in enumerate(names)},
            "clips_per_s": float(totals[2]) / seconds, "data_time": data_time / max(1, n),
            "global_step": global_step, "seconds": seconds}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader, s: StepSettings, max_batches: int = 20) -> int:
    """Re-estimate every BatchNorm's running statistics of ``model`` from up to ``max_batches`` training
    batches (a cumulative average, as ``torch.optim.swa_utils.update_bn`` does for averaged weights); the
    rest of the model stays in eval mode (no dropout). Returns the number of batches used.

    Why (issue 14.3): BatchNorm's running estimates move with momentum 0.1, so after n optimiser steps they
    still hold 0.9^n of their initial (0, 1): after the first epoch of a small data set (3 steps of 8 clips)
    the eval-mode network normalises with statistics of almost nothing it has seen, and its validation loss
    was 5-11 (55-205 in the issue) against a training loss of 1.1. The EMA weights have the same problem
    with the live model's statistics. Re-estimating them for the weights being evaluated removes it.
    """
    skip = set(s.frozen_bn)  # frozen stages keep the statistics they came with
    norms = [m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and n not in skip]
    if not norms:
        return 0
    was_training = model.training
    model.eval()
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    used = 0
    try:
        for clips, labels, _ in loader:
            keep = labels != INVALID_LABEL
            if bool(keep.any()):
                model(normalize_on_device(clips[keep].to(s.device, non_blocking=True), s.mean, s.std))
                used += 1
            if used >= max_batches:
                break
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return used


def keep_frozen_bn_eval(model: nn.Module, names: tuple[str, ...]) -> None:
    """Put the named BatchNorm layers (frozen stages) back in eval mode after ``model.train()``: in train mode
    they would normalise with the batch's statistics and move their running estimates."""
    if names:
        modules = dict(model.named_modules())
        for n in names:
            modules[n].eval()


def _describe_terms(ce: torch.Tensor, terms: dict[str, torch.Tensor]) -> str:
    return ", ".join([f"cross-entropy {float(ce):.4g}"] + [f"{k} {float(v):.4g}" for k, v in terms.items()])


@torch.no_grad()
def validate(model: nn.Module, loader, s: StepSettings, num_classes: int, desc: str = "validate") -> dict:
    """Single-view clip accuracy and loss (summed over ranks) and the confusion matrix (rows = truth)."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    skipped = 0
    for clips, labels, _ in tqdm(loader, desc=desc, leave=False, disable=not s.progress, unit="batch"):
        keep = labels != INVALID_LABEL  # unreadable videos are reported by the dataset and left out
        skipped += int((~keep).sum())
        if not bool(keep.any()):
            continue
        clips, labels = clips[keep], labels[keep]
        x = normalize_on_device(clips.to(s.device, non_blocking=True), s.mean, s.std)
        y = labels.to(s.device)
        with autocast(s.device, s.amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
        pred = logits.argmax(1).cpu()
        conf.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    model.train(was_training)
    totals = torch.cat([conf.flatten().double(), loss_sum.view(1), torch.tensor([float(skipped)], dtype=torch.float64)])
    totals = all_reduce_sum(totals, s.dist, s.device)
    conf = totals[: num_classes * num_classes].round().long().view(num_classes, num_classes)
    n = int(conf.sum())
    return {
        "acc": float(conf.diag().sum()) / n if n else float("nan"),
        "loss": float(totals[-2]) / n if n else float("nan"),
        "n": n,
        "skipped": int(totals[-1]),
        "confusion": conf,
    }
