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
        _warn_if_other_size(root, data, syn, log)
        return False
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} exists but has no {data.train_list}; not generating the synthetic "
                           f"dataset over it (remove the folder or point data.root elsewhere)")
    from .synthetic import SynthConfig, write_dataset

    log(f"synthetic dataset not found at {root}: generating {syn.per_class} clips per class "
        f"({syn.num_frames} frames, {syn.size}x{syn.size}, seed {syn.seed}, generation {syn.generation})"
        + (f" and {syn.generation2_per_class} of generation 2 ({', '.join(syn.geometries)} at a short side of "
           f"{syn.size})" if syn.generation2_per_class else "") + " ...")
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    info = write_dataset(tmp, syn.per_class, num_frames=syn.num_frames, size=syn.size, fps=syn.fps,
                         seed=syn.seed, test_fraction=syn.test_fraction, progress=progress,
                         generation=syn.generation,
                         config=SynthConfig.from_dict(syn.generator) if syn.generation == 2 else None)
    if syn.generation2_per_class:
        extra = _add_generation2(tmp, syn, progress)
        info["num_videos"] += extra["num_videos"]
        info["num_train"] += extra["num_train"]
        info["num_test"] += extra["num_test"]
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    log(f"wrote {info['num_videos']} videos ({info['num_train']} train / {info['num_test']} test) to {root} "
        f"in {info['seconds']:.0f} s")
    return True


def generation2_sizes(geometries: list[str], short_side: int) -> list[tuple[int, int]]:
    """(height, width) of each ``"WxH"`` geometry scaled to ``short_side`` on its short side (even sides)."""
    from .synthetic_stream import parse_geometry

    sizes = []
    for g in geometries:
        h, w = parse_geometry(g)
        k = short_side / min(h, w)
        sizes.append((max(2, 2 * round(h * k / 2)), max(2, 2 * round(w * k / 2))))
    return sizes


def _add_generation2(folder: Path, syn: Any, progress: bool) -> dict:
    """Write ``syn.generation2_per_class`` generation-2 clips per class beside the generation-1 set in
    ``folder`` (same class folders, ``g2_`` file names) and append them to its split lists."""
    from .synthetic import SynthConfig, write_dataset

    part = folder / ".generation2"
    info = write_dataset(part, syn.generation2_per_class, num_frames=syn.num_frames,
                         sizes=generation2_sizes(syn.geometries, syn.size), fps=syn.fps, seed=syn.seed + 1,
                         test_fraction=syn.test_fraction, progress=progress, generation=2,
                         config=SynthConfig.from_dict(syn.generator), name_prefix="g2_")
    for name in ("trainlist.txt", "testlist.txt"):
        rels = [line for _, line in _read_lines(part / name)]
        for rel in rels:
            os.replace(part / rel, folder / rel)
        with open(folder / name, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{rel}\n" for rel in rels))
    shutil.rmtree(part)
    return info


def _warn_if_other_size(root: Path, data: Any, syn: Any, log: Callable[[str], None]) -> None:
    """A dataset folder written by another recipe (e.g. 40 clips per class where the config now asks for 320)
    is used as it is, not rewritten: say so, since the run then trains on other data than its config says."""
    try:  # the loader's own readers (comments, BOM); a folder they reject is the loader's to report
        lists = [root / data.train_list] + ([root / data.test_list] if data.test_list else [])
        clips = sum(len(_read_lines(path)) for path in lists if path.is_file())
        classes = len(_read_class_ind(root / "classInd.txt"))
    except (OSError, DatasetError):
        return
    per_class = syn.per_class + syn.generation2_per_class
    want = (f"synthetic.per_class={syn.per_class}" if not syn.generation2_per_class else
            f"the {syn.per_class} + {syn.generation2_per_class} per class of synthetic.per_class + "
            "generation2_per_class")
    if classes and clips != per_class * classes:
        log(f"note: {root} holds {clips} clips ({clips / classes:.0f} per class), not {want}: training on what is "
            f"there; remove the folder (or set data.root elsewhere) to render {per_class} per class")
