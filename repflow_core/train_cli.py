"""Command line of :mod:`repflow_core.train`: the argument parser and the config it resolves.

``python -m repflow_core.train`` (``train.main``) uses these; they live apart so ``train.py`` holds the run itself.
Both names are re-exported by :mod:`repflow_core.train`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import ConfigError, TrainConfig, add_override_arguments, collect_overrides, load_train_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m repflow_core.train",
        description="Train a representation-flow action recognition model (see config/*.yaml).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m repflow_core.train --config config/train_synthetic.yaml\n"
               "  python -m repflow_core.train --config config/train_own_clips_cpu.yaml --data-root /data/my_clips\n"
               "  python -m repflow_core.train --config config/train_ucf101.yaml --set data.root=/data/UCF101 "
               "model.width=0.5 --epochs 3\n"
               "  python -m repflow_core.train --config config/finetune.yaml --init-from "
               "repflow_core/weights/synthetic_default.pt --data-root data/my_actions\n"
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
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (one line per epoch, with elapsed time and an estimate of the time left)")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="console level of library messages (the run's own lines are always printed)")
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
