"""Shared scanning for the dataset layouts (repflow_core.data.layouts): the sample type, the error type and the
helpers every loader uses (path checks, split-file lines, missing-video fallback, class lookup, folder listing).

Split out of layouts.py (issue 8: modules under ~500 lines); layouts.py re-exports the public names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .video_io import is_frame_folder, natural_key

# The logger keeps the name it had before the split, so log filters and handlers set on it still apply.
log = logging.getLogger("repflow_core.data.layouts")

VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg")
LAYOUTS = ("folders", "ucf101", "hmdb51", "csv", "splitlist", "synthetic_stream")
SUBSETS = ("train", "test")
SHORT_VIDEO_MODES = ("repeat_last", "loop")
# Folder names tried, in order, for the held-out part of the "folders" layout.
TEST_FOLDER_NAMES = ("test", "val", "validation")


class DatasetError(ValueError):
    """The dataset on disk does not match what the configuration describes."""


@dataclass(frozen=True)
class VideoSample:
    path: Path
    label: int



def _require_dir(path: Path, what: str = "dataset folder") -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def _require_file(path: Path, what: str = "split file") -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    return path


def _check_subset(subset: str) -> str:
    if subset not in SUBSETS:
        raise DatasetError(f"unknown subset {subset!r}; expected one of {SUBSETS}")
    return subset


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, non-comment lines with their 1-based line numbers (handles CRLF and BOM)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS and path.is_file()


def _resolve_video(path: Path) -> Path | None:
    """The path itself if it exists, else a frame folder with the same name minus the extension."""
    if path.exists():
        return path
    if path.suffix:
        alt = path.with_suffix("")
        if alt.is_dir():
            return alt
    return None


def _drop_missing(entries: list[tuple[Path, int]], source: Path, root: Path) -> list[VideoSample]:
    samples, missing = [], []
    for p, label in entries:
        r = _resolve_video(p)
        if r is None:
            missing.append(p)
        else:
            samples.append(VideoSample(r, label))
    if missing and not samples:
        raise DatasetError(
            f"none of the {len(missing)} videos listed in {source} exist under {root} "
            f"(first: {missing[0]}); check the video root"
        )
    if missing:
        log.warning("%d of %d videos listed in %s are missing under %s and are skipped (first: %s)",
                    len(missing), len(entries), source, root, missing[0])
    if not samples:
        raise DatasetError(f"zero samples in {source}")
    return samples


def _check_nonempty_classes(samples: Sequence[VideoSample], classes: Sequence[str], source: Path,
                            what: str = "videos") -> None:
    counts = [0] * len(classes)
    for s in samples:
        counts[s.label] += 1
    empty = [classes[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        more = f" (and {len(empty) - 1} more: {empty[1:6]})" if len(empty) > 1 else ""
        raise DatasetError(f"empty class {empty[0]!r} in {source}: no {what}{more}")


def _class_lookup(classes: Sequence[str]) -> dict[str, int]:
    lut = {c: i for i, c in enumerate(classes)}
    # Case-insensitive fallback (UCF101 spells HandstandPushups / HandStandPushups both ways).
    for i, c in enumerate(classes):
        lut.setdefault(c.lower(), i)
    return lut


def _lookup(lut: Mapping[str, int], name: str) -> int | None:
    if name in lut:
        return lut[name]
    return lut.get(name.lower())


def _list_videos_in(folder: Path) -> list[Path]:
    vids = []
    for e in os.scandir(folder):
        if e.name.startswith("."):
            continue
        p = Path(e.path)
        if e.is_file() and p.suffix.lower() in VIDEO_EXTS:
            vids.append(p)
        elif e.is_dir() and is_frame_folder(p):
            vids.append(p)
    vids.sort(key=lambda p: natural_key(p.name))
    return vids


def _class_dirs(root: Path) -> list[Path]:
    dirs = [Path(e.path) for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    dirs.sort(key=lambda p: natural_key(p.name))
    return dirs

