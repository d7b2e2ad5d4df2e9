"""Torch datasets over real videos, the pre-flight video scan and the loader factory.

* :class:`VideoClipDataset` (``train=True``): one random clip per item (random start, the geometry policy's
  random crop or letterbox with scale / aspect jitter, flip policy, photometric augmentation) ->
  ``(uint8 (3, T, S, S), label, index)``. With ``train=False`` it gives the single centre clip, preprocessed as
  the Recognizer does (a cheap validation view with the training batch shape).
* :class:`MultiViewDataset`: every test view of a video -> ``(uint8 (V, 3, T, S, S), label, index)``,
  ``V = test_clips * test_crops``, clip-major (clip 0 crop 0, clip 0 crop 1, ...).
* :func:`make_dataset` picks one of the two from ``train``.

Randomness is a fresh ``np.random.Generator`` per item seeded from ``(seed, epoch, index, attempt)``,
so an item is the same whatever worker process computes it and whatever ran before it. Call
:meth:`set_epoch` before iterating each epoch; the epoch lives in shared memory, so it reaches worker
processes too (also persistent ones).

Unreadable videos: call :func:`scan_dataset` before training; it probes every video (tqdm bar),
drops the unreadable ones and returns a summary such as
``"skipped 2 of 40 unreadable videos: a.avi (no decodable frames), ..."``. A file that still fails
later (e.g. truncated past the probed header) is reported once with its path (logging warning) and:
in train mode the item is replaced by another sample picked deterministically from the item's random
stream (the returned index is the sample actually used); in evaluation modes the item comes back with
zeros and label -1 (:data:`INVALID_LABEL`) so evaluation can skip it. ``bad_log`` (a text file, one
path per line) shares the "already reported" record across worker processes; :attr:`bad_videos`
reads it back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from .layouts import DataConfig, DatasetError, VideoSample
from .sampling import test_clip_indices, train_clip_indices
from .transforms import FlipPolicy, Photometric, center_crop, eval_clip, random_geometry, resize_short_side, three_crops
from .video_io import VideoInfo, VideoReadError, probe_video, read_frames

__all__ = [
    "INVALID_LABEL",
    "MultiViewDataset",
    "ScanResult",
    "VideoClipDataset",
    "make_dataset",
    "make_loader",
    "scan_dataset",
]

log = logging.getLogger(__name__)

INVALID_LABEL = -1
MAX_SUBSTITUTE_TRIES = 20
_READ_ERRORS = (VideoReadError, cv2.error, OSError)


class _VideoDatasetBase(Dataset):
    def __init__(self, samples: Sequence[VideoSample], classes: Sequence[str], cfg: DataConfig,
                 seed: int = 0, bad_log: str | os.PathLike | None = None):
        if not samples:
            raise DatasetError("dataset has zero samples")
        self.samples = list(samples)
        self.classes = list(classes)
        for s in self.samples:
            if not 0 <= s.label < len(self.classes):
                raise DatasetError(f"label {s.label} of {s.path} is outside 0..{len(self.classes) - 1}")
        self.cfg = cfg
        self.seed = int(seed)
        self.bad_log = Path(bad_log) if bad_log else None
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._num_frames: dict[Path, int] = {}
        self._bad: dict[Path, str] = {}

    # -- bookkeeping ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the random streams of ``epoch`` (visible to already started workers too)."""
        self._epoch[0] = int(epoch)

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        """The random stream of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index), int(attempt)])

    def num_frames(self, path: Path) -> int:
        n = self._num_frames.get(path)
        if n is None:
            n = probe_video(path).num_frames
            self._num_frames[path] = n
        return n

    def _logged_bad(self) -> set[str]:
        if self.bad_log is None or not self.bad_log.is_file():
            return set()
        try:
            return {ln.split("\t", 1)[0] for ln in self.bad_log.read_text().splitlines() if ln}
        except OSError:
            return set()

    def mark_bad(self, path: Path, reason: str, quiet: bool = False) -> None:
        """Record an unreadable video; warn once (per process, and across processes via bad_log)."""
        path = Path(path)
        if path in self._bad:
            return
        self._bad[path] = reason
        if str(path) in self._logged_bad():
            return
        if self.bad_log is not None:
            try:
                self.bad_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.bad_log, "a") as fh:  # O_APPEND: one short line per write
                    fh.write(f"{path}\t{reason}\n")
            except OSError as exc:
                log.debug("cannot append to %s: %s", self.bad_log, exc)
        if not quiet:
            log.warning("skipping unreadable video %s: %s", path, reason)

    @property
    def bad_videos(self) -> list[Path]:
        """Unreadable videos seen so far (this process, plus other processes through bad_log)."""
        paths = {str(p) for p in self._bad} | self._logged_bad()
        return [Path(p) for p in sorted(paths)]

    def _is_bad(self, path: Path) -> bool:
        return path in self._bad

    # -- views ----------------------------------------------------------------------------------

    def _views(self, path: Path, num_clips: int, crops: int) -> torch.Tensor:
        """(num_clips * crops, 3, T, S, S) evenly spaced clips: by the geometry policy ``cfg.crop`` with one
        crop (exactly the Recognizer's preprocessing), or three crops along the long side (``center`` only)."""
        cfg = self.cfg
        clips = test_clip_indices(self.num_frames(path), cfg.clip_len, cfg.frame_stride, num_clips,
                                  cfg.short_video)
        union = np.unique(np.concatenate(clips))
        if cfg.crop == "full":
            # The whole frame letterboxed straight from its own size, as Recognizer.preprocess does.
            raw = read_frames(path, union)
            return torch.stack([eval_clip(raw[np.searchsorted(union, idx)], cfg.size, cfg.resize_short, "full")
                                for idx in clips])
        frames = resize_short_side(read_frames(path, union), cfg.resize_short)
        views = []
        for idx in clips:
            sub = frames[np.searchsorted(union, idx)]
            if crops == 1:
                views.append(center_crop(sub, cfg.size))
            else:
                views.extend(three_crops(sub, cfg.size))
        return torch.stack(views)

    def _invalid(self, shape: tuple[int, ...], index: int):
        return torch.zeros(shape, dtype=torch.uint8), INVALID_LABEL, index


class VideoClipDataset(_VideoDatasetBase):
    """One clip per video. ``train=True``: random clip + augmentation; ``train=False``: centre clip,
    centre crop, no augmentation (label -1 if the video cannot be read)."""

    def __init__(self, samples: Sequence[VideoSample], classes: Sequence[str], cfg: DataConfig,
                 train: bool = True, seed: int = 0, bad_log: str | os.PathLike | None = None,
                 flip_policy: FlipPolicy | None = None):
        super().__init__(samples, classes, cfg, seed, bad_log)
        self.train = bool(train)
        self.flip = flip_policy if flip_policy is not None else FlipPolicy.from_config(cfg, self.classes)
        self.photometric = Photometric.from_config(cfg)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (3, self.cfg.clip_len, self.cfg.size, self.cfg.size)

    def _train_item(self, i: int, rng: np.random.Generator):
        cfg = self.cfg
        s = self.samples[i]
        idx = train_clip_indices(self.num_frames(s.path), cfg.clip_len, cfg.frame_stride, rng,
                                 cfg.short_video)
        # The same geometry policy and augmentations as the synthetic stream (a centre crop without aspect
        # jitter draws exactly what random_resized_crop did, so older runs are reproduced bit for bit).
        clip = random_geometry(read_frames(s.path, idx), cfg.size, cfg.crop, cfg.scale_jitter, cfg.aspect_jitter,
                               rng)
        clip, label = self.flip.apply(clip, s.label, rng)
        return self.photometric(clip, rng), int(label), i

    def __getitem__(self, index: int):
        index = int(index)
        if not self.train:
            s = self.samples[index]
            try:
                return self._views(s.path, 1, 1)[0], s.label, index
            except _READ_ERRORS as exc:
                self.mark_bad(s.path, _reason(exc))
                return self._invalid(self.item_shape, index)

        i = index
        for attempt in range(MAX_SUBSTITUTE_TRIES):
            rng = self.rng(index, attempt)
            if attempt > 0:
                i = int(rng.integers(0, len(self.samples)))
            path = self.samples[i].path
            if self._is_bad(path):
                continue
            try:
                return self._train_item(i, rng)
            except _READ_ERRORS as exc:
                self.mark_bad(path, _reason(exc))
        raise RuntimeError(f"no readable video found for item {index} after {MAX_SUBSTITUTE_TRIES} "
                           f"tries; unreadable so far: {[str(p) for p in self.bad_videos[:5]]}")


class MultiViewDataset(_VideoDatasetBase):
    """All ``cfg.test_clips * cfg.test_crops`` views of a video per item (evaluation).
    Unreadable videos give zeros and label -1."""

    def __init__(self, samples: Sequence[VideoSample], classes: Sequence[str], cfg: DataConfig,
                 seed: int = 0, bad_log: str | os.PathLike | None = None):
        super().__init__(samples, classes, cfg, seed, bad_log)
        self.train = False

    @property
    def num_views(self) -> int:
        return self.cfg.test_clips * self.cfg.test_crops

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.num_views, 3, self.cfg.clip_len, self.cfg.size, self.cfg.size)

    def __getitem__(self, index: int):
        index = int(index)
        s = self.samples[index]
        try:
            return self._views(s.path, self.cfg.test_clips, self.cfg.test_crops), s.label, index
        except _READ_ERRORS as exc:
            self.mark_bad(s.path, _reason(exc))
            return self._invalid(self.item_shape, index)


def make_dataset(samples: Sequence[VideoSample], classes: Sequence[str], cfg: DataConfig,
                 train: bool, seed: int = 0, bad_log: str | os.PathLike | None = None):
    """Training: :class:`VideoClipDataset`; evaluation: :class:`MultiViewDataset`."""
    if train:
        return VideoClipDataset(samples, classes, cfg, train=True, seed=seed, bad_log=bad_log)
    return MultiViewDataset(samples, classes, cfg, seed=seed, bad_log=bad_log)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, VideoReadError):
        return exc.reason
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


# -------------------------------------------------------------------------------------------- scan


@dataclass
class ScanResult:
    """Outcome of :func:`scan_dataset`. Unpacks as ``samples, summary = scan_dataset(ds)``."""

    samples: list[VideoSample]
    bad: list[tuple[Path, str]]
    total: int
    summary: str
    infos: dict[Path, VideoInfo] = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        return iter((self.samples, self.summary))


def _summary(bad: list[tuple[Path, str]], total: int, show: int = 10) -> str:
    if not bad:
        return f"all {total} videos readable"
    listed = ", ".join(f"{p} ({r})" for p, r in bad[:show])
    more = f", and {len(bad) - show} more" if len(bad) > show else ""
    return f"skipped {len(bad)} of {total} unreadable videos: {listed}{more}"


def scan_dataset(ds, progress: bool = True, verify: bool = False, num_threads: int = 2,
                 prune: bool = True, desc: str = "checking videos") -> ScanResult:
    """Probe every video of ``ds`` (a dataset from this module, or a list of VideoSample).

    ``verify=False`` opens each file and decodes its first frame (fast); ``verify=True`` decodes every
    frame and also catches truncated files (slower: a full decode). Probing runs on ``num_threads``
    threads (OpenCV releases the GIL). For a dataset, the unreadable videos are recorded in its
    bad-video record, the probed frame counts are cached (workers forked later inherit them) and,
    with ``prune``, its samples are replaced by the good ones. Raises :class:`DatasetError` when no
    video is readable. The summary is logged (warning when something was skipped).
    """
    samples = list(ds.samples if isinstance(ds, _VideoDatasetBase) else ds)
    total = len(samples)
    if total == 0:
        raise DatasetError("scan_dataset: zero samples")

    def probe(s: VideoSample):
        try:
            return probe_video(s.path, verify=verify), None
        except _READ_ERRORS as exc:
            return None, _reason(exc)

    results: list = [None] * total
    with ThreadPoolExecutor(max_workers=max(1, int(num_threads))) as pool, \
            tqdm(total=total, desc=desc, unit="video", disable=not progress, leave=False) as bar:
        for k, res in enumerate(pool.map(probe, samples)):
            results[k] = res
            bar.update(1)

    good, bad, infos = [], [], {}
    for s, (info, reason) in zip(samples, results):
        if info is None:
            bad.append((s.path, reason))
        else:
            good.append(s)
            infos[s.path] = info
    summary = _summary(bad, total)
    if bad:
        log.warning("%s", summary)
    else:
        log.info("%s", summary)
    if not good:
        raise DatasetError(f"all {total} videos are unreadable (first: {bad[0][0]}: {bad[0][1]})")

    if isinstance(ds, _VideoDatasetBase):
        for p, r in bad:
            ds.mark_bad(p, r, quiet=True)
        for p, info in infos.items():
            ds._num_frames[p] = info.num_frames
        if prune:
            ds.samples = good
    return ScanResult(good, bad, total, summary, infos)


# ------------------------------------------------------------------------------------------ loader


def _worker_init(_worker_id: int) -> None:
    # One video per worker at a time: extra torch threads would only oversubscribe the cores.
    torch.set_num_threads(1)


def make_loader(ds: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                sampler: Sampler | None = None, drop_last: bool = False, pin_memory: bool = False,
                seed: int | None = None, persistent_workers: bool = False,
                multiprocessing_context: str | None = None) -> DataLoader:
    """DataLoader for these datasets. Batches are ``(uint8 clips, labels int64, indices int64)``.

    ``sampler`` (e.g. a DistributedSampler) overrides ``shuffle``. ``seed`` fixes the shuffle order
    (the generator advances each epoch, so orders differ per epoch but repeat across runs). Call
    ``ds.set_epoch(e)`` before each epoch's iteration (it reaches persistent workers too).

    With ``num_workers > 0`` this switches OpenCV's own thread pool off in the calling process
    (``cv2.setNumThreads(0)``, as detectron2/mmcv do): forked workers that inherit a live OpenCV pool
    can deadlock in their first OpenCV call. Workers run torch single-threaded.
    ``multiprocessing_context`` ("fork", "forkserver", "spawn"; default: the platform's) is passed
    through; forkserver/spawn need an ``if __name__ == "__main__":`` guard in the script and start
    slower (each worker imports torch), so pair them with ``persistent_workers=True``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    kwargs = {}
    if num_workers > 0:
        cv2.setNumThreads(0)
        kwargs.update(worker_init_fn=_worker_init, persistent_workers=persistent_workers,
                      prefetch_factor=2, multiprocessing_context=multiprocessing_context)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=int(num_workers),
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )
