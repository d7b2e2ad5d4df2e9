"""How many windows of a synthetic action timeline miss the action (issue 9: what synthetic.min_window_motion is for).

    python -m repflow_core.experiments.action_windows [--clips-per-class 150] [--clip-frames 40] [--clip-len 16]
        [--geometry 224x168] [--seed-base 1000] [--out docs/action_windows]

No rendering and no model: for ``--clips-per-class`` generation-2 clips of every class (camera motion on, as the
generation-2 recipes train), the person's motion between consecutive frames comes from the pose track
(:func:`repflow_core.data.synthetic.person_motion`). For every start of a ``--clip-len``-frame window in the
``--clip-frames`` timeline, the window's share is the motion it holds over that of the clip's busiest window.
Prints, per class, the share of windows below 10 %, 25 % and 50 % (a window under 10 % shows breathing only), and
writes ``OUT.json`` and ``OUT.png`` (grouped bars) atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write_text
from ..data.synthetic import ACTIONS, SynthConfig, person_motion, window_motion
from ..data.synthetic_stream import parse_geometry

THRESHOLDS = (0.1, 0.25, 0.5)


def window_shares(motion: np.ndarray, span: int) -> np.ndarray:
    """Each window start's motion (frames ``s .. s + span - 1``) over the busiest window's."""
    held = window_motion(motion, span)
    return held / max(float(held.max()), 1e-12)


def measure(clips_per_class: int, clip_frames: int, clip_len: int, size: tuple[int, int], seed_base: int,
            classes=ACTIONS) -> dict[str, dict[str, float]]:
    """{class: {"<0.1": share of windows, ...}} over every window start of every clip."""
    synth = SynthConfig.from_dict({"camera": {"motion": True}})
    out = {}
    for action in classes:
        shares = np.concatenate([window_shares(person_motion(action, clip_frames, size, seed_base + k, synth),
                                               clip_len) for k in range(clips_per_class)])
        out[action] = {f"<{t:g}": float(np.mean(shares < t)) for t in THRESHOLDS}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repflow_core.experiments.action_windows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips-per-class", type=int, default=150)
    p.add_argument("--clip-frames", type=int, default=40)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--geometry", default="224x168", help="WxH the clips are planned at (the recipe's 640x480 x 0.35)")
    p.add_argument("--seed-base", type=int, default=1000)
    p.add_argument("--out", default="docs/action_windows", help="writes OUT.json and OUT.png")
    args = p.parse_args(argv)
    if args.clips_per_class < 1 or not 2 <= args.clip_len <= args.clip_frames:
        p.error("--clips-per-class must be >= 1 and 2 <= --clip-len <= --clip-frames")
    try:
        size = parse_geometry(args.geometry)
    except ValueError as exc:
        p.error(str(exc))
    table = measure(args.clips_per_class, args.clip_frames, args.clip_len, size, args.seed_base)
    print(f"windows of {args.clip_len} frames in a {args.clip_frames}-frame timeline, {args.clips_per_class} clips "
          "per class: share of windows holding less than 10 / 25 / 50 % of the busiest window's motion")
    for action, row in table.items():
        print(f"{action:<11} " + "  ".join(f"{100 * v:5.1f} %" for v in row.values()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"clips_per_class": args.clips_per_class, "clip_frames": args.clip_frames, "clip_len": args.clip_len,
         "geometry": args.geometry, "seed_base": args.seed_base, "share_of_windows_below": table}, indent=1))
    from ..charts import plot_grouped_bars

    series = {f"< {100 * t:g} % of the busiest window": [table[a][f"<{t:g}"] for a in table] for t in THRESHOLDS}
    plot_grouped_bars(list(table), series, out.with_suffix(".png"), ylabel="share of windows (%)",
                      what="windows that miss the action",
                      title=f"{args.clip_len}-frame windows of a {args.clip_frames}-frame timeline")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
