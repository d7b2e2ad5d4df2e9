"""A validation split carved out of the training data: stratified by class, grouped, seeded, recorded.

Model selection (which epoch becomes ``best.pt``) must not look at the test videos, or the test figure
reported afterwards is optimistic. So training holds out ``val_fraction`` of its *training* videos:

* **Stratified**: each class gives about ``val_fraction`` of its videos (at least one group when it has
  two or more groups, never its last group), so every class is validated and still trained on.
* **Grouped**: clips cut from one source video are near-duplicates; if they straddled train and
  validation, validation would measure memorisation. UCF101 names its clips ``v_<Class>_gXX_cYY``: all
  clips of group ``gXX`` of a class share a source (the official splits keep groups apart for the same
  reason), so the group is the unit. Other datasets: ``group_regex`` (its first capture group, or the
  whole match, of the file name) names the source, e.g. ``^(.*)_\\d+$`` for ``<source>_<n>.mp4``;
  without a match each file is its own group. The synthetic clips are each rendered from their own seed
  (``<action>_<i>``), so each file is its own group there.
* **Seeded and deterministic**: the order depends only on (``seed``, class, the sorted group names),
  not on the listing order of the file system.
* **Recorded**: :func:`write_split_json` writes the split into the run folder; a resumed run checks
  that the split it recomputes is the recorded one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write_text
from .layouts import DatasetError, VideoSample

__all__ = ["UCF_GROUP_RE", "ValidationSplit", "carve_validation", "check_disjoint", "group_of", "read_split_json",
           "split_record",
           "write_split_json"]

#: ``v_ApplyEyeMakeup_g08_c01.avi`` -> ``g08`` (UCF101 clip naming; also used by UCF-style own data).
UCF_GROUP_RE = re.compile(r"_(g\d+)_c\d+$", re.IGNORECASE)


@dataclass
class ValidationSplit:
    """The training samples split in two, and what was done (for split.json and the log)."""

    train: list[VideoSample]
    val: list[VideoSample]
    fraction: float
    seed: int
    group_rule: str
    groups: dict[str, int] = field(default_factory=dict)  # class -> number of groups
    val_groups: dict[str, list[str]] = field(default_factory=dict)  # class -> groups held out
    unsplit_classes: list[str] = field(default_factory=list)  # classes with a single group: all in train

    def summary(self) -> str:
        txt = (f"validation split: {len(self.val)} of {len(self.train) + len(self.val)} training videos "
               f"(fraction {self.fraction:g}, seed {self.seed}, grouped by {self.group_rule})")
        if self.unsplit_classes:
            txt += (f"; {len(self.unsplit_classes)} class(es) with a single group stay in training only: "
                    f"{self.unsplit_classes[:5]}")
        return txt


def group_of(path: str | os.PathLike, group_regex: str = "") -> str:
    """The source-video group of a clip file (see the module docstring)."""
    stem = Path(path).stem if Path(path).suffix else Path(path).name
    if group_regex:
        m = re.search(group_regex, stem)
        if m:
            return m.group(1) if m.groups() else m.group(0)
        return stem
    m = UCF_GROUP_RE.search(stem)
    return m.group(1).lower() if m else stem


def _class_seed(seed: int, cls: str) -> int:
    digest = hashlib.sha256(f"val-split|{seed}|{cls}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def carve_validation(samples: Sequence[VideoSample], classes: Sequence[str], fraction: float, seed: int,
                     group_regex: str = "") -> ValidationSplit:
    """Split ``samples`` (the training list) into train and validation, stratified by class and grouped.

    Per class, groups are put in a seeded random order and taken until the held-out clips reach
    ``round(fraction * n_class)`` (at least one group); the class's last group always stays in training.
    ``fraction`` 0 returns everything as training.
    """
    if not 0 <= fraction < 1:
        raise DatasetError(f"data.val_fraction must be in [0, 1), got {fraction}")
    if group_regex:
        try:
            re.compile(group_regex)
        except re.error as exc:
            raise DatasetError(
                f"data.val_group_regex {group_regex!r} is not a valid regular expression: {exc}") from None
    rule = f"regex {group_regex!r}" if group_regex else "UCF101 group gXX, else file"
    split = ValidationSplit(train=[], val=[], fraction=float(fraction), seed=int(seed), group_rule=rule)
    by_class: dict[int, dict[str, list[VideoSample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        by_class[s.label][group_of(s.path, group_regex)].append(s)
    val_ids: set[int] = set()
    for label in sorted(by_class):
        name = classes[label] if 0 <= label < len(classes) else str(label)
        groups = by_class[label]
        split.groups[name] = len(groups)
        if fraction <= 0:
            continue
        if len(groups) < 2:
            split.unsplit_classes.append(name)
            continue
        n_class = sum(len(v) for v in groups.values())
        target = max(1, round(fraction * n_class))
        order = sorted(groups)
        np.random.default_rng(_class_seed(seed, name)).shuffle(order)
        taken, held = [], 0
        for g in order[:-1]:  # the last group of the order always trains
            if held >= target:
                break
            taken.append(g)
            held += len(groups[g])
        split.val_groups[name] = sorted(taken)
        val_ids.update(id(s) for g in taken for s in groups[g])
    for s in samples:  # keep the dataset's own order inside each part
        (split.val if id(s) in val_ids else split.train).append(s)
    return split


def check_disjoint(val: Sequence[VideoSample], test: Sequence[VideoSample]) -> None:
    """Validation and test must not share a file (else selection would see test videos)."""
    test_paths = {os.path.abspath(s.path) for s in test}
    shared = sorted(str(s.path) for s in val if os.path.abspath(s.path) in test_paths)
    if shared:
        raise DatasetError(f"{len(shared)} validation video(s) are also in the test split (e.g. {shared[0]}); "
                           f"the training and test lists overlap: fix the split files or set data.val_fraction=0")


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()
        except ValueError:
            pass
    return Path(path).as_posix()


def split_record(split: ValidationSplit, classes: Sequence[str], root: str | os.PathLike | None,
                 num_test: int) -> dict:
    """The JSON-able record of a split (paths relative to the data root)."""
    base = Path(root).expanduser() if root else None
    return {
        "val_fraction": split.fraction, "val_split_seed": split.seed, "group_rule": split.group_rule,
        "classes": list(classes), "num_train": len(split.train), "num_val": len(split.val), "num_test": num_test,
        "groups_per_class": split.groups, "val_groups": split.val_groups,
        "unsplit_classes": split.unsplit_classes,
        "train": [[_rel(s.path, base), int(s.label)] for s in split.train],
        "val": [[_rel(s.path, base), int(s.label)] for s in split.val],
    }


def write_split_json(path: str | os.PathLike, record: dict) -> None:
    """Atomic write (temp file + rename, mode from the umask as for any new file)."""
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def read_split_json(path: str | os.PathLike) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the recorded validation split ({exc})") from exc
