"""Folder-per-class and CSV layouts (frame folders count as videos): ``scan_class_folders`` and ``load_csv``.

Split out of layouts.py (issue 8); layouts.py re-exports both.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .layout_scan import (
    VIDEO_EXTS,
    DatasetError,
    VideoSample,
    _class_dirs,
    _class_lookup,
    _drop_missing,
    _list_videos_in,
    _lookup,
    _require_dir,
    _require_file,
)
from .video_io import natural_key


def scan_class_folders(root: str | os.PathLike,
                       classes: Sequence[str] | None = None) -> tuple[list[VideoSample], list[str]]:
    """Folder-per-class layout: ``root/<class>/<video file | frame folder>``.

    Classes are the sorted subfolder names, or ``classes`` when given (then every subfolder must be
    one of them, and classes without a folder are allowed: use it for a test folder labelled with the
    training classes). Kinetics-style trees: ``scan_class_folders(root / "train")``.
    """
    root = _require_dir(Path(root))
    dirs = _class_dirs(root)
    if not dirs:
        raise DatasetError(f"zero samples: no class folders in {root}")
    if classes is None:
        classes = [d.name for d in dirs]
        lut = {c: i for i, c in enumerate(classes)}
    else:
        classes = list(classes)
        lut = _class_lookup(classes)
    samples = []
    for d in dirs:
        label = _lookup(lut, d.name)
        if label is None:
            raise DatasetError(f"unknown class {d.name!r}: folder {d} is not one of the "
                               f"{len(classes)} training classes")
        vids = _list_videos_in(d)
        if not vids:
            raise DatasetError(f"empty class {d.name!r} in {root}: no videos "
                               f"({', '.join(VIDEO_EXTS)} or frame folders) in {d}")
        samples.extend(VideoSample(v, label) for v in vids)
    return samples, list(classes)



def load_csv(csv_path: str | os.PathLike, video_root: str | os.PathLike | None = None,
             classes: Sequence[str] | None = None) -> tuple[list[VideoSample], list[str]]:
    """CSV of "path,label" rows (header "path,label" optional, '#' comments allowed). Labels are class
    names (or numbers, treated as names); classes are their natural-sorted set unless ``classes`` is
    given (use the training classes for a test CSV; an unknown label is then an error). Relative paths
    are taken relative to ``video_root``, else to the CSV's folder."""
    csv_path = _require_file(Path(csv_path), "CSV file")
    base = Path(video_root) if video_root else csv_path.parent
    _require_dir(base)
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[0] or not row[1]:
                raise DatasetError(f"{csv_path}:{n}: expected 'path,label', got {','.join(row)!r}")
            if not rows and row[0].lower() == "path" and row[1].lower() == "label":
                continue
            rows.append((n, row[0], row[1]))
    if not rows:
        raise DatasetError(f"zero samples in {csv_path}")
    if classes is None:
        classes = sorted({r[2] for r in rows}, key=natural_key)
        lut: Mapping[str, int] = {c: i for i, c in enumerate(classes)}
    else:
        classes = list(classes)
        lut = _class_lookup(classes)
    entries = []
    for n, rel, lab in rows:
        label = _lookup(lut, lab)
        if label is None:
            raise DatasetError(f"{csv_path}:{n}: unknown class {lab!r}")
        p = Path(rel)
        entries.append((p if p.is_absolute() else base / p, label))
    return _drop_missing(entries, csv_path, base), list(classes)

