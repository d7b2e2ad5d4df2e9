"""What a global camera pan does to the representation-flow features and to accuracy (issue 9, part 3).

    python -m repflow_core.experiments.camera_pan --out runs/camera_pan [--checkpoint CKPT] [--geometry 128x128]
        [--clips-per-class 4] [--pan 0.004] [--conditions still shifted pan mix] [--windows 2]

No training: a checkpoint (default: the packaged model) is run on unseen generation-2 clips
(:mod:`repflow_core.data.synthetic`, the robustness report's seeds :func:`repflow_core.robustness.clip_seed`) under
camera conditions that differ only in the camera:

* ``still``: the robot camera still (``camera.motion_prob`` 0; every other factor of generation 2 as drawn);
* ``shifted``: the ``still`` clip itself, every frame translated sideways by ``--pan`` frame widths per frame
  (sub-pixel, reflected at the border): a pure horizontal pan of exactly the same content, the cleanest pairing;
* ``pan``: the generator's ego-motion reduced to a pure horizontal pan of ``--pan`` frame widths per frame (tilt,
  zoom and shake 0, ``motion_prob`` 1). Same person, placement and look as ``still`` for a seed; the room and
  the action timing are drawn after the camera, so they differ (a world canvas with a margin is drawn);
* ``mix``: the generator's default ego-motion mix (pan, tilt, zoom, shake at their default ranges) in every clip.

For every clip, each frame goes through :meth:`Recognizer.preprocess` as in the node, ``--windows`` evenly spaced
windows are scored, and a forward hook on every RepresentationFlow layer of the model records its flow
(B, 2C, T', h, w) (x flows then y flows, Sec. 3.2). Per layer output the measurement splits the flow into its
*global* part, each channel's spatial median per frame pair (what :func:`repflow_core.model.subtract_global_motion`
removes), and the *residual* ``flow - median``:

* ``glob_u`` / ``glob_v``: mean |median| of the x / y flows (feature pixels per frame);
* ``res_u`` / ``res_v``: mean |flow - median|;
* ``median_share``: the median's share of the flow energy, ``sum(median^2) / sum(flow^2)`` over every pixel.

Accuracy (video top-1, windows' probabilities averaged) is reported for the same weights with
``flow_global_motion`` ``none`` (as trained) and ``median``. Writes ``camera_pan.csv`` (per condition),
``camera_pan_clips.csv`` (per clip), ``camera_pan.json`` and ``camera_pan.png`` to ``--out``; every file
atomically.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..atomic_io import atomic_write_text
from ..checkpoint import load_checkpoint
from ..data.synthetic import SynthConfig, render_clip
from ..flow import iter_flow_layers
from ..recognizer import Recognizer, default_checkpoint
from ..robustness import check_labels, clip_seed, parse_geometry, trained_clip_frames, window_starts

CONDITIONS = ("still", "shifted", "pan", "mix")
VARIANTS = ("none", "median")
_STILL = {"camera": {"motion": True, "motion_prob": 0.0}}  # drawn like a moving camera, then not moved


def synth_config(condition: str, pan: float) -> SynthConfig:
    """The generation-2 config of a condition (``shifted`` renders ``still`` and moves it afterwards)."""
    if condition in ("still", "shifted"):
        return SynthConfig.from_dict(_STILL)
    if condition == "pan":
        return SynthConfig.from_dict({"camera": {"motion": True, "motion_prob": 1.0, "pan_speed": [pan, pan],
                                                 "tilt_speed": [0.0, 0.0], "zoom_speed": [0.0, 0.0],
                                                 "shake": [0.0, 0.0]}})
    if condition == "mix":
        return SynthConfig.from_dict({"camera": {"motion": True, "motion_prob": 1.0}})
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


def shift_clip(frames: np.ndarray, pan: float, direction: float = 1.0) -> np.ndarray:
    """Frames (T, H, W, 3) translated by ``direction * pan * W * (t - centre)`` pixels along x: a pure pan,
    centred in time like the generator's camera path so the person stays where placed on average."""
    t_count, h, w = frames.shape[:3]
    out = np.empty_like(frames)
    for t in range(t_count):
        dx = direction * pan * w * (t - (t_count - 1) / 2.0)
        mat = np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]])  # forward map: content moves by +dx (camera: -dx)
        out[t] = cv2.warpAffine(frames[t], mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def flow_stats(flow: torch.Tensor) -> dict[str, float]:
    """Global (per-channel spatial median, per frame pair) vs residual parts of a flow (B, 2C, T', h, w)."""
    c = flow.shape[1] // 2
    flat = flow.detach().double().flatten(3)
    median = flat.median(dim=-1, keepdim=True).values  # torch.median here: measurement only, never exported
    resid = flat - median
    energy = float((flat ** 2).sum())
    return {"glob_u": float(median[:, :c].abs().mean()), "glob_v": float(median[:, c:].abs().mean()),
            "res_u": float(resid[:, :c].abs().mean()), "res_v": float(resid[:, c:].abs().mean()),
            "median_share": float((median ** 2).sum() * flat.shape[-1] / energy) if energy > 0 else 0.0}


class FlowRecorder:
    """Forward hooks that keep the last output of every RepresentationFlow layer of a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.flows: list[torch.Tensor] = []
        self._handles = [layer.register_forward_hook(self._hook) for layer in iter_flow_layers(model)]
        if not self._handles:
            raise ValueError("the model has no representation-flow layer to measure (flow 'none' or UF-TSN)")

    def _hook(self, module, inputs, output) -> None:
        self.flows.append(output.detach())

    def take(self) -> list[torch.Tensor]:
        flows, self.flows = self.flows, []
        return flows

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def recognizers(checkpoint: str | Path | None) -> dict[str, Recognizer]:
    """The checkpoint as trained (``none``) and with ``flow_global_motion: median``: the same weights."""
    path = Path(checkpoint) if checkpoint else default_checkpoint()
    ckpt = load_checkpoint(path)
    out = {}
    for variant in VARIANTS:
        cfg = dataclasses.replace(ckpt.model_config, flow_global_motion=variant)
        out[variant] = Recognizer(dataclasses.replace(ckpt, model_config=cfg), device="cpu", source=str(path))
    return out


def _windows(rec: Recognizer, frames: np.ndarray, windows: int) -> np.ndarray:
    pre = np.stack([rec.preprocess(np.ascontiguousarray(f)) for f in frames])
    stride = int(rec.frame_stride)
    span = (int(rec.clip_len) - 1) * stride + 1
    return np.stack([pre[s : s + span : stride] for s in window_starts(len(pre), span, windows)])


def measure(args: argparse.Namespace, log=print) -> list[dict]:
    """Render and score every clip of every condition; one record per (condition, clip)."""
    recs = recognizers(args.checkpoint)
    base = recs["none"]
    labels = list(base.labels)
    check_labels(labels)
    frames_per_clip = args.frames or trained_clip_frames(base.checkpoint.training)
    size = parse_geometry(args.geometry)
    recorder = FlowRecorder(base.model)
    records = []
    try:
        for condition in args.conditions:
            synth, t0 = synth_config(condition, args.pan), time.monotonic()
            for j in range(args.clips_per_class):
                for c, action in enumerate(labels):
                    seed = clip_seed(c, j)
                    frames = render_clip(action, frames_per_clip, size, seed, generation=2, config=synth)
                    if condition == "shifted":
                        frames = shift_clip(frames, args.pan, 1.0 if (c + j) % 2 == 0 else -1.0)
                    batch = _windows(base, frames, args.windows)
                    rec = {"condition": condition, "label": c, "seed": seed}
                    for variant, r in recs.items():
                        probs = np.asarray(r.predict(batch), dtype=np.float64).reshape(len(batch), -1).mean(0)
                        rec[f"pred_{variant}"] = int(probs.argmax())
                        if variant == "none":
                            stats = [flow_stats(f) for f in recorder.take()]  # one per flow layer (FcF: 2)
                            rec.update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
                    records.append(rec)
            log(f"{condition}: {len(labels) * args.clips_per_class} clips in {time.monotonic() - t0:.0f} s")
    finally:
        recorder.remove()
    return records


STAT_KEYS = ("glob_u", "glob_v", "res_u", "res_v", "median_share")


def summarise(records: list[dict], conditions) -> list[dict]:
    rows = []
    for cond in conditions:
        rs = [r for r in records if r["condition"] == cond]
        n = len(rs)
        row = {"condition": cond, "clips": n, "noise_1_sqrt_n": 1.0 / math.sqrt(n) if n else float("nan")}
        row.update({k: float(np.mean([r[k] for r in rs])) for k in STAT_KEYS})
        for v in VARIANTS:
            row[f"top1_{v}"] = float(np.mean([r[f"pred_{v}"] == r["label"] for r in rs]))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("| camera | clips | global u | global v | residual u | residual v | median's energy share "
            "| top-1 none | top-1 median |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['clips']} | {r['glob_u']:.3f} | {r['glob_v']:.3f} | {r['res_u']:.3f} "
                     f"| {r['res_v']:.3f} | {100 * r['median_share']:.1f} % | {100 * r['top1_none']:.1f} % "
                     f"| {100 * r['top1_median']:.1f} % |")
    return "\n".join(lines)


def _csv(rows: list[dict], keys) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(keys), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in keys})
    return buf.getvalue()


def plot(rows: list[dict], path: Path, run_name: str) -> Path | None:
    """Two panels: global vs residual flow magnitude per condition, and top-1 none vs median."""
    try:
        from ..charts import _figure, _render, _title
    except ImportError as exc:
        print(f"no chart ({exc})", flush=True)
        return None
    try:
        fig = _figure(1000, 420)
    except ImportError as exc:  # matplotlib missing: the table and CSV are still written
        print(f"no chart ({exc})", flush=True)
        return None
    fig.suptitle(_title(run_name, "", "camera pan: representation-flow features and accuracy"))
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(rows))
    names = [r["condition"] for r in rows]
    for i, (key, label) in enumerate((("glob", "global (median) |.|"), ("res", "residual |flow - median|"))):
        ax1.bar(x + (i - 0.5) * 0.4, [(r[f"{key}_u"] + r[f"{key}_v"]) / 2 for r in rows], 0.4, label=label)
    ax1.set_xticks(x, names)
    ax1.set_ylabel("flow, feature px / frame (mean of u, v)")
    ax1.legend(fontsize=8)
    for i, v in enumerate(VARIANTS):
        ax2.bar(x + (i - 0.5) * 0.4, [100 * r[f"top1_{v}"] for r in rows], 0.4, label=f"flow_global_motion {v}")
    ax2.set_xticks(x, names)
    ax2.set_ylim(0, 100)
    ax2.set_ylabel(f"video top-1 (%), {rows[0]['clips'] if rows else 0} clips each")
    ax2.legend(fontsize=8)
    _render(fig, path)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repflow_core.experiments.camera_pan",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (CSV, JSON, PNG)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the packaged model)")
    p.add_argument("--geometry", default="128x128", help="frame size WxH (default 128x128)")
    p.add_argument("--clips-per-class", type=int, default=4, help="clips per class and condition (default 4)")
    p.add_argument("--pan", type=float, default=0.004,
                   help="pan speed, frame widths per frame (default 0.004: the generator's fastest pan)")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--windows", type=int, default=2, help="windows per clip, probabilities averaged (default 2)")
    p.add_argument("--frames", type=int, default=0, help="frames per clip (default: the checkpoint's training)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clips_per_class < 1 or args.windows < 1:
        raise SystemExit("--clips-per-class and --windows must be >= 1")
    if not 0.0 <= args.pan <= 0.1:
        raise SystemExit(f"--pan must be in [0, 0.1] frame widths per frame, got {args.pan}")
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    t0 = time.monotonic()
    records = measure(args)
    rows = summarise(records, args.conditions)
    table = format_table(rows)
    print(table)
    run_name = out.name or "camera_pan"
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings["checkpoint"] = str(args.checkpoint or default_checkpoint())
    atomic_write_text(out / "camera_pan.csv", _csv(rows, rows[0].keys()))
    atomic_write_text(out / "camera_pan_clips.csv", _csv(records, records[0].keys()))
    atomic_write_text(out / "camera_pan.json", json.dumps({"settings": settings, "rows": rows,
                                                           "seconds": round(time.monotonic() - t0, 1)}, indent=1))
    atomic_write_text(out / "camera_pan.md", table + "\n")
    png = plot(rows, out / "camera_pan.png", run_name)
    print(f"wrote {out / 'camera_pan.csv'}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
