"""Robustness report for any checkpoint: accuracy by camera geometry x factor on unseen synthetic clips.

``python -m repflow_core.evaluate --checkpoint CKPT --robustness [--out DIR] [--matrix quick|full]
[--clips-per-cell N] [--windows N] [--geometries 640x480,...] [--factors motion,left,...]``

The matrix
----------
A *cell* is one camera geometry (``WxH``: 128x128, 320x240, 640x480, 640x360 and portrait 360x640) and one
*factor* of the second-generation synthetic world (:mod:`repflow_core.data.synthetic`, ``generation=2``).
Every factor starts from the same *base* world (all of generation 2's randomisation, but the camera still,
no occluding furniture, the person anywhere) and changes one thing, so a cell's drop against ``still`` of the
same geometry is that factor's cost:

=================  ==========================================================================
``still``          the base world: robot camera not moving
``motion``         robot ego-motion in every clip (pan/tilt/zoom/shake; ``camera.motion_prob`` 1)
``occlusion``      furniture in front of the person's lower body in every clip
``low_light``      dark, noisy exposure (``camera.low_light``)
``centre``         feet in the centre third of the frame (``person.position``)
``left``/``right`` feet in the left / right third (what a 16:9 centre crop cuts off)
``blur_compr``     blur and JPEG loss at level 2 (twice the default ranges), compression in every clip
=================  ==========================================================================

``quick`` (default; about 3-5 minutes for the packaged model on 2 CPU cores): every geometry x {still,
motion}; 640x360 x {centre, left, right}; 640x480 x {occlusion, low_light, blur_compr}: 16 cells. ``full``:
every geometry x every factor (40 cells). ``--geometries``/``--factors`` give the cross product of the named
ones instead (any ``WxH`` with both sides >= 16 is accepted as a geometry).

Clips and seeds
---------------
A cell holds ``clips_per_cell`` clips (default 2 per class), class ``i % K`` for clip ``i``; clip ``j`` of
class ``c`` has seed ``10,000,000,000 + 4 * (c * 10,000 + j) + 3``, the same in every cell (a paired design: a
factor's effect is not drowned by a different draw of people). No training set or demo stream can use these
seeds, by construction: ``write_dataset`` derives its clip seeds by SeedSequence hashing into 32 bits
(< 2**32 = 4,294,967,296), ``camera_sim`` uses ``(seed * 1,000,003 + clip index) mod (2**31 - 1)``, and the
on-the-fly ``synthetic_stream`` ends every seed in its split's code 0, 1 or 2 (mod 4), never 3. A base inside
the 32-bit range would not do: 10,000,000 + 10,000 c + j is hit by the default training seed's 460th clip of
``walk_left``.

Scoring, as the node does
-------------------------
Each clip has as many frames as the checkpoint was trained with (``synthetic.num_frames`` of its training
config; 40 when absent), so actions move at the trained speed. Every frame goes through
:meth:`Recognizer.preprocess` (the checkpoint's own geometry policy) and ``windows`` evenly spaced windows of
``clip_len`` frames every ``frame_stride`` are scored by :meth:`Recognizer.predict`; the clip's prediction is
the mean of its windows' probabilities (*video top-1*); *window top-1* scores each window alone, over all
windows and over the windows that show the action (*action-window top-1*: at least :data:`ACTION_WINDOW_SHARE`
of the person motion of the clip's busiest window, from :func:`~.data.synthetic.person_motion`; a window of a
transitional action that misses it shows breathing only, and its label cannot be seen in it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic_io import atomic_write_text
from .data.synthetic import ALL_ACTIONS, SynthConfig, person_motion, render_clip, window_motion
from .data.synthetic_stream import parse_geometry as _parse_stream_geometry

__all__ = ["FACTORS", "GEOMETRIES", "MATRICES", "ROBUSTNESS_SEED_BASE", "Cell", "RobustnessConfig",
           "RobustnessError", "build_matrix", "clip_seed", "format_table", "parse_geometry", "run_robustness",
           "write_report"]

# Above 2**32: write_dataset's hashed clip seeds are 32-bit and camera_sim's are below 2**31, so no training set
# or demo stream can ever hold one of these clips (a base of 10**7 was hit by write_dataset's seeds at 460 clips).
# And = 3 (mod 4): synthetic_stream's seeds end in their split's code 0, 1 or 2 (SPLIT_CODES).
ROBUSTNESS_SEED_BASE = 10_000_000_000
SEED_CODE = 3
SEEDS_PER_CLASS = 10_000
DEFAULT_CLIP_FRAMES = 40  # config/train_synthetic.yaml synthetic.num_frames, for checkpoints that do not say
DEFAULT_CLIPS_PER_CLASS = 2
#: A window "shows the action" when it holds at least this share of the person motion of the clip's busiest
#: window (the synthetic stream's default synthetic.min_window_motion; below 10 % a window shows breathing only).
ACTION_WINDOW_SHARE = 0.25

#: name (W x H, as cameras are named) -> (height, width)
GEOMETRIES: dict[str, tuple[int, int]] = {
    "128x128": (128, 128), "320x240": (240, 320), "640x480": (480, 640), "640x360": (360, 640),
    "360x640": (640, 360),
}
_BASE = {"camera": {"motion": False}, "scene": {"occlusion": 0.0}, "person": {"position": "any"}}
#: factor -> the SynthConfig fields it changes from the base world
FACTORS: dict[str, dict[str, dict]] = {
    "still": {},
    "motion": {"camera": {"motion": True, "motion_prob": 1.0}},
    "occlusion": {"scene": {"occlusion": 1.0}},
    "low_light": {"camera": {"low_light": True}},
    "centre": {"person": {"position": "centre"}},
    "left": {"person": {"position": "left"}},
    "right": {"person": {"position": "right"}},
    "blur_compr": {"camera": {"blur": 2.0, "compression": 2.0, "compression_prob": 1.0}},
}
_QUICK = ([(g, f) for g in GEOMETRIES for f in ("still", "motion")]
          + [("640x360", f) for f in ("centre", "left", "right")]
          + [("640x480", f) for f in ("occlusion", "low_light", "blur_compr")])
MATRICES: dict[str, list[tuple[str, str]]] = {
    "quick": _QUICK,
    "full": [(g, f) for g in GEOMETRIES for f in FACTORS],
}


class RobustnessError(ValueError):
    """A robustness option or checkpoint that cannot be used; the message names it."""


def parse_geometry(name: str) -> tuple[int, int]:
    """``"640x480"`` (width x height) -> (480, 640), with the training stream's bounds (sides 16-4096 px,
    aspect at most 8:1: what a synthetic render and Recognizer.preprocess both take)."""
    if name in GEOMETRIES:
        return GEOMETRIES[name]
    try:
        return _parse_stream_geometry(name)
    except ValueError as exc:
        raise RobustnessError(f"{exc}; named ones: {', '.join(GEOMETRIES)}") from None


@dataclass(frozen=True)
class Cell:
    geometry: str  # "WxH"
    factor: str

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the rendered frames."""
        return parse_geometry(self.geometry)

    @property
    def name(self) -> str:
        return f"{self.geometry}/{self.factor}"

    def synth_config(self) -> SynthConfig:
        """The generation-2 config of this cell: the base world with the factor's fields changed."""
        merged = {k: dict(v) for k, v in _BASE.items()}
        for section, values in FACTORS[self.factor].items():
            merged.setdefault(section, {}).update(values)
        return SynthConfig.from_dict(merged)


def build_matrix(matrix: str = "quick", geometries: Sequence[str] | None = None,
                 factors: Sequence[str] | None = None) -> list[Cell]:
    """The cells of a preset, or (when either list is given) the cross product of ``geometries`` x
    ``factors`` (a missing list means all of its kind)."""
    if matrix not in MATRICES:
        raise RobustnessError(f"unknown matrix {matrix!r}; choose one of {', '.join(MATRICES)}")
    for f in factors or ():
        if f not in FACTORS:
            raise RobustnessError(f"unknown factor {f!r}; factors: {', '.join(FACTORS)}")
    for g in geometries or ():
        parse_geometry(g)
    if geometries or factors:
        gs, fs = list(geometries or GEOMETRIES), list(factors or FACTORS)
        if len(set(gs)) != len(gs) or len(set(fs)) != len(fs):
            raise RobustnessError(f"geometries and factors must not repeat: {gs}, {fs}")
        return [Cell(g, f) for g in gs for f in fs]
    return [Cell(g, f) for g, f in MATRICES[matrix]]


def clip_seed(class_index: int, repetition: int) -> int:
    """Seed of clip ``repetition`` of class ``class_index`` (the same in every cell)."""
    if not 0 <= repetition < SEEDS_PER_CLASS:
        raise RobustnessError(f"at most {SEEDS_PER_CLASS} clips per class per cell, got index {repetition}")
    return ROBUSTNESS_SEED_BASE + 4 * (class_index * SEEDS_PER_CLASS + repetition) + SEED_CODE


@dataclass
class RobustnessConfig:
    matrix: str = "quick"
    clips_per_cell: int | None = None  # None: DEFAULT_CLIPS_PER_CLASS x number of classes
    windows: int = 3  # evenly spaced windows per clip, probabilities averaged
    clip_frames: int | None = None  # None: the checkpoint's training synthetic.num_frames (or 40)
    geometries: list[str] = field(default_factory=list)
    factors: list[str] = field(default_factory=list)

    def validate(self) -> RobustnessConfig:
        if self.clips_per_cell is not None and int(self.clips_per_cell) < 1:
            raise RobustnessError(f"--clips-per-cell must be >= 1, got {self.clips_per_cell}")
        if int(self.windows) < 1:
            raise RobustnessError(f"--windows must be >= 1, got {self.windows}")
        if self.clip_frames is not None and int(self.clip_frames) < 1:
            raise RobustnessError(f"--clip-frames must be >= 1, got {self.clip_frames}")
        self.cells()
        return self

    def cells(self) -> list[Cell]:
        return build_matrix(self.matrix, self.geometries or None, self.factors or None)


def trained_clip_frames(training: dict | None) -> int:
    """Frames per synthetic clip the checkpoint was trained on (its training config), else 40.

    render_clip fits a whole action into the clip, so this sets how fast actions move per frame. Written
    datasets render ``synthetic.num_frames``; the on-the-fly stream (``data.layout: synthetic_stream``, see
    SyntheticStreamDataset.render) takes windows of a ``synthetic.clip_frames``-long action timeline; stream
    checkpoints from before that field rendered exactly one window, ``(clip_len - 1) * frame_stride + 1``."""
    try:
        cfg = training["config"]
        data = cfg.get("data") or {}
        if data.get("layout") == "synthetic_stream":
            syn = cfg.get("synthetic") or {}
            if "clip_frames" in syn:
                return int(syn["clip_frames"])
            return (int(data["clip_len"]) - 1) * int(data.get("frame_stride", 1)) + 1
        return int(cfg["synthetic"]["num_frames"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return DEFAULT_CLIP_FRAMES


def check_labels(labels: Sequence[str]) -> None:
    unknown = [lab for lab in labels if lab not in ALL_ACTIONS]
    if unknown:
        raise RobustnessError(f"the robustness matrix renders synthetic actions, but the checkpoint's labels "
                              f"{unknown[:8]} are not among them ({', '.join(ALL_ACTIONS)}); evaluate that model "
                              "on its own test set instead")


def window_starts(num_frames: int, span: int, windows: int) -> list[int]:
    """Start frames of up to ``windows`` evenly spaced windows of ``span`` frames inside ``num_frames``."""
    if num_frames < span:
        raise RobustnessError(f"clips of {num_frames} frames are shorter than one window ({span} frames)")
    return sorted(set(np.linspace(0, num_frames - span, windows).round().astype(int).tolist()))


def score_clip(recognizer, frames: np.ndarray, windows: int) -> np.ndarray:
    """Window probabilities (n_windows, K) of a clip, preprocessed frame by frame as the node does."""
    pre = np.stack([recognizer.preprocess(np.ascontiguousarray(f)) for f in frames])
    stride = int(recognizer.frame_stride)
    span = (int(recognizer.clip_len) - 1) * stride + 1
    batch = np.stack([pre[s : s + span : stride] for s in window_starts(len(pre), span, windows)])
    return np.asarray(recognizer.predict(batch), dtype=np.float64).reshape(len(batch), -1)


def action_windows(action: str, frames: int, size: tuple[int, int], seed: int, synth: SynthConfig,
                   span: int, windows: int) -> np.ndarray:
    """Which of the clip's scored windows show the action (bool per window of :func:`window_starts`): those
    holding at least :data:`ACTION_WINDOW_SHARE` of the person motion of the clip's busiest window."""
    held = window_motion(person_motion(action, frames, size, seed, synth), span)
    starts = np.asarray(window_starts(frames, span, windows))
    return held[starts] >= ACTION_WINDOW_SHARE * max(held.max(), 1e-12)


def run_robustness(recognizer, cfg: RobustnessConfig, clip_frames: int, progress: bool = True) -> list[dict]:
    """Render and score every clip of the matrix; one record per clip (cell, action, seed, probabilities)."""
    cfg.validate()
    labels = list(recognizer.labels)
    check_labels(labels)
    cells = cfg.cells()
    k = len(labels)
    per_cell = int(cfg.clips_per_cell or DEFAULT_CLIPS_PER_CLASS * k)
    span = (int(recognizer.clip_len) - 1) * int(recognizer.frame_stride) + 1
    records = []
    bar = tqdm(total=len(cells) * per_cell, desc="robustness", unit="clip", disable=not progress,
               dynamic_ncols=True)
    try:
        for cell in cells:
            synth = cell.synth_config()
            bar.set_postfix_str(cell.name)
            for i in range(per_cell):
                c, j = i % k, i // k
                seed = clip_seed(c, j)
                frames = render_clip(labels[c], clip_frames, cell.size, seed, generation=2, config=synth)
                probs = score_clip(recognizer, frames, cfg.windows)
                shows = action_windows(labels[c], clip_frames, cell.size, seed, synth, span, cfg.windows)
                records.append({"geometry": cell.geometry, "factor": cell.factor, "label": c, "seed": seed,
                                "window_probs": probs, "probs": probs.mean(0), "action_windows": shows})
                bar.update(1)
    finally:
        bar.close()
    return records


def summarise(records: Sequence[dict], cells: Sequence[Cell], labels: Sequence[str]) -> dict:
    """Accuracy per cell, per class (overall and by geometry), overall, and the overall confusion matrix."""
    k = len(labels)
    conf = np.zeros((k, k), np.int64)
    by_cell: dict[tuple[str, str], list] = {(c.geometry, c.factor): [] for c in cells}
    by_class_geo: dict[tuple[int, str], list] = {}
    for r in records:
        pred = int(np.argmax(r["probs"]))
        right = np.argmax(r["window_probs"], axis=1) == r["label"]
        shows = np.asarray(r.get("action_windows", np.ones(len(right), bool)), bool)
        conf[r["label"], pred] += 1
        by_cell[(r["geometry"], r["factor"])].append((pred == r["label"], int(right.sum()), len(right),
                                                      int(right[shows].sum()), int(shows.sum())))
        by_class_geo.setdefault((r["label"], r["geometry"]), []).append(pred == r["label"])
    rows = []
    for (g, f), hits in by_cell.items():
        n = len(hits)
        rows.append({"geometry": g, "factor": f, "clips": n,
                     "video_top1": sum(h[0] for h in hits) / n if n else float("nan"),
                     "window_top1": sum(h[1] for h in hits) / max(1, sum(h[2] for h in hits)) if n else float("nan"),
                     "action_window_top1": (sum(h[3] for h in hits) / sum(h[4] for h in hits)
                                            if sum(h[4] for h in hits) else None),
                     "action_windows": sum(h[4] for h in hits)})
    geos = list(dict.fromkeys(c.geometry for c in cells))
    per_class = {labels[c]: (float(conf[c, c] / conf[c].sum()) if conf[c].sum() else None) for c in range(k)}
    per_class_geo = {labels[c]: {g: (float(np.mean(by_class_geo[(c, g)])) if (c, g) in by_class_geo else None)
                                 for g in geos} for c in range(k)}
    total = int(conf.sum())
    windows = [(h[1], h[2], h[3], h[4]) for hits in by_cell.values() for h in hits]
    n_win, n_show = sum(w[1] for w in windows), sum(w[3] for w in windows)
    return {"window_top1": sum(w[0] for w in windows) / n_win if n_win else float("nan"), "windows": n_win,
            "action_window_top1": sum(w[2] for w in windows) / n_show if n_show else None,
            "action_windows": n_show,
            "cells": rows, "labels": list(labels), "geometries": geos,
            "factors": list(dict.fromkeys(c.factor for c in cells)),
            "video_top1": float(np.trace(conf) / total) if total else float("nan"), "clips": total,
            "per_class": per_class, "per_class_by_geometry": per_class_geo, "confusion": conf.tolist()}


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.0f}%"


def format_table(summary: dict) -> str:
    """Video top-1 by geometry (rows) x factor (columns), then per class overall and by geometry."""
    geos, facs = summary["geometries"], summary["factors"]
    acc = {(r["geometry"], r["factor"]): r["video_top1"] for r in summary["cells"]}
    w = max(8, *(len(f) for f in facs))
    lines = ["video top-1 by geometry (W x H) x factor", f"{'geometry':<9}" + "".join(f"{f:>{w + 1}}" for f in facs)]
    for g in geos:
        lines.append(f"{g:<9}" + "".join(f"{_pct(acc.get((g, f))):>{w + 1}}" for f in facs))
    lw = max(len("class"), *(len(lab) for lab in summary["labels"]))
    lines += ["", "per class (all cells) and by geometry",
              f"{'class':<{lw}}  {'all':>5}" + "".join(f"{g:>9}" for g in geos)]
    for lab in summary["labels"]:
        by_g = summary["per_class_by_geometry"][lab]
        lines.append(f"{lab:<{lw}}  {_pct(summary['per_class'][lab]):>5}" + "".join(f"{_pct(by_g[g]):>9}"
                                                                                 for g in geos))
    lines.append(f"\noverall video top-1 {_pct(summary['video_top1'])} over {summary['clips']} clips")
    if "window_top1" in summary:
        lines.append(f"window top-1 {_pct(summary['window_top1'])} over {summary['windows']} windows; "
                     f"{_pct(summary['action_window_top1'])} over the {summary['action_windows']} that show the "
                     f"action (>= {ACTION_WINDOW_SHARE:g} of the clip's busiest window's motion)")
    return "\n".join(lines)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_report(summary: dict, records: Sequence[dict], out_dir: str | Path, run_name: str = "",
                 meta: dict | None = None) -> dict[str, Path]:
    """Write robustness.csv (one row per cell), robustness_clips.csv (one per clip), robustness.json and
    robustness.png (heat map), each atomically. Returns their paths."""
    from . import viz

    out = Path(out_dir)
    labels = summary["labels"]
    paths = {name: out / f"robustness{suffix}" for name, suffix in
             (("csv", ".csv"), ("clips", "_clips.csv"), ("json", ".json"), ("png", ".png"))}
    atomic_write_text(paths["csv"], _csv_text(
        ["geometry", "factor", "clips", "video_top1", "window_top1", "action_window_top1"],
        [[r["geometry"], r["factor"], r["clips"], f"{r['video_top1']:.4f}", f"{r['window_top1']:.4f}",
          "" if r["action_window_top1"] is None else f"{r['action_window_top1']:.4f}"] for r in summary["cells"]]))
    clip_rows = []
    for r in records:
        pred = int(np.argmax(r["probs"]))
        right = np.argmax(r["window_probs"], 1) == r["label"]
        shows = np.asarray(r.get("action_windows", np.ones(len(right), bool)), bool)
        clip_rows.append([r["geometry"], r["factor"], labels[r["label"]], r["seed"], labels[pred],
                          f"{r['probs'][pred]:.4f}", int(right.sum()), len(right), int(right[shows].sum()),
                          int(shows.sum())])
    atomic_write_text(paths["clips"], _csv_text(
        ["geometry", "factor", "action", "seed", "predicted", "score", "windows_right", "windows",
         "action_windows_right", "action_windows"], clip_rows))
    atomic_write_text(paths["json"], json.dumps({**(meta or {}), **summary}, indent=1, allow_nan=False,
                                                default=_json_default))
    geos, facs = summary["geometries"], summary["factors"]
    grid = np.full((len(geos), len(facs)), np.nan)
    counts = np.zeros_like(grid, dtype=np.int64)
    for r in summary["cells"]:
        gi, fi = geos.index(r["geometry"]), facs.index(r["factor"])
        grid[gi, fi], counts[gi, fi] = r["video_top1"], r["clips"]
    viz.plot_heatmap(grid, geos, facs, paths["png"], counts=counts, run_name=run_name,
                     what="robustness: video top-1", title=f"{summary['clips']} unseen clips",
                     xlabel="factor", ylabel="geometry (W x H)")
    return paths


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(type(obj).__name__)


def robustness_report(checkpoint: str | Path | None, cfg: RobustnessConfig, out_dir: str | Path | None = None,
                      device: str = "cpu", progress: bool = True, log: Callable[[str], None] = print,
                      write_files: bool = True) -> dict:
    """The whole command: load, run the matrix, print the tables, write the files. Returns the summary."""
    from .recognizer import Recognizer

    cfg.validate()
    rec = Recognizer.from_checkpoint(checkpoint, device=device, log=lambda m: None)
    check_labels(rec.labels)
    source = Path(rec.source)
    frames = int(cfg.clip_frames or trained_clip_frames(rec.checkpoint.training))
    cells = cfg.cells()
    per_cell = int(cfg.clips_per_cell or DEFAULT_CLIPS_PER_CLASS * len(rec.labels))
    span = (int(rec.clip_len) - 1) * int(rec.frame_stride) + 1
    n_win = len(window_starts(frames, span, cfg.windows))  # a clip of one window's length holds just one
    log(f"robustness of {source}: {len(cells)} cells x {per_cell} clips of {frames} frames (generation 2, seeds "
        f"{ROBUSTNESS_SEED_BASE}+), {n_win} windows of {rec.clip_len} frames per clip")
    start = time.perf_counter()
    records = run_robustness(rec, cfg, frames, progress=progress)
    seconds = time.perf_counter() - start
    summary = summarise(records, cells, rec.labels)
    log(format_table(summary) + f" ({seconds:.0f} s)")
    summary["seconds"] = seconds
    if write_files:
        out = Path(out_dir) if out_dir else Path("runs") / "robustness" / source.stem
        meta = {"checkpoint": str(source), "matrix": cfg.matrix, "clips_per_cell": per_cell,
                "windows": cfg.windows, "clip_frames": frames, "seed_base": ROBUSTNESS_SEED_BASE,
                "seeds_per_class": SEEDS_PER_CLASS, "generation": 2}
        paths = write_report(summary, records, out, run_name=source.stem, meta=meta)
        summary["out_dir"] = str(out)
        log(f"wrote {', '.join(p.name for p in paths.values())} to {out}")
    return summary


# ------------------------------------------------------------------------------------ command line
#: evaluate.py options that only the dataset evaluation uses (refused with --robustness) and the reverse
DATASET_ONLY = ("config", "clips", "crops", "subset", "batch_size", "max_videos")
ROBUSTNESS_ONLY = ("matrix", "clips_per_cell", "windows", "clip_frames", "geometries", "factors")


def _csv_list(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def add_arguments(p) -> None:
    """The ``--robustness`` options of ``python -m repflow_core.evaluate``."""
    g = p.add_argument_group("robustness report (--robustness; no dataset needed)")
    g.add_argument("--robustness", action="store_true",
                   help="render the seeded matrix of unseen synthetic clips (geometry x factor) and report accuracy "
                        "per cell; writes robustness.csv/.json/.png and robustness_clips.csv to --out (default "
                        "runs/robustness/<checkpoint name>)")
    g.add_argument("--matrix", choices=tuple(MATRICES), default=None,
                   help="quick (16 cells, default, a few minutes on 2 CPU cores) or full (40 cells)")
    g.add_argument("--clips-per-cell", type=int, default=None,
                   help=f"clips per cell, classes in turn (default {DEFAULT_CLIPS_PER_CLASS} per class)")
    g.add_argument("--windows", type=int, default=None, help="evenly spaced windows per clip (default 3)")
    g.add_argument("--clip-frames", type=int, default=None,
                   help="frames per clip (default: the checkpoint's training synthetic.num_frames, else 40)")
    g.add_argument("--geometries", type=_csv_list, default=None,
                   help=f"comma-separated WxH (named: {','.join(GEOMETRIES)}); with --factors, their cross product")
    g.add_argument("--factors", type=_csv_list, default=None, help=f"comma-separated: {','.join(FACTORS)}")


def option_conflicts(args, parser) -> list[str]:
    """Options given that the chosen mode does not use (so a typo'd intent is refused, not ignored)."""
    if args.robustness:
        given = [d for d in DATASET_ONLY if getattr(args, d, None) != parser.get_default(d)]
        if getattr(args, "overrides", None) or any(k.startswith("short_") and v is not None
                                                   for k, v in vars(args).items()):
            given.append("set/--data-root/--num-workers")
        out = [f"--{d.replace('_', '-')} applies to the dataset evaluation, not to --robustness" for d in given]
        if getattr(args, "bag", None):
            out.append("--bag and --robustness are two different evaluations: pick one")
        return out
    given = [d for d in ROBUSTNESS_ONLY if getattr(args, d, None) is not None]
    return [f"--{d.replace('_', '-')} needs --robustness" for d in given]


def cli(args, log: Callable[[str], None] = print) -> int:
    """Run ``--robustness`` from parsed evaluate arguments; exit status 0, or 2 with the reason on stderr."""
    import sys

    from .checkpoint import CheckpointError
    from .recognizer import RecognizerError

    cfg = RobustnessConfig(matrix=args.matrix or "quick", clips_per_cell=args.clips_per_cell,
                           windows=3 if args.windows is None else args.windows, clip_frames=args.clip_frames,
                           geometries=list(args.geometries or []), factors=list(args.factors or []))
    try:
        summary = robustness_report(args.checkpoint, cfg, out_dir=args.out, device=args.device,
                                    progress=not args.no_progress, log=log)
    except (RobustnessError, CheckpointError, RecognizerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log(json.dumps({"video_top1": summary["video_top1"], "clips": summary["clips"],
                    "out_dir": summary.get("out_dir")}, indent=1))
    return 0
