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

The loaders live in :mod:`.split_lists` (UCF101, HMDB51, split lists), :mod:`.layout_folders` (class folders,
CSV) and :mod:`.layout_scan` (the shared scanning); this module holds :class:`DataConfig` and the dispatch, and
re-exports every public name so callers keep importing from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout_folders import load_csv, scan_class_folders
from .layout_scan import (
    LAYOUTS,
    SHORT_VIDEO_MODES,
    SUBSETS,  # noqa: F401  (re-exported: importable from here as before the split)
    TEST_FOLDER_NAMES,
    VIDEO_EXTS,
    DatasetError,
    VideoSample,
    _check_subset,
    _class_dirs,
    _require_dir,
    log,  # noqa: F401  (re-exported: the logger's name is still this module's)
)
from .split_lists import load_hmdb51, load_split_list, load_ucf101

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
        if self.crop == "full" and self.test_crops != 1:
            bad("test_crops: 3 (crops along the long side) needs crop: center; crop: full already sees the whole "
                "frame, use test_crops: 1")
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
