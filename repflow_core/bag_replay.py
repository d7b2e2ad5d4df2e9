"""Offline replay of a bag through the Recognizer, window by window as the ROS node does:
``python -m repflow_core.evaluate --checkpoint CKPT --bag BAG --topic TOPIC [--spans SPANS.csv] [--out DIR]``.

Frames come from :func:`repflow_core.data.rosbag.iter_frames` (same decoder and size guards as the node), are
preprocessed by :meth:`Recognizer.preprocess` and buffered like ``repflow_ros.frame_window.FrameWindow``: a window is
``clip_len`` frames every ``frame_stride``, ending at the newest frame; the first is ready when the buffer is full,
then one every ``hop`` new frames. The buffer restarts, as the node's does, when time goes backwards, on a gap over
``max_frame_gap`` seconds and when the frame size changes. Time is the bag's own timestamp, in seconds from the
topic's first message (the time base of SPANS.csv). Unlike the node nothing is skipped for being late: every window
is evaluated, so the result does not depend on the machine's speed.

Outputs (``--out``, default ``<checkpoint folder>/replay_<bag name>``): ``timeline.csv`` (one row per window: ``time``
of its newest frame, ``window_start``, bag ``stamp`` in seconds, ``label``, ``score``, ``topk``, ``truth``: the span
label when the whole window lies inside one span), ``timeline.png`` (predicted label and score over time with the
spans under it) and ``replay.json`` (counts, resets, dropped frames, per-span accuracy). Accuracy per span counts the
windows entirely inside the span ("clean" windows, as the demo counts them); windows straddling two spans are left
out, because their truth is ambiguous.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic_io import atomic_write_bytes, atomic_write_text
from .data.rosbag import DecodeStats, Span, iter_frames

__all__ = ["NODE_DEFAULT_HOP", "ReplayResult", "WindowResult", "plot_timeline", "replay_bag", "span_accuracy"]

#: The node's default ``hop`` (repflow_ros/node_parameters.py, config/recognize.yaml): duplicated, not imported,
#: because repflow_core never imports repflow_ros.
NODE_DEFAULT_HOP = 4
#: The node's default ``max_frame_gap`` in seconds (same source).
NODE_DEFAULT_MAX_FRAME_GAP = 0.5


@dataclass
class WindowResult:
    time: float  # newest frame, seconds from the topic's first message
    start: float  # oldest frame of the window
    stamp: float  # bag time of the newest frame, seconds since the epoch
    probs: np.ndarray


@dataclass
class ReplayResult:
    labels: list[str]
    windows: list[WindowResult]
    stats: DecodeStats
    resets: Counter = field(default_factory=Counter)
    per_span: list[dict] = field(default_factory=list)
    out_dir: Path | None = None

    def summary(self) -> dict:
        scored = [s for s in self.per_span if s["accuracy"] is not None]
        return {
            "windows": len(self.windows),
            "messages": self.stats.messages,
            "frames_decoded": self.stats.decoded,
            "frames_dropped": dict(self.stats.dropped),
            "unsupported_encodings": dict(self.stats.unsupported),
            "window_resets": dict(self.resets),
            "duration_s": self.stats.duration,
            "per_span": self.per_span,
            "mean_span_accuracy": float(np.mean([s["accuracy"] for s in scored])) if scored else None,
            "clean_window_accuracy": (sum(s["correct"] for s in scored) / sum(s["windows"] for s in scored)
                                      if scored else None),
        }


def _reset_reason(prev_t: float | None, t: float, prev_shape, shape, max_gap: float | None) -> str | None:
    """The node's FrameWindow order of precedence: time backwards, gap, size change."""
    if prev_t is None:
        return None
    if t < prev_t:
        return "time_jump_backwards"
    if max_gap is not None and t - prev_t > max_gap:
        return "frame_gap"
    if shape != prev_shape:
        return "size_change"
    return None


def replay_bag(recognizer, bag: str | os.PathLike, topic: str, hop: int = NODE_DEFAULT_HOP,
               max_frame_gap: float | None = NODE_DEFAULT_MAX_FRAME_GAP, smoothing: int = 1,
               spans: Sequence[Span] | None = None, limits=None,
               progress: Callable[[str], None] | None = None) -> ReplayResult:
    """Run ``recognizer`` (a :class:`repflow_core.recognizer.Recognizer`) over ``topic`` of ``bag``.

    ``smoothing`` > 1 averages each window's probabilities with the previous ones of the same segment, as the
    node does before choosing ``action_label`` (its default is 3); 1 scores every window on its own."""
    if int(hop) < 1:
        raise ValueError(f"hop must be >= 1, got {hop}")
    if int(smoothing) < 1:
        raise ValueError(f"smoothing must be >= 1, got {smoothing}")
    from .recognizer import FrameShapeError

    stats = DecodeStats()
    span_len = (recognizer.clip_len - 1) * recognizer.frame_stride + 1
    buf: deque = deque(maxlen=span_len)
    recent: deque = deque(maxlen=int(smoothing))
    resets: Counter = Counter()
    windows: list[WindowResult] = []
    prev_t = prev_shape = None
    seg_frames = 0
    for frame in iter_frames(bag, topic, stats, limits):
        reason = _reset_reason(prev_t, frame.t, prev_shape, frame.rgb.shape, max_frame_gap)
        if reason is not None:
            resets[reason] += 1
            buf.clear()
            recent.clear()
            seg_frames = 0
        prev_t, prev_shape = frame.t, frame.rgb.shape
        try:
            buf.append((frame.t, recognizer.preprocess(frame.rgb)))
        except FrameShapeError:
            stats.dropped["bad_shape"] += 1
            continue
        seg_frames += 1
        if len(buf) < span_len or (seg_frames - span_len) % int(hop):
            continue
        picked = list(buf)[:: recognizer.frame_stride]
        probs = recognizer.predict(np.stack([f for _, f in picked]))
        recent.append(probs)
        smoothed = np.mean(np.stack(recent), axis=0) if len(recent) > 1 else probs
        windows.append(WindowResult(frame.t, picked[0][0], frame.stamp_ns / 1e9, smoothed))
        if progress is not None and len(windows) % 50 == 0:
            progress(f"  {len(windows)} windows, {frame.t:.1f} s")
    result = ReplayResult(list(recognizer.labels), windows, stats, resets)
    if spans:
        result.per_span = span_accuracy(result, spans)
    return result


def _truth(w: WindowResult, spans: Sequence[Span]) -> str:
    inside = [s.label for s in spans if s.start <= w.start and w.time <= s.end]
    return inside[0] if len(set(inside)) == 1 else ""


def span_accuracy(result: ReplayResult, spans: Sequence[Span]) -> list[dict]:
    """Per span: the windows entirely inside it, how many predicted its label, the accuracy (None: no window)."""
    rows = []
    for s in spans:
        inside = [w for w in result.windows if s.start <= w.start and w.time <= s.end]
        correct = sum(result.labels[int(np.argmax(w.probs))] == s.label for w in inside)
        note = "" if s.label in result.labels else "not a label of the model"
        if not inside:
            note = note or "no window lies entirely inside the span"
        rows.append({"index": s.index, "label": s.label, "start": s.start, "end": s.end, "windows": len(inside),
                     "correct": int(correct), "accuracy": correct / len(inside) if inside else None, "note": note})
    return rows


def timeline_csv(result: ReplayResult, spans: Sequence[Span] | None, top_k: int = 5) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time", "window_start", "stamp", "label", "score", "topk", "truth"])
    k = min(int(top_k), len(result.labels))
    for win in result.windows:
        order = np.argsort(-win.probs, kind="stable")[:k]
        w.writerow([f"{win.time:.3f}", f"{win.start:.3f}", f"{win.stamp:.6f}", result.labels[int(order[0])],
                    f"{win.probs[order[0]]:.4f}",
                    " ".join(f"{result.labels[int(c)]}:{win.probs[c]:.3f}" for c in order),
                    _truth(win, spans) if spans else ""])
    return buf.getvalue()


def plot_timeline(result: ReplayResult, spans: Sequence[Span] | None, path: str | os.PathLike, title: str = ""):
    """The PNG strip: predicted label (colour band), its score over time, and the spans under it."""
    from .viz import _figure, _render

    labels = result.labels
    cmap = _label_colours(labels + sorted({s.label for s in spans or []} - set(labels)))
    fig = _figure(1200, 420)
    ax_lab, ax_score, ax_span = fig.subplots(3, 1, sharex=True, height_ratios=[1, 2.2, 1])
    times = np.array([w.time for w in result.windows])
    preds = [labels[int(np.argmax(w.probs))] for w in result.windows]
    scores = np.array([float(np.max(w.probs)) for w in result.windows])
    end = max([result.stats.duration] + [s.end for s in spans or []])
    for i, (t, lab) in enumerate(zip(times, preds)):  # each prediction holds until the next window
        nxt = times[i + 1] if i + 1 < len(times) else t + (t - times[i - 1] if i else 0.1)
        ax_lab.broken_barh([(t, max(nxt - t, 1e-3))], (0, 1), color=cmap[lab])
    _band_text(ax_lab, times, preds)
    ax_lab.set_yticks([])
    ax_lab.set_ylabel("predicted", rotation=0, ha="right", va="center")
    for lab in dict.fromkeys(preds):
        sel = np.array([p == lab for p in preds])
        ax_score.scatter(times[sel], scores[sel], s=12, color=cmap[lab], label=lab, zorder=3)
    ax_score.plot(times, scores, color="0.6", lw=0.8, zorder=2)
    ax_score.set_ylim(0, 1.02)
    ax_score.set_ylabel("score")
    ax_score.grid(alpha=0.3)
    if preds:
        ax_score.legend(loc="lower left", fontsize=8, ncol=min(6, len(set(preds))), framealpha=0.8)
    for s in spans or []:
        ax_span.broken_barh([(s.start, s.end - s.start)], (0, 1), color=cmap[s.label], alpha=0.8)
        ax_span.text((s.start + s.end) / 2, 0.5, s.label, ha="center", va="center", fontsize=8, clip_on=True)
    ax_span.set_yticks([])
    ax_span.set_ylabel("spans", rotation=0, ha="right", va="center")
    ax_span.set_xlim(0, max(end, 1e-3))
    ax_span.set_xlabel("seconds from the topic's first message")
    ax_lab.set_title(title or "bag replay")
    img = _render(fig, None)
    from .viz import write_png

    buf_path = Path(path)
    tmp = buf_path.with_name(f".{buf_path.name}.tmp.png")
    write_png(img, tmp)  # then renamed: the PNG appears complete or not at all
    os.replace(tmp, buf_path)
    return img


def _band_text(ax, times: np.ndarray, preds: list[str]) -> None:
    """Name each run of equal predictions in the band (once per run)."""
    i = 0
    while i < len(preds):
        j = i
        while j + 1 < len(preds) and preds[j + 1] == preds[i]:
            j += 1
        ax.text((times[i] + times[j]) / 2, 0.5, preds[i], ha="center", va="center", fontsize=7, clip_on=True)
        i = j + 1


def _label_colours(labels: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cm = colormaps["tab20"]
    return {lab: cm(i % 20) for i, lab in enumerate(labels)}


def write_outputs(result: ReplayResult, spans: Sequence[Span] | None, out: Path, title: str, top_k: int = 5,
                  extra: dict | None = None) -> dict:
    """timeline.csv, timeline.png and replay.json into ``out``; returns the summary written."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "timeline.csv", timeline_csv(result, spans, top_k))
    plot_timeline(result, spans, out / "timeline.png", title)
    summary = {**(extra or {}), **result.summary()}
    atomic_write_bytes(out / "replay.json", json.dumps(summary, indent=1).encode("utf-8"))
    result.out_dir = out
    return summary


def add_arguments(p) -> None:
    """The replay options of ``python -m repflow_core.evaluate``."""
    g = p.add_argument_group("bag replay (--bag): the checkpoint over a recorded image topic, window by window")
    g.add_argument("--bag", help="ROS 2 bag folder (sqlite3/mcap) or ROS 1 .bag to replay instead of a dataset")
    g.add_argument("--topic", help="sensor_msgs/Image or CompressedImage topic in the bag")
    g.add_argument("--spans", help="CSV label,start,end (seconds from the topic's first message): accuracy per span")
    g.add_argument("--hop", type=int, default=NODE_DEFAULT_HOP,
                   help=f"infer every HOP new frames (default {NODE_DEFAULT_HOP}, the node's default)")
    g.add_argument("--smoothing", type=int, default=1,
                   help="average each window with the previous N-1 (the node's label uses 3; default 1)")
    g.add_argument("--max-frame-gap", type=float, default=NODE_DEFAULT_MAX_FRAME_GAP,
                   help="a larger gap between frames restarts the window (seconds; 0 = never)")
    g.add_argument("--top-k", type=int, default=5, help="classes in the timeline's topk column")


def run_from_args(args) -> int:
    """``python -m repflow_core.evaluate --bag ...``: replay, write the outputs, print the per-span table.
    Exit status 0, or 2 with one line on stderr for bad input (bag, topic, spans, checkpoint)."""
    import sys

    from .checkpoint import CheckpointError
    from .data.rosbag import BagError, read_spans
    from .recognizer import Recognizer, RecognizerError

    try:
        if not args.topic:
            raise BagError("--bag needs --topic (the image topic to replay)")
        spans = read_spans(args.spans) if args.spans else None
        rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device)
        gap = args.max_frame_gap if args.max_frame_gap and args.max_frame_gap > 0 else None
        print(f"replaying {args.topic} of {args.bag} through {args.checkpoint} (clip_len {rec.clip_len}, "
              f"stride {rec.frame_stride}, hop {args.hop}, device {rec.device})")
        result = replay_bag(rec, args.bag, args.topic, hop=args.hop, max_frame_gap=gap, smoothing=args.smoothing,
                            spans=spans, progress=print)
        bag = Path(args.bag)
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"replay_{bag.stem or bag.name}"
        extra = {"checkpoint": str(args.checkpoint), "bag": str(bag), "topic": args.topic, "hop": args.hop,
                 "smoothing": args.smoothing, "max_frame_gap": gap}
        summary = write_outputs(result, spans, out, f"{bag.name} {args.topic} | {Path(args.checkpoint).name}",
                                args.top_k, extra)
    except (BagError, CheckpointError, RecognizerError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.topic}: {result.stats.describe()}; {len(result.windows)} windows"
          + (f", window resets: {dict(result.resets)}" if result.resets else ""))
    for s in result.per_span:
        acc = "-" if s["accuracy"] is None else f"{s['accuracy'] * 100:5.1f}%"
        print(f"  span {s['index']:>3} {s['label']:<14} {s['start']:7.2f}-{s['end']:7.2f} s  windows {s['windows']:>4}"
              f"  accuracy {acc}" + (f"  ({s['note']})" if s["note"] else ""))
    if summary["mean_span_accuracy"] is not None:
        print(f"mean span accuracy {summary['mean_span_accuracy'] * 100:.1f}%, clean windows "
              f"{summary['clean_window_accuracy'] * 100:.1f}%")
    print(f"wrote timeline.csv, timeline.png, replay.json to {out}")
    return 0
