"""Dataset preparation shared by training and evaluation: generate the synthetic set on first use.

It lives under ``data/`` (not in the training module) so that ``evaluate`` can prepare the default
dataset without importing training.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layouts import DatasetError

__all__ = ["maybe_generate_synthetic"]


def maybe_generate_synthetic(cfg: Any, log: Callable[[str], None], progress: bool = True) -> bool:
    """Write the synthetic dataset into ``cfg.data.root`` when ``cfg.synthetic.generate`` is set and the
    split list is missing (``cfg``: a TrainConfig). Written to a temporary sibling folder then renamed, so
    an interrupted generation never leaves a half dataset behind. Returns True when something was generated."""
    syn, data = cfg.synthetic, cfg.data
    if not syn.generate or data.layout != "splitlist" or not data.root:
        return False
    root = Path(data.root).expanduser()
    if (root / data.train_list).is_file():
        return False
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} exists but has no {data.train_list}; not generating the synthetic "
                           f"dataset over it (remove the folder or point data.root elsewhere)")
    from .synthetic import SynthConfig, write_dataset

    log(f"synthetic dataset not found at {root}: generating {syn.per_class} clips per class "
        f"({syn.num_frames} frames, {syn.size}x{syn.size}, seed {syn.seed}, generation {syn.generation}) ...")
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    info = write_dataset(tmp, syn.per_class, num_frames=syn.num_frames, size=syn.size, fps=syn.fps,
                         seed=syn.seed, test_fraction=syn.test_fraction, progress=progress,
                         generation=syn.generation,
                         config=SynthConfig.from_dict(syn.generator) if syn.generation == 2 else None)
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    log(f"wrote {info['num_videos']} videos ({info['num_train']} train / {info['num_test']} test) to {root} "
        f"in {info['seconds']:.0f} s")
    return True
