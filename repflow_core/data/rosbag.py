"""Labelled training clips from a bag, without a ROS install:
``python -m repflow_core.data.rosbag --bag BAG --topic TOPIC --spans SPANS.csv --out DIR``.

Bags: ROS 2 (sqlite3 and mcap storage, the bag folder or its ``.db3`` / ``.mcap`` file) and ROS 1 (``.bag``), read
with the pure-Python ``rosbags`` package (``rosbags.highlevel.AnyReader``; not ROS, imported lazily). Messages:
``sensor_msgs/Image`` (every encoding the node decodes, honouring ``step`` padding and ``is_bigendian``) and
``sensor_msgs/CompressedImage`` (JPEG, PNG), decoded by :mod:`repflow_core.data.image_codec`, the decoder the
ROS node uses, with the same per-frame size guards.

Spans: a CSV with the header ``label,start,end``; times are seconds from the topic's first message, measured on the
bag's own timestamps (when each message was recorded, what ``ros2 bag info`` and players show; header stamps may be
zero or from another clock). A frame belongs to a span when ``start <= t <= end``; spans may overlap.

Output: one clip per span, ``DIR/<label>/<bagname>_<index>.avi`` (Motion-JPEG, the format the synthetic dataset
and ``video_io`` write; ``--format mp4`` for mp4v), written to a hidden temporary name and renamed, so the
``folders`` layout (which skips dot files) never reads a half-written clip. ``<index>`` is the span's row (0-based)
in SPANS.csv. The clip plays at the span's measured frame rate. Frames keep the camera's size; a frame whose size
differs from the span's first frame is dropped (cause ``size_change``). ``DIR/index.csv`` lists every clip
(``path,label,start,end,frames,bag,topic``; rows of earlier runs for other clips are kept).

Bad input is reported, never silently skipped: a missing topic lists the bag's topics with their types; a truncated
or corrupt bag, an unreadable SPANS.csv or an unsafe label (``../x``, ``/``, empty, a leading dot) is an error
naming the culprit (exit status 2, no traceback); frames that do not decode are counted by cause, unsupported
encodings by name; a span with no frames (outside the bag, or every frame dropped) is reported and exits 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_io import atomic_write_text, default_file_mode
from .image_codec import FrameLimits, ImageDecodeError, decode_compressed_image, decode_image
from .video_io import VideoWriteError, write_video

__all__ = [
    "BagError",
    "BagFrame",
    "ClipInfo",
    "DecodeStats",
    "ExtractSummary",
    "IMAGE_TYPES",
    "Span",
    "check_label",
    "extract_clips",
    "iter_frames",
    "main",
    "read_spans",
]

#: Message types read from the topic (rosbags spells ROS 1 types the ROS 2 way too).
IMAGE_TYPES = {"sensor_msgs/msg/Image": "raw", "sensor_msgs/msg/CompressedImage": "compressed"}
_LABEL_MAX_BYTES = 100
# Folder names the folders layout reads as its train / held-out parts (layouts.TEST_FOLDER_NAMES + "train").
_RESERVED = ("train", "test", "val", "validation")
_NS = 1_000_000_000


class BagError(ValueError):
    """A bag, topic, spans file or label that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Span:
    """One labelled interval: seconds from the topic's first message, ``start < end``; ``index`` = CSV row."""

    label: str
    start: float
    end: float
    index: int = 0


@dataclass(frozen=True)
class BagFrame:
    """A decoded frame: ``t`` seconds from the topic's first message, ``stamp_ns`` the bag time, ``rgb`` (H, W, 3)."""

    t: float
    stamp_ns: int
    rgb: np.ndarray


@dataclass
class DecodeStats:
    """What happened to the topic's messages: decoded, dropped by cause, unsupported encodings by name."""

    messages: int = 0
    decoded: int = 0
    dropped: Counter = field(default_factory=Counter)
    unsupported: Counter = field(default_factory=Counter)
    first_ns: int | None = None
    last_ns: int | None = None

    @property
    def duration(self) -> float:
        """Seconds from the topic's first message to its last (0 with fewer than two)."""
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / _NS

    def describe(self) -> str:
        line = f"{self.messages} messages over {self.duration:.2f} s, {self.decoded} decoded"
        if self.dropped:
            line += ", dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()))
        if self.unsupported:
            line += " (unsupported encodings: " + ", ".join(f"{k!r} x{v}" for k, v in
                                                            sorted(self.unsupported.items())) + ")"
        return line


def check_label(label: Any, where: str = "label") -> str:
    """``label`` if it is a safe folder name (it becomes ``DIR/<label>/``), else :class:`BagError` with the reason.

    Refused: empty or blank, ``/`` or ``\\`` (a path, e.g. ``../x``), a leading dot (``.``, ``..``, and hidden
    folders, which the folders layout skips), ``train`` / ``test`` / ``val`` / ``validation`` (split folders of that
    layout), control characters, more than 100 bytes in UTF-8."""
    if not isinstance(label, str) or not label.strip():
        raise BagError(f"{where}: empty label {label!r}: a label names a class folder")
    if label != label.strip():
        raise BagError(f"{where}: label {label!r} has leading or trailing spaces")
    if "/" in label or "\\" in label:
        raise BagError(f"{where}: label {label!r} contains a path separator: it must be a plain folder name")
    if label.startswith("."):
        raise BagError(f"{where}: label {label!r} starts with a dot ('.', '..' and hidden folders are not classes)")
    if label.lower() in _RESERVED:
        raise BagError(f"{where}: label {label!r} is reserved: the folders layout reads DIR/{label}/ as a split "
                       "folder, not a class")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise BagError(f"{where}: label {label!r} contains control characters")
    if len(label.encode("utf-8")) > _LABEL_MAX_BYTES:
        raise BagError(f"{where}: label {label[:20]!r}... is longer than {_LABEL_MAX_BYTES} bytes")
    return label


def _seconds(value: str, what: str, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BagError(f"{where}: {what} {value!r} is not a number of seconds") from None
    if not math.isfinite(x) or x < 0:
        raise BagError(f"{where}: {what} {value!r} must be a finite number of seconds >= 0")
    return x


def read_spans(path: str | os.PathLike) -> list[Span]:
    """Read SPANS.csv (header ``label,start,end``; blank lines and lines starting with ``#`` skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f"cannot read spans file {path}: {exc}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    if not rows or [c.strip().lower() for c in rows[0]] != ["label", "start", "end"]:
        got = rows[0] if rows else "nothing"
        raise BagError(f"{path}: the first line must be the header 'label,start,end', got {got!r}")
    spans = []
    for i, row in enumerate(rows[1:]):
        where = f"{path} span {i} ({','.join(row)})"
        if len(row) != 3:
            raise BagError(f"{where}: expected 3 fields label,start,end, got {len(row)}")
        label = check_label(row[0].strip(), where)
        start, end = _seconds(row[1].strip(), "start", where), _seconds(row[2].strip(), "end", where)
        if end <= start:
            raise BagError(f"{where}: end {end:g} s must be after start {start:g} s")
        spans.append(Span(label, start, end, i))
    if not spans:
        raise BagError(f"{path}: no spans after the header")
    return spans


# ----------------------------------------------------------------------------------------------------------- reading

def _open_reader(bag: Path):
    """An open ``AnyReader`` on ``bag`` (a ROS 2 bag folder or its storage file, or a ROS 1 .bag)."""
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise BagError("reading bags needs the 'rosbags' package: pip install rosbags "
                       "(or pip install '.[bags]')") from None
    if not bag.exists():
        raise BagError(f"bag {bag} does not exist")
    if bag.is_file() and bag.suffix.lower() in (".db3", ".mcap"):
        bag = bag.parent  # rosbags opens a ROS 2 bag by its folder (metadata.yaml)
    # Bags recorded before ROS 2 Iron store no message definitions: the standard types fill in (Image and
    # CompressedImage have not changed since Foxy).
    reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
    try:
        reader.open()
    except Exception as exc:  # rosbags raises its own errors, sqlite3's, OSError...: all mean "cannot read"
        raise BagError(f"cannot read bag {bag}: {exc} (truncated, corrupt or not a bag?)") from None
    return reader


def _topic_list(reader) -> str:
    topics = sorted(reader.topics.items())
    if not topics:
        return "the bag has no topics"
    return "topics in the bag: " + ", ".join(f"{name} ({info.msgtype}, {info.msgcount} msgs)"
                                             for name, info in topics)


def _image_connections(reader, topic: str, bag: Path) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        raise BagError(f"topic {topic!r} is not in bag {bag}; {_topic_list(reader)}")
    bad = sorted({c.msgtype for c in conns if c.msgtype not in IMAGE_TYPES})
    if bad:
        raise BagError(f"topic {topic!r} in bag {bag} carries {', '.join(bad)}, not an image type "
                       f"({' or '.join(IMAGE_TYPES)}); {_topic_list(reader)}")
    return conns


def _decode(msg: Any, kind: str, limits: FrameLimits) -> np.ndarray:
    return decode_image(msg, limits) if kind == "raw" else decode_compressed_image(msg, limits)


def iter_frames(bag: str | os.PathLike, topic: str, stats: DecodeStats | None = None,
                limits: FrameLimits | None = None) -> Iterator[BagFrame]:
    """Decoded frames of ``topic`` in bag-time order. Frames that do not decode are counted in ``stats`` by cause
    (and unsupported encodings by name), never raised; a bag that breaks while being read raises BagError."""
    bag = Path(bag)
    stats = stats if stats is not None else DecodeStats()
    limits = limits or FrameLimits()
    reader = _open_reader(bag)
    try:
        conns = _image_connections(reader, topic, bag)
        it = reader.messages(connections=conns)
        while True:
            try:
                con, stamp_ns, raw = next(it)
                msg = reader.deserialize(raw, con.msgtype)
            except StopIteration:
                break
            except Exception as exc:  # a damaged chunk / page / record in the middle of the bag
                raise BagError(f"bag {bag} is damaged after {stats.messages} messages of {topic!r}: {exc}") from None
            stats.messages += 1
            if stats.first_ns is None:
                stats.first_ns = stamp_ns
            stats.last_ns = stamp_ns
            try:
                rgb = _decode(msg, IMAGE_TYPES[con.msgtype], limits)
            except ImageDecodeError as exc:
                stats.dropped[exc.cause] += 1
                if exc.cause == "unsupported_encoding":
                    stats.unsupported[str(getattr(msg, "encoding", None) or getattr(msg, "format", "?"))] += 1
                continue
            stats.decoded += 1
            yield BagFrame((stamp_ns - stats.first_ns) / _NS, int(stamp_ns), rgb)
    finally:
        reader.close()


# ----------------------------------------------------------------------------------------------------------- writing

@dataclass
class ClipInfo:
    """One written clip (a row of index.csv)."""

    path: Path
    label: str
    start: float
    end: float
    frames: int


@dataclass
class ExtractSummary:
    clips: list[ClipInfo]
    stats: DecodeStats
    problems: list[str]  # spans without a clip, spans cut at the end of the bag, frames dropped in spans
    index_csv: Path | None = None


def _safe_stem(bag: Path) -> str:
    name = bag.parent.name if bag.is_file() and bag.suffix.lower() in (".db3", ".mcap") else bag.name
    stem = name[: -len(".bag")] if name.lower().endswith(".bag") else name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip(".") or "bag"
    return stem


def _write_clip(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """write_video into a hidden temporary sibling (skipped by the folders layout), then rename: atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write_video(tmp, np.stack(frames), fps=fps)
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; clips are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fps(times: Sequence[float]) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 30.0
    return round((len(times) - 1) / (times[-1] - times[0]), 2)


def _update_index(out: Path, clips: Sequence[ClipInfo], bag: Path, topic: str) -> Path:
    index = out / "index.csv"
    header = ["path", "label", "start", "end", "frames", "bag", "topic"]
    new_paths = {str(c.path.relative_to(out)) for c in clips}
    rows = []
    if index.is_file():
        with open(index, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("path") not in new_paths]
    rows += [{"path": str(c.path.relative_to(out)), "label": c.label, "start": f"{c.start:.3f}",
              "end": f"{c.end:.3f}", "frames": c.frames, "bag": str(bag), "topic": topic} for c in clips]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(index, buf.getvalue())


def extract_clips(bag: str | os.PathLike, topic: str, spans: Sequence[Span], out: str | os.PathLike,
                  fmt: str = "avi", limits: FrameLimits | None = None,
                  log: Callable[[str], None] = print) -> ExtractSummary:
    """Write one clip per span (module docstring). One pass over the bag; only the frames of the spans open at
    the current time are held in memory."""
    bag, out = Path(bag), Path(out)
    if fmt not in ("avi", "mp4"):
        raise BagError(f"--format must be avi or mp4, got {fmt!r}")
    for s in spans:
        check_label(s.label, f"span {s.index}")
    stem = _safe_stem(bag)
    stats = DecodeStats()
    pending = sorted(spans, key=lambda s: s.start)
    open_spans: dict[int, tuple[Span, list[np.ndarray], list[float]]] = {}
    size_drops: Counter = Counter()
    clips: list[ClipInfo] = []
    problems: list[str] = []

    def close(span: Span, frames: list[np.ndarray], times: list[float]) -> None:
        path = out / span.label / f"{stem}_{span.index:03d}.{fmt}"
        _write_clip(path, frames, _fps(times))
        clips.append(ClipInfo(path, span.label, times[0], times[-1], len(frames)))
        log(f"  {path.relative_to(out)}: {len(frames)} frames, {times[0]:.2f}-{times[-1]:.2f} s")

    try:
        for frame in iter_frames(bag, topic, stats, limits):
            while pending and pending[0].start <= frame.t:
                s = pending.pop(0)
                open_spans[s.index] = (s, [], [])
            for idx in list(open_spans):
                s, frames, times = open_spans[idx]
                if frame.t > s.end:
                    del open_spans[idx]
                    if frames:
                        close(s, frames, times)
                elif frames and frame.rgb.shape != frames[0].shape:
                    size_drops[s.index] += 1
                else:
                    frames.append(frame.rgb)
                    times.append(frame.t)
    except BagError:
        if clips:  # a bag damaged part-way: the clips completed before the damage stay listed
            _update_index(out, clips, bag, topic)
        raise
    for s, frames, times in open_spans.values():  # spans still open at the end of the bag
        if frames:
            close(s, frames, times)
            if s.end > stats.duration + 1e-6:
                problems.append(f"span {s.index} ({s.label} {s.start:g}-{s.end:g} s) goes past the topic's end at "
                                f"{stats.duration:.2f} s: clip cut there")
    if stats.messages == 0:
        raise BagError(f"topic {topic!r} in bag {bag} has no messages")
    written = {c.path.stem for c in clips}
    for s in spans:
        if f"{stem}_{s.index:03d}" not in written:
            where = (f"outside the topic's {stats.duration:.2f} s" if s.start > stats.duration
                     else "no frame decoded in it")
            problems.append(f"span {s.index} ({s.label} {s.start:g}-{s.end:g} s): no clip, {where}")
        if size_drops[s.index]:
            problems.append(f"span {s.index} ({s.label}): {size_drops[s.index]} frames dropped (size_change: "
                            "not the size of the span's first frame)")
    stats.dropped.update({"size_change": sum(size_drops.values())} if size_drops else {})
    index = _update_index(out, clips, bag, topic) if clips else None
    return ExtractSummary(clips, stats, problems, index)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repflow_core.data.rosbag",
                                description="Labelled spans of an image topic in a bag (ROS 2 sqlite3/mcap, ROS 1) "
                                            "-> one clip per span in DIR/<label>/ (the folders layout).")
    p.add_argument("--bag", required=True, help="ROS 2 bag folder (or its .db3/.mcap), or a ROS 1 .bag")
    p.add_argument("--topic", required=True, help="sensor_msgs/Image or sensor_msgs/CompressedImage topic")
    p.add_argument("--spans", required=True, help="CSV with header label,start,end (seconds from the topic's "
                                                  "first message)")
    p.add_argument("--out", required=True, help="dataset folder: clips go to OUT/<label>/, the list to "
                                                "OUT/index.csv")
    p.add_argument("--format", default="avi", choices=("avi", "mp4"), help="clip container (default avi, MJPG)")
    p.add_argument("--max-image-pixels", type=int, default=FrameLimits().max_pixels,
                   help="frames declaring more pixels are dropped (too_large)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spans = read_spans(args.spans)
        limits = FrameLimits(max_pixels=args.max_image_pixels)
        print(f"reading {args.topic} from {args.bag}: {len(spans)} spans")
        summary = extract_clips(args.bag, args.topic, spans, args.out, fmt=args.format, limits=limits)
    except (BagError, VideoWriteError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"topic {args.topic}: {summary.stats.describe()}")
    print(f"wrote {len(summary.clips)} of {len(spans)} clips" +
          (f", listed in {summary.index_csv}" if summary.index_csv else ""))
    for line in summary.problems:
        print(f"warning: {line}", file=sys.stderr)
    return 1 if len(summary.clips) < len(spans) else 0


if __name__ == "__main__":
    raise SystemExit(main())
