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

from .layout_scan import _read_lines
from .layouts import DatasetError
from .split_lists import _read_class_ind

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
        _warn_if_other_size(root, data, syn.per_class, log)
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


def _warn_if_other_size(root: Path, data: Any, per_class: int, log: Callable[[str], None]) -> None:
    """A dataset folder written by another recipe (e.g. 40 clips per class where the config now asks for 320)
    is used as it is, not rewritten: say so, since the run then trains on other data than its config says."""
    try:  # the loader's own readers (comments, BOM); a folder they reject is the loader's to report
        lists = [root / data.train_list] + ([root / data.test_list] if data.test_list else [])
        clips = sum(len(_read_lines(path)) for path in lists if path.is_file())
        classes = len(_read_class_ind(root / "classInd.txt"))
    except (OSError, DatasetError):
        return
    if classes and clips != per_class * classes:
        log(f"note: {root} holds {clips} clips ({clips / classes:.0f} per class), not synthetic.per_class="
            f"{per_class}: training on what is there; remove the folder (or set data.root elsewhere) to render "
            f"{per_class} per class")
