"""Training: ``python -m repflow_core.train --config config/train_synthetic.yaml [overrides]``.

Usage::

    python -m repflow_core.train --config config/train_synthetic.yaml
    python -m repflow_core.train --config config/train_own_clips_cpu.yaml --data-root /data/my_clips
    python -m repflow_core.train --resume runs/synthetic            # continue an interrupted run
    torchrun --nproc_per_node 4 -m repflow_core.train --config config/train_kinetics.yaml  # multi-GPU

What it does (paper appendix A where it says something):

* SGD, momentum 0.9, weight decay; the flow layer's parameters at 0.01 x lr (``flow.parameter_groups``);
  step (x0.1 every ``step_size`` epochs) or cosine schedule after an optional linear warm-up
  (:func:`lr_factor` in a ``torch.optim.lr_scheduler.LambdaLR``), stepped with every optimiser step;
  gradient clipping; gradient accumulation; dropout from the model config.
* The loaders hand uint8 clips; the float conversion and normalisation happen on the device.
* Mixed precision (fp16 with loss scaling, or bf16) on CUDA; ignored with a warning on the CPU.
* An exponential moving average (EMA) of the weights (:class:`~repflow_core.train_loop.ModelEMA`).
  Validation uses the EMA weights, and checkpoints store them as ``state_dict``.
* **Honest model selection** (issue 14): ``data.val_fraction`` of the training videos, stratified by
  class and grouped by source video (:mod:`repflow_core.data.splits`), are held out as the validation
  split, evaluated every ``eval_every`` epochs (and after the last) with one centre clip and crop per
  video; ``best.pt`` is the epoch with the best validation accuracy. The test split is evaluated once,
  at the end, with the best weights. ``python -m repflow_core.evaluate`` does the full multi-view test.
* The joint loss (issue 13): ``loss.*`` weights add unsupervised motion terms on the flow layers' flow
  (:mod:`repflow_core.joint_loss`); ``model.motion: uftsn`` trains UF-TSN through its ``stages``.
* Young BatchNorm statistics are re-estimated before validating (``bn_recalibrate_until``, issue 14.3).
* Fine-tuning from few clips (issue 10.3, ``config/finetune.yaml``, :mod:`repflow_core.train_finetune`):
  ``--init-from CKPT``, frozen stages (``freeze`` / ``freeze_until``), ``data.balanced`` sampling, and
  ``early_stopping_patience`` on the validation split (the reason is logged and kept in the checkpoints).
* RUN_DIR (``out_dir``): ``config.yaml`` (resolved), ``split.json`` (the validation split), ``last.pt``
  (every epoch, with resume state), ``best.pt``, ``log.csv``, ``train.log``, ``curves.png``,
  ``confusion.png``/``.json`` (validation at the best epoch), ``test_confusion.json``, ``tb/``
  (TensorBoard, when installed). Files are written atomically; killing the process at any moment loses
  at most the current epoch, and ``--resume RUN_DIR`` continues exactly where the last completed epoch
  left off.
* Reproducibility: every epoch reseeds the torch / numpy / python generators from (seed, epoch, rank),
  the shuffle order depends only on (seed, epoch), and each clip's augmentation only on (seed, epoch,
  index) (see data/dataset.py). So a resumed run sees exactly the batches an uninterrupted one would;
  with ``--deterministic`` (torch.use_deterministic_algorithms) the weights are bit-identical on the CPU.
* Distributed: under torchrun (WORLD_SIZE > 1) one process per GPU (NCCL) or per CPU process (gloo),
  DistributedDataParallel, a DistributedSampler per epoch, validation sharded over ranks and summed;
  only rank 0 writes files.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import Checkpoint, CheckpointError, InputSpec, load_checkpoint_dict, save_checkpoint
from .config import (
    ConfigError,
    TrainConfig,
    dump_yaml,
    to_dict,
)
from .data.layouts import DatasetError
from .data.prepare import maybe_generate_synthetic
from .data.transforms import KINETICS_MEAN, KINETICS_STD
from .devices import DeviceError, resolve_device
from .joint_loss import JointLoss
from .train_cli import build_parser, config_from_args
from .train_data import RunData, prepare_data
from .train_finetune import EarlyStopping, frozen_batchnorm_names
from .train_io import add_run_log, epoch_line, log_to_file, open_tensorboard, write_log_csv, write_plots
from .train_loop import (
    DistInfo,
    ModelEMA,
    StepSettings,
    barrier,
    derive_seed,
    init_distributed,
    recalibrate_batchnorm,
    rng_state,
    seed_everything,
    set_rng_state,
    train_one_epoch,
    validate,
)
from .train_loop import cpu_state as _cpu_state
from .train_loop import to_device as _to_device
from .train_model import build_model, frozen_stages, init_from_checkpoint, lr_factor, set_training_stage

__all__ = ["ModelEMA", "TrainResult", "init_from_checkpoint", "lr_factor", "main", "maybe_generate_synthetic",
           "train", "validate"]

LOG = logging.getLogger("repflow_core.train")

# Old private names, kept for scripts and tests that reach them.
_derive_seed = derive_seed


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
    test: dict | None = None  # the test split with the best weights: acc, loss, n (None when there is none)
    extras: dict = field(default_factory=dict)


def input_spec(cfg: TrainConfig) -> InputSpec:
    d = cfg.data
    return InputSpec(clip_len=d.clip_len, frame_stride=d.frame_stride, size=(d.size, d.size),
                     resize_short=max(d.resize_short, d.size), mean=tuple(KINETICS_MEAN), std=tuple(KINETICS_STD),
                     crop=d.crop)


def train(cfg: TrainConfig, resume: str | os.PathLike | None = None, backbone_weights: str | os.PathLike | None = None,
          init_from: str | os.PathLike | None = None, progress: bool = True, stop_after_epochs: int | None = None,
          overwrite: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``cfg``; see the module docstring. ``resume``: a run folder (or its last.pt) to continue.
    ``backbone_weights``: torchvision ResNet weights for the backbone. ``init_from``: a repflow
    checkpoint whose weights (all that fit, e.g. not a classifier for another class count) start the model.
    ``stop_after_epochs``: return after that many epochs of this call, as if the process had been
    killed right after the checkpoint (used to test resuming). ``log``: where the run's lines go
    (default: printed above the progress bars); they also go to RUN_DIR/train.log."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    run = _Run(cfg, log, progress)
    try:
        return run.execute(resume, backbone_weights, init_from, stop_after_epochs, overwrite)
    finally:
        run.close()
        # Leave the process's global switches as they were (a caller may train and then do other work).
        torch.use_deterministic_algorithms(flags[0])
        torch.utils.deterministic.fill_uninitialized_memory = flags[1]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]


class _Run:
    """One call of :func:`train`: the state shared by its phases (set-up, resume, epochs, final test)."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] | None, progress: bool) -> None:
        self.cfg = copy.deepcopy(cfg).validate().check_stages()
        self.joint: JointLoss | None = None
        self.printer = log or tqdm.write
        self.progress = progress
        self.file_log: logging.Handler | None = None
        self.early: list[str] = []
        self.writer = None
        self.dinfo = DistInfo()

    def say(self, msg: str) -> None:
        if self.dinfo.is_main:
            self.printer(msg)
            if self.file_log is None:
                self.early.append(msg)  # written to train.log once the run folder exists
            log_to_file(self.file_log, msg)

    def close(self) -> None:
        if self.joint is not None:  # the returned model must not keep collecting terms
            self.joint.remove()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.file_log is not None:
            logging.getLogger("repflow_core").removeHandler(self.file_log)
            self.file_log.close()
            self.file_log = None

    # ---- set-up --------------------------------------------------------------------------------------
    def _setup_device(self) -> None:
        cfg = self.cfg
        if cfg.deterministic:
            # cuBLAS needs this before its first use to be deterministic (harmless on the CPU).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        want_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        self.dinfo = init_distributed("cuda" if want_cuda else "cpu")
        try:
            self.device = resolve_device(cfg.device, log=lambda m: None,
                                         local_rank=self.dinfo.local_rank if self.dinfo.enabled else None)
        except DeviceError as exc:
            raise ConfigError(f"device: {exc}") from exc
        if cfg.amp != "none" and self.device.type != "cuda":
            self.say(f"warning: amp={cfg.amp} needs CUDA; training in fp32 on {self.device}")
            cfg.amp = "none"
        torch.use_deterministic_algorithms(cfg.deterministic)
        if cfg.deterministic:
            # Filling new tensors with NaN is a debugging aid of deterministic mode, not needed for
            # determinism, and it makes CPU training several times slower.
            torch.utils.deterministic.fill_uninitialized_memory = False
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = cfg.deterministic
            torch.backends.cudnn.benchmark = not cfg.deterministic

    def _load_resume(self, resume: str | os.PathLike | None, overwrite: bool) -> None:
        cfg = self.cfg
        self.resume_state: dict | None = None
        self.resume_labels: list[str] | None = None
        if resume is None:
            self.run_dir = Path(cfg.out_dir)
            if self.dinfo.is_main and (self.run_dir / "last.pt").exists() and not overwrite:
                raise ConfigError(f"{self.run_dir} already holds a run (last.pt): continue it with --resume "
                                  f"{self.run_dir}, pick another --out-dir, or pass --overwrite")
            return
        rpath = Path(resume)
        ckpt_path = rpath / "last.pt" if rpath.is_dir() else rpath
        data = load_checkpoint_dict(ckpt_path)
        self.resume_state = data.get("resume")
        if not self.resume_state:
            raise CheckpointError(f"{ckpt_path} has no resume state (best.pt files do not; use last.pt)")
        self.run_dir = ckpt_path.parent
        cfg.out_dir = str(self.run_dir)
        saved, current = dict(data["model_config"]), cfg.model.to_dict()
        diff = sorted(k for k in set(saved) | set(current) if k != "num_classes" and saved.get(k) != current.get(k))
        if diff:
            raise ConfigError(f"--resume: the model config differs from the one in {ckpt_path} in "
                              + ", ".join(f"model.{k} ({saved.get(k)!r} there, {current.get(k)!r} here)" for k in diff))
        self.resume_labels = [str(x) for x in data["labels"]]

    def _open_files(self) -> None:
        run_dir = self.run_dir
        if not self.dinfo.is_main:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".*.tmp"):  # a save cut short by a kill (the real files are intact)
            stale.unlink(missing_ok=True)
        self.file_log = add_run_log(run_dir)
        for msg in self.early:
            log_to_file(self.file_log, msg)
        dump_yaml(self.cfg, run_dir / "config.yaml")
        if self.resume_state is None:
            write_log_csv(run_dir / "log.csv", [])
        self.writer = open_tensorboard(run_dir, self.cfg.tensorboard, self.say)

    def _build(self, backbone_weights, init_from) -> None:
        cfg, rs = self.cfg, self.resume_state
        seed_everything(derive_seed(cfg.seed, "init"))
        self.model, self.optimizer, initial_lrs = build_model(cfg, self.device, self.say,
                                                              None if rs else backbone_weights,
                                                              None if rs else init_from)
        self.scaler = torch.amp.GradScaler("cuda", enabled=(cfg.amp == "fp16"))
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.joint = JointLoss(self.model, cfg.loss.weights())  # after the EMA's deepcopy: hooks stay on the model
        self.start_epoch, self.global_step = 0, 0
        self.best_acc: float | None = None
        self.best_epoch: int | None = None
        self.best_conf: list | None = None
        self.history: list[dict] = []
        self.stop_reason: str | None = None
        if rs is not None:
            self.model.load_state_dict(rs["model"])
            self.optimizer.load_state_dict(rs["optimizer"])
            for g, lr0 in zip(self.optimizer.param_groups, initial_lrs):
                g["initial_lr"] = lr0  # the current config's rates (an override on resume wins)
            if self.ema is not None:
                if rs.get("ema") is None:
                    raise CheckpointError("--resume: this run was trained without EMA; set ema_decay=0")
                self.ema.load_state_dict(_to_device(rs["ema"], self.device))
            if rs.get("scaler") and cfg.amp == "fp16":
                self.scaler.load_state_dict(rs["scaler"])
            self.start_epoch, self.global_step = int(rs["epoch"]), int(rs["global_step"])
            self.best_acc, self.best_epoch = rs.get("best_acc"), rs.get("best_epoch")
            self.best_conf = rs.get("best_confusion")
            self.history = list(rs.get("history") or [])
            self.stop_reason = rs.get("stop_reason")
            set_rng_state(rs["rng"])
            self.say(f"resuming {self.run_dir} after epoch {self.start_epoch} (step {self.global_step})")
        spe = max(1, math.ceil(len(self.data.train_loader) / cfg.optim.accumulate))
        # A library scheduler over the closed-form factor: resuming only needs the step count (the
        # constructor applies lr_factor(global_step) to the current config's initial rates).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, steps_per_epoch=spe, cfg=cfg), last_epoch=self.global_step - 1)
        self.ddp_model: nn.Module = self.model
        if self.dinfo.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ---- the run ---------------------------------------------------------------------------------------
    def execute(self, resume, backbone_weights, init_from, stop_after_epochs, overwrite) -> TrainResult:
        cfg = self.cfg
        self._setup_device()
        self._load_resume(resume, overwrite)
        if self.dinfo.is_main:
            maybe_generate_synthetic(cfg, self.say, self.progress)
        barrier(self.dinfo)
        # The run folder is created once the data is known to be there (a wrong data.root leaves nothing).
        self.data: RunData = prepare_data(cfg, self.run_dir, self.dinfo, self.device, self.say, self.progress,
                                          self.resume_labels, resumed=self.resume_state is not None)
        self._open_files()
        self._build(backbone_weights, init_from)
        spec = input_spec(cfg)
        self.steps = StepSettings(device=self.device, amp=cfg.amp, mean=spec.mean, std=spec.std,
                                  accumulate=cfg.optim.accumulate, grad_clip=cfg.optim.grad_clip,
                                  log_every=cfg.log_every, dist=self.dinfo, joint=self.joint,
                                  progress=self.progress and self.dinfo.is_main,
                                  frozen_bn=tuple(frozen_batchnorm_names(self.model, frozen_stages(cfg))))
        self.stopper = EarlyStopping(cfg.early_stopping_patience if self.data.val_loader is not None else 0)
        # After a resume: the validated epochs since the best one still count.
        self.stopper.bad_epochs = sum(1 for r in self.history if r["val_acc"] is not None
                                      and r["epoch"] > (self.best_epoch or 0))
        if cfg.early_stopping_patience and self.data.val_loader is None:
            self.say("warning: early_stopping_patience needs a validation split (data.val_fraction > 0); off")
        nparams = sum(p.numel() for p in self.model.parameters())
        self.say(f"run folder: {self.run_dir.resolve()}")
        m = cfg.model
        kind = "UF-TSN" if m.motion == "uftsn" else f"flow={m.flow} after {m.flow_after}"
        terms = f"; joint loss on {self.joint.hooked_layers} flow layer(s)" if self.joint.hooked_layers else ""
        self.say(f"model: {m.backbone} x{m.width} {kind}{terms} ({nparams / 1e6:.2f} M parameters); "
                 f"device {self.device}"
                 + (f" x {self.dinfo.world_size} processes" if self.dinfo.enabled else "") + f"; amp {cfg.amp}; "
                 f"batch {cfg.batch_size} x accumulate {cfg.optim.accumulate}; {cfg.epochs} epochs")
        start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            if self.stop_reason or (stop_after_epochs is not None and epoch - self.start_epoch >= stop_after_epochs):
                break
            self._epoch(epoch, start, spec)
        test = None
        if len(self.history) == cfg.epochs or self.stop_reason:
            test = self._final_test(spec)
        if self.dinfo.is_main:
            best = (f"{self.best_acc * 100:.2f}% (epoch {self.best_epoch})" if self.best_acc is not None
                    else "n/a (no validation split)")
            ttxt = f"; test accuracy with those weights {test['acc'] * 100:.2f}% ({test['n']} videos)" if test else ""
            if self.stop_reason:
                self.say(self.stop_reason)
            self.say(f"done: {len(self.history)}/{cfg.epochs} epochs in this call "
                     f"{time.perf_counter() - start:.0f} s; run folder {self.run_dir.resolve()}; "
                     f"best validation accuracy {best}{ttxt}")
        return TrainResult(run_dir=self.run_dir, best_val_acc=self.best_acc, best_epoch=self.best_epoch,
                           epochs_done=len(self.history), history=self.history, classes=list(self.data.classes),
                           model=self.model, ema_model=self.ema.module if self.ema is not None else None,
                           rank=self.dinfo.rank, test=test, extras={"stop_reason": self.stop_reason})

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _epoch(self, epoch: int, start: float, spec: InputSpec) -> None:
        cfg, d = self.cfg, self.data
        seed_everything(derive_seed(cfg.seed, "epoch", epoch, self.dinfo.rank))
        d.train_sampler.set_epoch(epoch)
        d.train_ds.set_epoch(epoch)
        t0 = time.perf_counter()
        stage = set_training_stage(self.model, cfg, epoch)
        stats = train_one_epoch(self.model, self.ddp_model, d.train_loader, self.optimizer, self.scheduler,
                                self.scaler, self.ema, self.steps, epoch_desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                writer=self.writer, global_step=self.global_step)
        self.global_step = stats["global_step"]
        val, last = None, epoch + 1 == cfg.epochs
        val_due = d.val_loader is not None and cfg.eval_every > 0 and ((epoch + 1) % cfg.eval_every == 0 or last)
        # Young BatchNorm estimates (issue 14.3): re-estimated for the weights validated (or, without a
        # validation split, for the last epoch's, which best.pt and the test get).
        if self.global_step < cfg.bn_recalibrate_until and (val_due or (d.val_loader is None and last)):
            recalibrate_batchnorm(self.eval_model, d.train_loader, self.steps)
        if val_due:
            val = validate(self.eval_model, d.val_loader, self.steps, len(d.classes), desc=f"validate {epoch + 1}")
        seconds = time.perf_counter() - t0
        elapsed = time.perf_counter() - start
        done_here = epoch + 1 - self.start_epoch
        row = {"epoch": epoch + 1, "step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
               "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
               "clips_per_s": stats["clips_per_s"], "data_time": stats["data_time"], "seconds": seconds,
               "elapsed": elapsed, "eta": elapsed / done_here * (cfg.epochs - epoch - 1), "stage": stage,
               **{f"{k}_loss": v for k, v in stats["terms"].items()}}
        self.history.append(row)
        # Without a validation split every epoch is "best" (best.pt = the latest weights).
        improved = d.val_loader is None or (val is not None and (self.best_acc is None or val["acc"] > self.best_acc))
        if improved and val is not None:
            self.best_acc, self.best_epoch, self.best_conf = val["acc"], epoch + 1, val["confusion"].tolist()
        elif improved:
            self.best_epoch = epoch + 1
        if val is not None and self.stopper.update(improved):
            self.stop_reason = self.stopper.reason(epoch + 1, self.best_epoch, self.best_acc)
        if self.dinfo.is_main:
            self._save(epoch, spec, improved, row)
            self.say(epoch_line(row, cfg.epochs, improved and val is not None))
        barrier(self.dinfo)

    def _summary(self, epoch: int, row: dict) -> dict:
        d = self.data
        return {"epochs": epoch + 1, "global_step": self.global_step, "classes": len(d.classes),
                "train_videos": len(d.train_ds), "val_videos": len(d.val_ds) if d.val_ds else 0,
                "test_videos": len(d.test_ds) if d.test_ds else 0, "selection": "validation split",
                "best_val_acc": self.best_acc, "best_epoch": self.best_epoch, "last_val_acc": row["val_acc"],
                "train_loss": row["train_loss"], "train_acc": row["train_acc"],
                "dataset_fingerprint": d.fingerprints, "config": to_dict(self.cfg),
                "weights": "ema" if self.ema is not None else "raw", "world_size": self.dinfo.world_size,
                "torch": str(torch.__version__), "stop_reason": self.stop_reason}

    def _save(self, epoch: int, spec: InputSpec, improved: bool, row: dict) -> None:
        cfg, run_dir = self.cfg, self.run_dir
        summary = dict(self._summary(epoch, row), saved_epoch=epoch + 1)
        weights = _cpu_state(self.eval_model.state_dict())
        if improved:
            save_checkpoint(Checkpoint(cfg.model, self.data.classes, spec, weights, summary), run_dir / "best.pt")
        ema = self.ema
        resume_out = {
            "model": _cpu_state(self.model.state_dict()),
            "ema": {"state_dict": weights, "updates": ema.updates, "decay": ema.decay} if ema is not None else None,
            "optimizer": _to_device(self.optimizer.state_dict(), torch.device("cpu")),
            "scaler": self.scaler.state_dict() if cfg.amp == "fp16" else None,
            "epoch": epoch + 1, "global_step": self.global_step,
            "best_acc": self.best_acc, "best_epoch": self.best_epoch, "best_confusion": self.best_conf,
            "history": self.history, "rng": rng_state(), "stop_reason": self.stop_reason,
        }
        save_checkpoint(Checkpoint(cfg.model, self.data.classes, spec, weights, summary, resume=resume_out),
                        run_dir / "last.pt")
        write_log_csv(run_dir / "log.csv", self.history)
        write_plots(run_dir, self.history, self.data.classes, self.best_conf, self.best_epoch)
        if self.writer is not None:
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "clips_per_s"):
                if row[key] is not None:
                    self.writer.add_scalar(f"epoch/{key}", row[key], epoch + 1)
            self.writer.flush()

    def _final_test(self, spec: InputSpec) -> dict | None:
        """The test split, once, with best.pt's weights; recorded in log.csv (on the best epoch's row),
        best.pt / last.pt summaries and test_confusion.json."""
        from .train_data import final_test

        return final_test(self, spec)


# -------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from .train_io import configure_cli_logging

    args = build_parser().parse_args(argv)
    configure_cli_logging(getattr(logging, args.log_level))
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
        if result.extras.get("stop_reason"):
            print(result.extras["stop_reason"])
        if result.test is not None:
            print(f"test accuracy (best weights, single view): {result.test['acc'] * 100:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
