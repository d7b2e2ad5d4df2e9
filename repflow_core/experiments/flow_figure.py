"""Picture of what the flow layer computes: ``python -m repflow_core.experiments.flow_figure --out flow.png``.

Renders a held-out synthetic clip, runs the packaged (or given) model up to its flow block, and draws the
input frames next to the flow fields (colour = direction, brightness = magnitude; Middlebury wheel) of the
reduced feature channels for one frame pair, plus TV-L1 flow of the grey image for reference.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
import torch

from ..data.synthetic import render_clip
from ..flow import FlowBlock, FlowConvFlow, RepresentationFlow, normalise_to_image_range
from ..recognizer import Recognizer
from ..viz import flow_grid_image, flow_to_color, write_png


def flow_of_features(rec: Recognizer, frames: np.ndarray) -> torch.Tensor:
    """(T, h, w, 3) preprocessed frames -> flow (2C', T-1, H', W') of the model's first flow layer."""
    model = rec.model
    block = model.flow.flow1 if isinstance(model.flow, FlowConvFlow) else model.flow
    if not isinstance(block, FlowBlock):
        raise SystemExit("this model has no flow layer")
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(255).unsqueeze(0).to(rec.device)
    x = (clip - rec._mean) / rec._std
    b = x.shape[0]
    with torch.inference_mode():
        feats = x if model.is_video else model._to_frames(x)
        for name in model.backbone.stage_names:
            feats = model.backbone.forward_stage(name, feats)
            if name == model.config.flow_after:
                break
        feats = feats if model.is_video else model._to_clip(feats, b)
        return block.flow(normalise_to_image_range(block.reduce(feats)))[0].cpu()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="default: the packaged model")
    parser.add_argument("--action", default="walk_right")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--pair", type=int, default=8, help="frame pair t, t+1 to show")
    parser.add_argument("--out", default="flow.png")
    args = parser.parse_args(argv)

    rec = Recognizer.from_checkpoint(args.checkpoint, device="cpu")
    clip = render_clip(args.action, 40, size=(128, 128), seed=args.seed, generation=1)
    frames = np.stack([rec.preprocess(f) for f in clip[: rec.clip_len]])
    flow = flow_of_features(rec, frames)  # (2C', T-1, H', W')
    pair = flow[:, args.pair]
    grid = flow_grid_image(pair, cell=96, max_channels=16)

    rows = np.ascontiguousarray(frames[args.pair : args.pair + 2].reshape(-1, frames.shape[2], 3))
    grey = torch.from_numpy(cv2.cvtColor(rows, cv2.COLOR_RGB2GRAY).astype(np.float32)).view(1, 1, 2, *frames.shape[1:3])
    pixel_flow = RepresentationFlow(1, iterations=50, gradient="central")(grey)[0, :, 0].detach()
    pixel = flow_to_color(pixel_flow[0].numpy(), pixel_flow[1].numpy())
    size = grid.shape[0]
    left = np.concatenate([
        cv2.resize(frames[args.pair], (size // 2, size // 2)),
        cv2.resize(pixel, (size // 2, size // 2), interpolation=cv2.INTER_NEAREST),
    ], axis=0)
    if left.shape[0] != grid.shape[0]:
        left = cv2.resize(left, (left.shape[1], grid.shape[0]))
    canvas = np.concatenate([left, np.full((grid.shape[0], 8, 3), 255, np.uint8), grid], axis=1)
    canvas = np.concatenate([np.full((28, canvas.shape[1], 3), 255, np.uint8), canvas], axis=0)
    cv2.putText(canvas, f"{args.action}: frame {args.pair}, TV-L1 of the image (below it), and the learned flow of "
                f"{pair.shape[0] // 2} feature channels (right)", (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    write_png(canvas, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
