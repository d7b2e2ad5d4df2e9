"""Writing a synthetic dataset: video files (through :mod:`repflow_core.data.video_io`) plus UCF101-style
split files, and the command line ``python -m repflow_core.data.synthetic``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from ..video_io import VideoReadError, VideoWriteError, read_video, write_video
from .generator import DEFAULT_GENERATION, GENERATIONS, SynthConfig
from .render import ACTIONS, ALL_ACTIONS, render_clip

_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4")  # MJPG, then mp4v (video_io picks the codec by suffix)
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def _choose_extension(out_dir: Path, fps: float) -> str:
    """First extension whose tiny test file decodes back with the right frame count and size."""
    probe = np.random.default_rng(0).integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    for ext in _EXTENSIONS:
        path = out_dir / f".codec_probe{ext}"
        try:
            write_video(path, probe, fps)
            if read_video(path).shape == probe.shape:
                return ext
        except (VideoWriteError, VideoReadError, cv2.error):
            pass
        finally:
            path.unlink(missing_ok=True)
    raise RuntimeError("no working video codec: neither MJPG/.avi nor mp4v/.mp4 round-trips with OpenCV")


def _clip_seed(seed: int, class_index: int, clip_index: int) -> int:
    return int(np.random.SeedSequence([int(seed), class_index, clip_index]).generate_state(1)[0])


def _split_indices(per_class: int, test_fraction: float, seed: int, class_index: int) -> set[int]:
    """Deterministic test-set indices for one class (stratified: the same count for every class)."""
    n_test = int(round(per_class * test_fraction))
    if test_fraction > 0 and per_class >= 2:
        n_test = max(n_test, 1)
    n_test = min(n_test, per_class - 1) if per_class >= 2 else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B117, class_index]))
    return set(int(i) for i in rng.permutation(per_class)[:n_test])


def write_dataset(
    out_dir: str | Path,
    per_class: int,
    num_frames: int = 48,
    size: int | tuple[int, int] = (128, 128),
    fps: float = 30,
    seed: int = 0,
    test_fraction: float = 0.25,
    progress: bool = True,
    generation: int = DEFAULT_GENERATION,
    config: SynthConfig | None = None,
    actions: tuple[str, ...] = ACTIONS,
    sizes: list[tuple[int, int]] | None = None,
    name_prefix: str = "",
) -> dict:
    """Render ``per_class`` clips of every action to video files plus UCF101-style split files.

    Layout: ``out_dir/<action>/<name_prefix><action>_<i:04d>.avi`` (``.mp4`` if MJPG does not round-trip),
    ``out_dir/trainlist.txt`` and ``out_dir/testlist.txt`` (one relative path per line), and
    ``out_dir/classInd.txt`` (``"1 idle"`` ...). Existing files are overwritten. ``generation``/``config``
    choose the renderer (see :func:`render_clip`); ``actions`` the classes (default: the ten of :data:`ACTIONS`).
    ``sizes``: (height, width) per clip instead of ``size``, clip ``i`` of every class at ``sizes[i % len]`` (every
    geometry gets the same share of each class and of its test clips' indices).

    Returns a summary dict: out_dir, codec, extension, num_videos, num_train, num_test, per_class,
    num_frames, size (height, width), fps, generation, seconds.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if generation not in GENERATIONS:
        raise ValueError(f"generation must be one of {GENERATIONS}, got {generation!r}")
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    shapes = [(int(h), int(w)) for h, w in sizes] if sizes else [hw]
    shape_of: dict[str, tuple[int, int]] = {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = _choose_extension(out, fps)

    train: list[str] = []
    test: list[str] = []
    bar = tqdm(total=per_class * len(actions), desc="synthetic videos", unit="clip", disable=not progress)
    for ci, action in enumerate(actions):
        (out / action).mkdir(exist_ok=True)
        test_idx = _split_indices(per_class, test_fraction, seed, ci)
        for i in range(per_class):
            rel = f"{action}/{name_prefix}{action}_{i:04d}{ext}"
            shape_of[rel] = shapes[i % len(shapes)]
            frames = render_clip(action, num_frames, shape_of[rel], _clip_seed(seed, ci, i),
                                 generation=generation, config=config)
            write_video(out / rel, frames, fps)
            (test if i in test_idx else train).append(rel)
            bar.update(1)
    bar.close()

    # Check one file fully decodes back (the codec probe covered the rest of the pipeline).
    first_rel = train[0] if train else test[0]
    first = read_video(out / first_rel)
    want = shape_of[first_rel]
    if first.shape[:3] != (num_frames, *want):
        raise RuntimeError(f"written video decodes as {first.shape}, expected {(num_frames, *want, 3)}")

    _write_text(out / "trainlist.txt", "".join(f"{p}\n" for p in train))
    _write_text(out / "testlist.txt", "".join(f"{p}\n" for p in test))
    _write_text(out / "classInd.txt", "".join(f"{i + 1} {a}\n" for i, a in enumerate(actions)))
    return {
        "out_dir": str(out), "codec": _FOURCC[ext], "extension": ext, "num_videos": len(train) + len(test),
        "num_train": len(train), "num_test": len(test), "per_class": per_class, "num_frames": num_frames,
        "size": hw if not sizes else shapes, "fps": fps, "generation": generation, "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def _write_text(path: Path, text: str) -> None:
    """Atomic text write (temp + rename) so an interrupted run never leaves half a split list."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repflow_core.data.synthetic",
        description="Write the synthetic action-video dataset (videos + UCF101-style split files).",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--per-class", type=int, required=True, help="clips per action class")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip (default 48)")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels (default 128)")
    parser.add_argument("--width", type=int, default=0, help="frame width when it differs from --size (0 = square)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate stored in the files (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="test share per class (default 0.25)")
    parser.add_argument("--generation", type=int, default=DEFAULT_GENERATION, choices=GENERATIONS,
                        help=f"renderer generation (default {DEFAULT_GENERATION}; 1 = the packaged model's data)")
    parser.add_argument("--actions", nargs="+", default=list(ACTIONS), metavar="ACTION",
                        help=f"classes to render, in class-index order (default: the ten of the packaged model; "
                             f"any of {', '.join(ALL_ACTIONS)})")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    args = parser.parse_args(argv)
    unknown = [a for a in args.actions if a not in ALL_ACTIONS]
    if unknown:
        parser.error(f"--actions: unknown action(s) {', '.join(unknown)}; choose from {', '.join(ALL_ACTIONS)}")
    if len(set(args.actions)) != len(args.actions):
        parser.error(f"--actions: each action once, got {' '.join(args.actions)}")
    size = (args.size, args.width) if args.width else args.size
    info = write_dataset(args.out, args.per_class, num_frames=args.frames, size=size, fps=args.fps, seed=args.seed,
                         test_fraction=args.test_fraction, progress=not args.no_progress, generation=args.generation,
                         actions=tuple(args.actions))
    print(
        f"wrote {info['num_videos']} videos ({info['num_train']} train / {info['num_test']} test; "
        f"{info['per_class']} per class x {len(args.actions)} classes; {info['num_frames']} frames "
        f"{info['size'][1]}x{info['size'][0]} @ {info['fps']:g} fps; {info['codec']} {info['extension']}; "
        f"generation {info['generation']}) to {info['out_dir']} in {info['seconds']:.1f} s"
    )
    return 0
