"""Split-list layouts: UCF101 (classInd.txt + train/testlist0X.txt), HMDB51 ("<class>_test_split<X>.txt") and
generic "<class>/<file> [label]" split lists.

Split out of layouts.py (issue 8); layouts.py re-exports the loaders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .layout_scan import (
    DatasetError,
    VideoSample,
    _check_nonempty_classes,
    _check_subset,
    _class_dirs,
    _class_lookup,
    _drop_missing,
    _lookup,
    _read_lines,
    _require_dir,
    _require_file,
)
from .video_io import natural_key


def _read_class_ind(path: Path) -> list[str]:
    """classInd.txt: lines "<1-based index> <name>" -> names in index order."""
    rows = []
    for n, line in _read_lines(_require_file(path, "class index file")):
        parts = line.split()
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            raise DatasetError(f"{path}:{n}: expected '<index> <class>', got {line!r}")
        rows.append((int(parts[0]), parts[1]))
    if not rows:
        raise DatasetError(f"class index file is empty: {path}")
    rows.sort()
    idx = [r[0] for r in rows]
    base = idx[0]
    if base not in (0, 1) or idx != list(range(base, base + len(idx))):
        raise DatasetError(f"{path}: class indices must be consecutive from 1, got {idx[:10]}...")
    names = [r[1] for r in rows]
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: duplicate class names")
    return names



def _check_split(split: int, allowed: Iterable[int] = (1, 2, 3)) -> int:
    allowed = tuple(allowed)
    if split not in allowed:
        raise DatasetError(f"unknown split {split!r}; expected one of {allowed}")
    return int(split)


def load_ucf101(video_root: str | os.PathLike, split_dir: str | os.PathLike | None = None,
                split: int = 1, subset: str = "train") -> tuple[list[VideoSample], list[str]]:
    """UCF101 with the official split files in ``split_dir`` (default ``video_root``):
    classInd.txt ("1 ApplyEyeMakeup"), trainlist0X.txt ("ApplyEyeMakeup/v_..._g08_c01.avi 1"),
    testlist0X.txt ("ApplyEyeMakeup/v_..._g01_c01.avi", label from the folder name)."""
    video_root = _require_dir(Path(video_root))
    split_dir = _require_dir(Path(split_dir) if split_dir else video_root, "split folder")
    split = _check_split(split)
    _check_subset(subset)
    classes = _read_class_ind(split_dir / "classInd.txt")
    lut = _class_lookup(classes)
    list_path = _require_file(split_dir / f"{subset}list{split:02d}.txt")
    entries = []
    for n, line in _read_lines(list_path):
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        cls_name = rel.split("/")[0] if "/" in rel else None
        if cls_name is None:
            raise DatasetError(f"{list_path}:{n}: expected '<class>/<video>', got {line!r}")
        label = _lookup(lut, cls_name)
        if label is None:
            raise DatasetError(f"{list_path}:{n}: unknown class {cls_name!r} (not in classInd.txt)")
        if len(parts) > 1:
            try:
                num = int(parts[1])
            except ValueError:
                raise DatasetError(f"{list_path}:{n}: bad label {parts[1]!r}") from None
            if num - 1 != label:
                raise DatasetError(f"{list_path}:{n}: label {num} does not match class "
                                   f"{cls_name!r} (classInd index {label + 1})")
        entries.append((video_root / rel, label))
    if not entries:
        raise DatasetError(f"zero samples in {list_path}")
    samples = _drop_missing(entries, list_path, video_root)
    if subset == "train":
        _check_nonempty_classes(samples, classes, list_path, "training videos")
    return samples, classes


_HMDB_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")


def load_hmdb51(video_root: str | os.PathLike, split_dir: str | os.PathLike | None = None,
                split: int = 1, subset: str = "train") -> tuple[list[VideoSample], list[str]]:
    """HMDB51 with the official "<class>_test_split<X>.txt" files (lines "<video.avi> <0|1|2>":
    1 = train, 2 = test, 0 = unused). Videos live at ``video_root/<class>/<video.avi>``."""
    video_root = _require_dir(Path(video_root))
    split_dir = _require_dir(Path(split_dir) if split_dir else video_root, "split folder")
    split = _check_split(split)
    _check_subset(subset)
    files: dict[str, Path] = {}
    for e in os.scandir(split_dir):
        m = _HMDB_RE.match(e.name)
        if m and int(m.group("split")) == split and e.is_file():
            files[m.group("cls")] = Path(e.path)
    if not files:
        raise DatasetError(f"split file not found: no '<class>_test_split{split}.txt' in {split_dir}")
    classes = sorted(files, key=natural_key)
    want = "1" if subset == "train" else "2"
    entries = []
    for label, cls_name in enumerate(classes):
        path = files[cls_name]
        for n, line in _read_lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}:{n}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == want:
                entries.append((video_root / cls_name / parts[0], label))
    if not entries:
        raise DatasetError(f"zero samples for split {split} subset {subset!r} in {split_dir}")
    samples = _drop_missing(entries, split_dir, video_root)
    if subset == "train":
        _check_nonempty_classes(samples, classes, split_dir, "training videos")
    return samples, classes



def load_split_list(root: str | os.PathLike, list_file: str | os.PathLike,
                    split_dir: str | os.PathLike | None = None,
                    check_classes: bool | None = None) -> tuple[list[VideoSample], list[str]]:
    """Split list of "<class>/<file>" lines (optionally followed by a label number), videos under
    ``root``. Classes come from ``classInd.txt`` (looked for in ``split_dir``, then ``root``) or, if
    there is none, the sorted class folders of ``root``. The folder name decides the label; a trailing
    number must agree with it (1-based as in UCF101, or 0-based if the file uses 0 anywhere).
    ``list_file`` is relative to ``split_dir`` (default ``root``) unless absolute.
    ``check_classes`` (default: on for files named like "train*") requires every class to appear."""
    root = _require_dir(Path(root))
    sdir = Path(split_dir) if split_dir else root
    list_path = Path(list_file)
    if not list_path.is_absolute():
        list_path = sdir / list_path
    _require_file(list_path)
    class_ind = next((d / "classInd.txt" for d in (sdir, root) if (d / "classInd.txt").is_file()), None)
    if class_ind is not None:
        classes = _read_class_ind(class_ind)
    else:
        classes = [d.name for d in _class_dirs(root)]
        if not classes:
            raise DatasetError(f"zero samples: no classInd.txt and no class folders in {root}")
    lut = _class_lookup(classes)
    parsed = []
    for n, line in _read_lines(list_path):
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        if "/" not in rel:
            raise DatasetError(f"{list_path}:{n}: expected '<class>/<file>', got {line!r}")
        cls_name = rel.split("/")[0]
        label = _lookup(lut, cls_name)
        if label is None:
            src = class_ind if class_ind is not None else f"the class folders of {root}"
            raise DatasetError(f"{list_path}:{n}: unknown class {cls_name!r} (not in {src})")
        num = None
        if len(parts) > 1:
            try:
                num = int(parts[1])
            except ValueError:
                raise DatasetError(f"{list_path}:{n}: bad label {parts[1]!r}") from None
        parsed.append((n, rel, label, num))
    if not parsed:
        raise DatasetError(f"zero samples in {list_path}")
    offset = 0 if any(p[3] == 0 for p in parsed) else 1
    for n, _rel, label, num in parsed:
        if num is not None and num - offset != label:
            raise DatasetError(f"{list_path}:{n}: label {num} does not match class "
                               f"{classes[label]!r} (expected {label + offset})")
    samples = _drop_missing([(root / rel, label) for _, rel, label, _ in parsed], list_path, root)
    if check_classes is None:
        check_classes = list_path.name.lower().startswith("train")
    if check_classes:
        _check_nonempty_classes(samples, classes, list_path)
    return samples, classes

