"""Dataset layouts: turn a folder tree or split files into ``(samples, classes)``.

Every loader returns ``(samples: list[VideoSample], classes: list[str])`` where ``label`` indexes
``classes``. The class order is stable because checkpoints store it:

* folder layouts (``scan_class_folders``, ``load_split_list`` without classInd.txt): sorted names
  (natural order, so ``class2`` < ``class10``);
* UCF101 (and ``load_split_list`` with a classInd.txt): classInd.txt order;
* HMDB51: sorted class names taken from the split file names;
* CSV: natural-sorted label names (numeric labels 0..N-1 therefore map to themselves).

A "video" is a container file (:data:`VIDEO_EXTS`) or a pre-extracted frame folder (a directory of
images). Listed videos that are missing on disk are also looked up as a frame folder with the same
name minus the extension (``v_x.avi`` -> ``v_x/``); the ones that exist nowhere are dropped with one
warning, and :class:`DatasetError` is raised if nothing is left.

Problems that would otherwise surface mid-training raise :class:`DatasetError` (a ``ValueError``)
naming the offending path or class: a missing dataset folder or split file, an unknown split number
or subset, an empty class folder, a split line naming an unknown class, zero samples.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .video_io import is_frame_folder, natural_key

__all__ = [
    "DataConfig",
    "DatasetError",
    "LAYOUTS",
    "SHORT_VIDEO_MODES",
    "VIDEO_EXTS",
    "VideoSample",
    "build_classes",
    "build_samples",
    "fingerprint",
    "load_csv",
    "load_hmdb51",
    "load_split_list",
    "load_ucf101",
    "scan_class_folders",
]

log = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------------ config


@dataclass
class DataConfig:
    """Where the data is and how clips are cut from it (stored with checkpoints).

    ``layout``: one of :data:`LAYOUTS`. ``root``: dataset folder (videos). ``split_dir``: folder with
    split files (UCF101/HMDB51/splitlist), defaults to ``root``. ``short_video``: how clips are filled
    for videos shorter than ``(clip_len - 1) * frame_stride + 1`` frames (see sampling.py).
    ``hflip_pairs``: class pairs swapped by a horizontal flip; ``hflip_forbidden``: classes never
    flipped (see transforms.FlipPolicy). ``test_crops``: 1 = centre crop, 3 = three crops along the
    long side. ``val_fraction`` / ``val_split_seed`` / ``val_group_regex``: the validation split carved
    from the training videos (see data/splits.py). ``synthetic_stream``: no files, generation-2 clips are
    rendered per item (data/synthetic_stream.py, configured by the ``synthetic`` section).

    Geometry policy and on-the-fly augmentation (data/transforms.py): ``crop`` ``center`` | ``full`` (stored in
    the checkpoint's input spec); ``aspect_jitter``: (lo, hi) width/height ratio of training crops or
    letterboxes, log-uniform; ``colour_jitter``, ``blur_prob``, ``noise_std``, ``jpeg_prob``: see
    transforms.Photometric (0 = off).
    """

    layout: str = "splitlist"
    root: str = ""
    split_dir: str = ""
    split: int = 1
    train_list: str = "trainlist.txt"
    test_list: str = "testlist.txt"
    csv_train: str = ""
    csv_test: str = ""
    clip_len: int = 16
    frame_stride: int = 1
    size: int = 112
    resize_short: int = 128
    scale_jitter: tuple[float, float] = (0.8, 1.0)
    hflip: bool = True
    hflip_pairs: list[list[str]] = field(default_factory=list)
    hflip_forbidden: list[str] = field(default_factory=list)
    short_video: str = "repeat_last"
    num_workers: int = 2
    test_clips: int = 5
    test_crops: int = 1
    # Validation split carved from the training videos (repflow_core.data.splits): selects best.pt, so the
    # test split is seen once, at the end. Stratified by class, grouped by source video, seeded.
    val_fraction: float = 0.15
    val_split_seed: int = 0
    val_group_regex: str = ""
    crop: str = "center"
    aspect_jitter: tuple[float, float] = (1.0, 1.0)
    colour_jitter: float = 0.0
    blur_prob: float = 0.0
    noise_std: float = 0.0
    jpeg_prob: float = 0.0
    # Class-balanced training sampling (few clips per class, unequal counts): repflow_core.train_finetune.
    balanced: bool = False

    def __post_init__(self) -> None:
        self.scale_jitter = tuple(float(v) for v in self.scale_jitter)  # type: ignore[assignment]
        self.aspect_jitter = tuple(float(v) for v in self.aspect_jitter)  # type: ignore[assignment]
        self.hflip_pairs = [list(p) for p in (self.hflip_pairs or [])]
        self.hflip_forbidden = list(self.hflip_forbidden or [])
        self.validate()

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"DataConfig: {msg}")

        if self.layout not in LAYOUTS:
            bad(f"unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        for name in ("clip_len", "frame_stride", "size", "resize_short", "test_clips", "split"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            bad(f"num_workers must be >= 0, got {self.num_workers!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction < 1:
            bad(f"val_fraction must be in [0, 1) (0 = no validation split), got {self.val_fraction!r}")
        if self.test_crops not in (1, 3):
            bad(f"test_crops must be 1 or 3, got {self.test_crops!r}")
        if len(self.scale_jitter) != 2 or not 0 < self.scale_jitter[0] <= self.scale_jitter[1] <= 1:
            bad(f"scale_jitter must be (lo, hi) with 0 < lo <= hi <= 1, got {self.scale_jitter!r}")
        if self.short_video not in SHORT_VIDEO_MODES:
            bad(f"short_video must be one of {SHORT_VIDEO_MODES}, got {self.short_video!r}")
        if self.crop not in ("center", "full"):
            bad(f"crop must be 'center' or 'full', got {self.crop!r}")
        if len(self.aspect_jitter) != 2 or not 0 < self.aspect_jitter[0] <= 1 <= self.aspect_jitter[1] <= 4:
            bad(f"aspect_jitter must be (lo, hi) with 0 < lo <= 1 <= hi <= 4, got {self.aspect_jitter!r}")
        for name in ("colour_jitter", "blur_prob", "jpeg_prob"):
            if not 0 <= getattr(self, name) <= 1:
                bad(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.noise_std <= 50:
            bad(f"noise_std must be in [0, 50] (0-255 units), got {self.noise_std!r}")
        for pair in self.hflip_pairs:
            if len(pair) != 2 or not all(isinstance(c, str) for c in pair):
                bad(f"hflip_pairs entries must be [class_a, class_b], got {pair!r}")

    @property
    def num_views(self) -> int:
        return self.test_clips * self.test_crops

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scale_jitter"] = list(self.scale_jitter)
        d["aspect_jitter"] = list(self.aspect_jitter)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DataConfig:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DataConfig: unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


# ----------------------------------------------------------------------------------------- helpers


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


# ----------------------------------------------------------------------------------------- layouts


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


# ---------------------------------------------------------------------------------------- dispatch


def _folders_split_dirs(root: Path) -> tuple[Path, Path | None]:
    train = root / "train"
    if not train.is_dir():
        return root, None
    test = next((root / n for n in TEST_FOLDER_NAMES if (root / n).is_dir()), None)
    return train, test


def _resolve_rel(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def build_samples(cfg: DataConfig, subset: str) -> tuple[list[VideoSample], list[str]]:
    """Samples and classes of ``subset`` ("train" or "test") for the layout in ``cfg``.

    "folders": ``root/train/<class>/...`` with ``root/test`` (or val/validation) labelled by the
    training classes; without a ``train`` subfolder ``root/<class>/...`` is the training set and
    there is no test subset. "csv": ``csv_train``/``csv_test`` (relative to ``root``); the test CSV
    is labelled with the training CSV's classes when ``csv_train`` is set.
    """
    _check_subset(subset)
    if cfg.layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {cfg.layout!r}; expected one of {LAYOUTS}")
    if cfg.layout == "synthetic_stream":
        raise DatasetError("data.layout 'synthetic_stream' has no video files: its clips are rendered on the fly "
                           "(repflow_core.data.synthetic_stream.stream_datasets)")
    if not cfg.root:
        raise DatasetError(f"data root is not set (layout {cfg.layout!r})")
    root = Path(cfg.root).expanduser()
    split_dir = Path(cfg.split_dir).expanduser() if cfg.split_dir else root

    if cfg.layout == "folders":
        _require_dir(root)
        train_dir, test_dir = _folders_split_dirs(root)
        if subset == "train":
            return scan_class_folders(train_dir)
        if test_dir is None:
            if train_dir == root:
                raise DatasetError(f"folders layout: {root} has no train/ and test/ subfolders, so "
                                   f"there is no test subset; use root/train + root/test, or a "
                                   f"csv/splitlist layout")
            raise DatasetError(f"folders layout: no test folder "
                               f"({'/, '.join(TEST_FOLDER_NAMES)}/) next to {train_dir}")
        classes = [d.name for d in _class_dirs(_require_dir(train_dir))]
        return scan_class_folders(test_dir, classes=classes)

    if cfg.layout == "ucf101":
        return load_ucf101(root, split_dir, cfg.split, subset)

    if cfg.layout == "hmdb51":
        return load_hmdb51(root, split_dir, cfg.split, subset)

    if cfg.layout == "csv":
        name = cfg.csv_train if subset == "train" else cfg.csv_test
        if not name:
            raise DatasetError(f"csv layout: csv_{subset} is not set")
        classes = None
        if subset == "test" and cfg.csv_train:
            _, classes = load_csv(_resolve_rel(cfg.csv_train, root), root)
        return load_csv(_resolve_rel(name, root), root, classes=classes)

    # splitlist
    name = cfg.train_list if subset == "train" else cfg.test_list
    if not name:
        raise DatasetError(f"splitlist layout: {subset}_list is not set")
    return load_split_list(root, name, split_dir=split_dir, check_classes=(subset == "train"))


def build_classes(cfg: DataConfig) -> list[str]:
    """The class list of the training subset (what a checkpoint stores)."""
    return build_samples(cfg, "train")[1]


def _entry_size(p: Path) -> int:
    try:
        if p.is_dir():
            return sum(1 for _ in os.scandir(p))
        return p.stat().st_size
    except OSError:
        return -1


def fingerprint(samples: Sequence[VideoSample]) -> str:
    """Short sha1 (12 hex) over sorted (path relative to the samples' common folder, size, label).
    Size is the file size, or the number of entries for a frame folder; -1 when unreadable."""
    if not samples:
        return hashlib.sha1(b"").hexdigest()[:12]
    parents = [os.path.abspath(s.path.parent) for s in samples]
    try:
        common = os.path.commonpath(parents)
    except ValueError:  # different drives
        common = ""
    rows = []
    for s in samples:
        ap = os.path.abspath(s.path)
        rel = os.path.relpath(ap, common) if common else ap
        rows.append((Path(rel).as_posix(), _entry_size(s.path), int(s.label)))
    rows.sort()
    h = hashlib.sha1()
    for rel, size, label in rows:
        h.update(f"{rel}\t{size}\t{label}\n".encode())
    return h.hexdigest()[:12]
