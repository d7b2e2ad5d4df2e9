"""Flow quality on known motion: endpoint error (EPE) and time per frame pair (no ROS).

Pairs: a smooth random texture (sum of Gaussian-blurred noise octaves, [0, 255] grey) and the same texture
moved by a known affine motion (``translation``, ``rotation``, ``zoom``, or ``mixed`` = the issue's 1.5 / 0.5
px translation plus a 2-degree rotation). The second image is rendered by ``cv2.warpAffine`` on a larger
canvas and both are cropped, so there is no border artefact; the true flow is the forward displacement
``T(x) - x`` on the first image's grid (x along columns, y along rows: the layer's and OpenCV's convention).
EPE is the mean of ``|u - u_true|`` over pixels at least ``border`` (8) pixels from every edge.

Methods: the representation-flow layer on the images themselves with its fixed initial parameters
(theta 0.3, lambda 0.15, tau 0.25; every gradient kind, iteration count and pyramid depth asked for), UF-TSN's
flow estimator (:class:`repflow_core.uftsn.FlowEstimator`) after a bounded unsupervised training on texture
pairs whose seeds are disjoint from the evaluation pairs' (:func:`uftsn_method`; ``--uftsn-steps``, 0 = off),
OpenCV Farneback and DIS (medium preset), and OpenCV's TV-L1 where ``cv2.optflow`` exists (opencv-contrib, which
cannot share an environment with opencv-python; measure it from a separate venv: this module needs only
numpy and OpenCV unless a layer method is used, so ``python -m repflow_core.flow_quality --opencv-only`` runs
there with ``PYTHONPATH`` set to the checkout).
``python -m repflow_core.bench --suite flow-quality`` runs :func:`main`.

Times are medians over ``--repeats`` runs, the methods interleaved round robin on each pair, so a shared machine's
load hits them alike; with TV-L1 present each row also gets its time over TV-L1's. To time TV-L1 and the layer in
one process, run from the opencv-contrib venv with ``--torch-site <project venv's site-packages>`` (appended to
``sys.path`` after cv2 is imported). ``--pyramid WARPS:SOLVE:INTERP ...`` picks the coarse-to-fine styles
(``RepresentationFlow``'s ``pyramid_warps`` / ``pyramid_solve`` / ``pyramid_interp``) of multi-level variants.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

MOTIONS = ("translation", "rotation", "zoom", "mixed")
BORDER = 8


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A [0, 255] float32 texture with detail at several scales (no flat areas, no aliasing)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for sigma, weight in ((1.0, 0.5), (2.0, 1.0), (4.0, 1.0), (8.0, 0.7)):
        noise = rng.standard_normal((height, width)).astype(np.float32)
        layer = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        img += weight * layer / (layer.std() + 1e-8)
    img -= img.min()
    return (img * (255.0 / max(float(img.max()), 1e-6))).astype(np.float32)


def motion_matrix(kind: str, cx: float, cy: float, size: int) -> np.ndarray:
    """The forward affine map T (2x3, pixel coordinates) of a motion kind about the centre (cx, cy).

    Magnitudes scale with the image so that the mean true flow grows with resolution as the issue's did
    (2.0 px at 112x112, 3.3 px at 224x224 for ``mixed``)."""
    if kind not in MOTIONS:
        raise ValueError(f"unknown motion {kind!r}; choose one of {MOTIONS}")
    angle, scale, shift = 0.0, 1.0, (0.0, 0.0)
    if kind == "translation":
        shift = (1.5 * size / 112, 0.5 * size / 112)
    elif kind == "rotation":
        angle = 2.0
    elif kind == "zoom":
        scale = 1.03
    else:
        angle, shift = 2.0, (1.5, 0.5)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += shift
    return m


def known_motion_pair(kind: str, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(img1, img2, flow): two (size, size) float32 images and the true flow (2, size, size) from 1 to 2."""
    pad = max(16, size // 4)
    canvas = size + 2 * pad
    c = (canvas - 1) / 2.0
    return _pair_from_matrix(motion_matrix(kind, c, c, size), size, seed)


def random_motion_pair(size: int, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A texture pair under a random affine motion (shift up to 4 px, rotation up to 4 degrees, zoom up to 4 %):
    training pairs for the unsupervised estimator, so that it does not learn the evaluation's four motions."""
    pad = max(16, size // 4)
    c = (size + 2 * pad - 1) / 2.0
    m = cv2.getRotationMatrix2D((c, c), float(rng.uniform(-4, 4)), float(rng.uniform(0.96, 1.04)))
    m[:, 2] += rng.uniform(-4, 4, 2)
    return _pair_from_matrix(m, size, seed)


def _pair_from_matrix(m: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pad = max(16, size // 4)
    canvas = size + 2 * pad
    tex = smooth_texture(canvas, canvas, seed)
    # warpAffine with a forward map computes dst(T(x)) = src(x) (it inverts M internally).
    moved = cv2.warpAffine(tex, m, (canvas, canvas), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float64)
    fx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs
    fy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys
    crop = (slice(pad, pad + size), slice(pad, pad + size))
    flow = np.stack([fx[crop], fy[crop]]).astype(np.float32)
    return tex[crop].copy(), moved[crop].copy(), flow


def epe(flow: np.ndarray, truth: np.ndarray, border: int = BORDER) -> float:
    """Mean endpoint error of (2, H, W) flows over pixels ``border`` or more from every edge."""
    if flow.shape != truth.shape:
        raise ValueError(f"flow shape {flow.shape} != true flow shape {truth.shape}")
    d = (flow - truth)[:, border:flow.shape[1] - border, border:flow.shape[2] - border]
    return float(np.sqrt((d * d).sum(0)).mean())


# --- methods: (img1, img2) float32 [0, 255] -> (2, H, W) flow ---------------------------------------------
@dataclass(frozen=True)
class PyramidStyle:
    """How the layer's coarse-to-fine runs (``RepresentationFlow`` pyramid_warps / _solve / _interp).

    The default is the layer's default (one warp per level, residual solves, bilinear warping)."""

    warps: int = 1
    solve: str = "residual"
    interp: str = "bilinear"

    @classmethod
    def parse(cls, spec: str) -> PyramidStyle:
        """``"WARPS:SOLVE:INTERP"``, e.g. ``"2:total:bicubic"`` (the CLI's ``--pyramid``)."""
        parts = spec.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < 1:
            raise ValueError(f"pyramid style {spec!r}: expected WARPS:SOLVE:INTERP with WARPS >= 1, "
                             "e.g. 1:residual:bilinear or 2:total:bicubic")
        # the names are flow.PYRAMID_SOLVES / PYRAMID_INTERPS, spelled out so that --opencv-only needs no torch
        if parts[1] not in ("residual", "total") or parts[2] not in ("bilinear", "bicubic"):
            raise ValueError(f"pyramid style {spec!r}: SOLVE must be residual or total, INTERP bilinear or bicubic")
        return cls(int(parts[0]), parts[1], parts[2])

    def suffix(self) -> str:
        """The method-name suffix; empty for the default, so older table rows keep their names."""
        if self == PyramidStyle():
            return ""
        return f" x {self.warps} warps, {self.solve}, {self.interp}"


def layer_method(gradient: str, iterations: int, pyramid_levels: int = 1, impl: str = "auto",
                 pyramid: PyramidStyle | None = None) -> Callable:
    import torch

    from .flow import RepresentationFlow

    style = pyramid or PyramidStyle()
    layer = RepresentationFlow(1, iterations=iterations, gradient=gradient, pyramid_levels=pyramid_levels,
                               impl=impl, pyramid_warps=style.warps, pyramid_solve=style.solve,
                               pyramid_interp=style.interp).eval()

    def run(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.stack([img1, img2]))[None, None]
        with torch.no_grad():
            out = layer(x)
        return out[0, :, 0].numpy()

    return run


UFTSN_TRAIN_SEED = 1_000_000  # training textures use seeds from here on; the evaluation pairs use seed 0


def _uftsn_input(img: np.ndarray):
    """A [0, 255] grey image -> the (1, 3, H, W) normalised frame UF-TSN sees (the dataset mean / std)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(img, np.float32)) / 255.0
    return ((x - 0.45) / 0.23).expand(1, 3, *x.shape).contiguous()


def train_uftsn_estimator(steps: int, seconds: float = 120.0, size: int = 64, batch: int = 4, seed: int = 0,
                          log: Callable[[str], None] = print):
    """UF-TSN's flow estimator trained *without flow labels* (the poster's stage 1): Adam on the multi-scale
    photometric L1 + census + edge-aware smoothness loss (:func:`repflow_core.uftsn.pyramid_loss`, the poster's
    ``L = (l1 L_diff + l2 L_census + l3 L_smooth) / M``) of random-motion texture pairs, for ``steps`` steps or
    ``seconds`` of wall clock, whichever ends first. Returns the estimator in eval mode."""
    import torch

    from .uftsn import FlowEstimator, poster_weights, pyramid_loss

    if steps < 1 or seconds <= 0:
        raise ValueError(f"UF-TSN training needs steps >= 1 and seconds > 0, got {steps} and {seconds}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = FlowEstimator()
    weights = poster_weights()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start, done, loss = time.perf_counter(), 0, float("nan")
    while done < steps and time.perf_counter() - start < seconds:
        pairs = [random_motion_pair(size, rng, UFTSN_TRAIN_SEED + done * batch + k) for k in range(batch)]
        i1 = torch.cat([_uftsn_input(a) for a, _, _ in pairs])
        i2 = torch.cat([_uftsn_input(b) for _, b, _ in pairs])
        total = sum(pyramid_loss(i1, i2, net(i1, i2), weights).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        done, loss = done + 1, float(total.detach())
        if done % 50 == 0:
            log(f"UF-TSN estimator: step {done}, loss {loss:.4f}, {time.perf_counter() - start:.0f} s")
    log(f"UF-TSN estimator: trained {done} steps ({time.perf_counter() - start:.0f} s, final loss {loss:.4f}), "
        "no flow labels")
    return net.eval()


def uftsn_method(estimator) -> Callable:
    """The trained estimator as a method: its finest flow is at 1/2 resolution, so it is upsampled x2 in size
    and in value (pixels of the full image) for the comparison."""
    import torch
    import torch.nn.functional as F

    def run(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            flow = estimator(_uftsn_input(img1), _uftsn_input(img2))[0]
            full = 2.0 * F.interpolate(flow, size=img1.shape, mode="bilinear", align_corners=False)
        return full[0].numpy()

    return run


def farneback(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
    f = cv2.calcOpticalFlowFarneback(img1.astype(np.uint8), img2.astype(np.uint8), None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return f.transpose(2, 0, 1)


_DIS = None


def dis_medium(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _DIS.calc(img1.astype(np.uint8), img2.astype(np.uint8), None).transpose(2, 0, 1)


def tvl1_method() -> Callable | None:
    """OpenCV's TV-L1 (the paper's baseline) if opencv-contrib is installed, else None."""
    optflow = getattr(cv2, "optflow", None)
    if optflow is None or not hasattr(optflow, "DualTVL1OpticalFlow_create"):
        return None
    tvl1 = optflow.DualTVL1OpticalFlow_create()

    def run(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        return tvl1.calc(img1.astype(np.uint8), img2.astype(np.uint8), None).transpose(2, 0, 1)

    return run


@dataclass
class Row:
    method: str
    size: int
    motion: str
    epe: float
    ms_per_pair: float
    mean_true_flow: float
    time_vs_tvl1: float | None = None  # ms_per_pair / TV-L1's, timed interleaved in the same run (None: no TV-L1)


def measure(name: str, method: Callable, size: int, motion: str, repeats: int = 3, seed: int = 0) -> Row:
    """EPE of ``method`` on one known-motion pair and its median time per pair over ``repeats`` runs."""
    img1, img2, truth = known_motion_pair(motion, size, seed)
    flow = method(img1, img2)  # warm-up (kernel load, thread pools) and the measured result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method(img1, img2)
        times.append(time.perf_counter() - start)
    mean_flow = float(np.sqrt((truth[:, BORDER:-BORDER, BORDER:-BORDER] ** 2).sum(0)).mean())
    ms = 1000 * float(np.median(times)) if times else float("nan")
    return Row(name, size, motion, epe(flow, truth), ms, mean_flow)


def layer_variants(gradients: list[str], iterations: list[int], levels: list[int],
                   pyramids: list[PyramidStyle] | None = None) -> dict[str, Callable]:
    variants = {}
    for gradient in gradients:
        for lv in levels:
            for style in (pyramids or [PyramidStyle()]) if lv > 1 else [PyramidStyle()]:
                for it in iterations:
                    suffix = f", {lv} levels{style.suffix()}" if lv > 1 else ""
                    variants[f"layer {gradient}, {it} it.{suffix}"] = layer_method(gradient, it, lv, pyramid=style)
    return variants


def measure_interleaved(methods: dict[str, Callable], size: int, motion: str, repeats: int = 3,
                        seed: int = 0) -> list[Row]:
    """:func:`measure` for several methods on one pair, their timed runs interleaved (round robin), so that
    a shared, noisy machine slows them alike; with OpenCV TV-L1 among them each row gets its time ratio."""
    img1, img2, truth = known_motion_pair(motion, size, seed)
    flows = {name: method(img1, img2) for name, method in methods.items()}  # warm-up and the measured result
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            method(img1, img2)
            times[name].append(time.perf_counter() - start)
    mean_flow = float(np.sqrt((truth[:, BORDER:-BORDER, BORDER:-BORDER] ** 2).sum(0)).mean())
    ms = {name: 1000 * float(np.median(t)) if t else float("nan") for name, t in times.items()}
    tvl1 = ms.get("OpenCV TV-L1")
    return [Row(name, size, motion, epe(flows[name], truth), ms[name], mean_flow,
                ms[name] / tvl1 if tvl1 else None) for name in methods]


def run_suite(sizes: list[int], motions: list[str], gradients: list[str], iterations: list[int],
              levels: list[int], repeats: int = 3, log: Callable[[str], None] = print,
              extra: dict[str, Callable] | None = None, pyramids: list[PyramidStyle] | None = None) -> list[Row]:
    """Every method on every (size, motion) pair, timed interleaved; ``extra``: more methods by name (e.g. the
    UF-TSN entry); ``pyramids``: the coarse-to-fine styles of the layer variants with more than one level."""
    methods: dict[str, Callable] = {"OpenCV Farneback": farneback, "OpenCV DIS (medium)": dis_medium}
    tvl1 = tvl1_method()
    if tvl1 is not None:
        methods["OpenCV TV-L1"] = tvl1
    else:
        log("OpenCV TV-L1: cv2.optflow missing (opencv-contrib not installed here): not measured")
    methods.update(layer_variants(gradients, iterations, levels, pyramids))
    methods.update(extra or {})
    rows = []
    for size in sizes:
        for motion in motions:
            for row in measure_interleaved(methods, size, motion, repeats):
                rows.append(row)
                ratio = f"  {row.time_vs_tvl1:6.3f} x TV-L1" if row.time_vs_tvl1 is not None else ""
                log(f"{size:4d} {motion:12s} {row.method:36s} EPE {row.epe:7.4f} px  {row.ms_per_pair:8.2f} ms{ratio}")
    return rows


def markdown_table(rows: list[Row], motion: str = "mixed") -> str:
    """One table per size: method, EPE, ms/pair for ``motion``."""
    out = []
    for size in sorted({r.size for r in rows}):
        sel = [r for r in rows if r.size == size and r.motion == motion]
        if not sel:
            continue
        ratio = any(r.time_vs_tvl1 is not None for r in sel)
        head = f"| {size}x{size}, {motion} (mean true flow {sel[0].mean_true_flow:.1f} px) | EPE (px) | ms/pair |"
        out.append(head + (" time / TV-L1 |" if ratio else ""))
        out.append("|---|---:|---:|" + ("---:|" if ratio else ""))
        out += [f"| {r.method} | {r.epe:.3f} | {r.ms_per_pair:.1f} |"
                + (f" {r.time_vs_tvl1:.3f} |" if ratio else "") for r in sel]
        out.append("")
    return "\n".join(out)


def flow_picture(size: int, motion: str, methods: dict[str, Callable], path: str | Path) -> Path:
    """A colour-coded picture of the true flow and each method's flow on one pair (Middlebury colours)."""
    from .viz import flow_to_color, write_png

    img1, img2, truth = known_motion_pair(motion, size)
    flows = {"true flow": truth} | {name: m(img1, img2) for name, m in methods.items()}
    max_flow = float(np.sqrt((truth ** 2).sum(0)).max())
    tiles = []
    for name, f in flows.items():
        tile = flow_to_color(f[0], f[1], max_flow=max_flow)
        tile = cv2.resize(tile, (size * 2, size * 2), interpolation=cv2.INTER_NEAREST) if size < 160 else tile
        label = np.full((22, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name[:40], (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([label, tile]))
    cols = min(4, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (rows * cols - len(tiles))
    grid = np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(rows)])
    return write_png(grid, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repflow_core.bench --suite flow-quality",
                                     description="EPE and ms/pair on known-motion pairs.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--motions", nargs="+", default=list(MOTIONS), choices=MOTIONS)
    parser.add_argument("--gradients", nargs="+", default=["sobel", "central", "sobel_fd"])
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 10, 20, 50])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--pyramid", nargs="+", default=["1:residual:bilinear"],
                        help="coarse-to-fine styles WARPS:SOLVE:INTERP of the multi-level variants, e.g. "
                             "1:residual:bilinear (the layer's default) 2:total:bicubic (TV-L1-like)")
    parser.add_argument("--torch-site", default=None,
                        help="a site-packages folder appended to sys.path after OpenCV is imported: lets a venv "
                             "with opencv-contrib (TV-L1) run the layer too, so both are timed in one process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uftsn-steps", type=int, default=2000,
                        help="unsupervised training steps of the UF-TSN estimator entry (0 = leave it out)")
    parser.add_argument("--uftsn-seconds", type=float, default=120.0, help="wall-clock bound of that training")
    parser.add_argument("--quick", action="store_true",
                        help="112x112, mixed motion, 10 iterations, UF-TSN trained <= 20 s")
    parser.add_argument("--opencv-only", action="store_true",
                        help="only the OpenCV methods (runs without torch, e.g. in an opencv-contrib venv for TV-L1)")
    parser.add_argument("--out", default="bench_results/flow_quality.json")
    parser.add_argument("--picture", default=None, help="also write a flow picture (PNG) of the mixed pair")
    args = parser.parse_args(argv)
    try:
        pyramids = [PyramidStyle.parse(spec) for spec in args.pyramid]
    except ValueError as err:
        parser.error(str(err))
    if args.torch_site:
        import sys

        if not Path(args.torch_site).is_dir():
            parser.error(f"--torch-site {args.torch_site!r} is not a folder")
        sys.path.append(args.torch_site)  # appended: this environment's cv2 (contrib) stays the one imported
    if args.quick:
        args.sizes, args.motions, args.iterations, args.repeats = [112], ["mixed"], [10], 1
        args.uftsn_seconds = min(args.uftsn_seconds, 20.0)
    if args.opencv_only:
        args.gradients, args.uftsn_steps = [], 0
    if args.uftsn_steps < 0:
        parser.error(f"--uftsn-steps must be >= 0, got {args.uftsn_steps}")
    extra = {}
    if args.uftsn_steps:
        estimator = train_uftsn_estimator(args.uftsn_steps, args.uftsn_seconds)
        extra["UF-TSN estimator (unsupervised)"] = uftsn_method(estimator)
    rows = run_suite(args.sizes, args.motions, args.gradients, args.iterations, args.levels, args.repeats,
                     extra=extra, pyramids=pyramids)
    print(markdown_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    tmp.replace(out)
    if args.picture:
        pics = {"OpenCV DIS (medium)": dis_medium, "OpenCV Farneback": farneback}
        pics.update(layer_variants(args.gradients, [max(args.iterations)], sorted(set(args.levels)), pyramids))
        pics.update(extra)
        print(flow_picture(args.sizes[0], "mixed", pics, args.picture))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
