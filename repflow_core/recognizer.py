"""Recognizer: checkpoint -> device/precision -> preprocessed frames -> class probabilities.

This is the whole inference API the ROS node (and any other host) needs::

    rec = Recognizer.from_checkpoint(default_checkpoint(), device="auto")
    window = [rec.preprocess(frame_rgb) for frame_rgb in camera_frames[-rec.clip_len:]]
    probs = rec.predict(window)                # numpy (num_classes,), sums to 1
    rec.top_k(probs, 3)                        # [("wave", 0.91), ...]

Inference paths (all within the stated tolerance of the plain fp32 model, pinned by tests):

- the flow layer runs its fused kernel where one exists (CPU: native C++, see ``repflow_core.flow_fused``;
  ``REPFLOW_FLOW_IMPL=eager`` turns it off): probabilities within 1e-5 of the eager layer;
- 2-D convolution weights are stored channels_last (measured 1.13-1.20x faster per window on the CPU for
  the default model, 40 interleaved rounds; and what tensor cores want on CUDA): within 1e-5;
- ``precision="bf16"`` (CPU or CUDA) / ``"fp16"`` (CUDA): autocast, the flow iterations themselves stay
  in float32 on the CPU kernel; probabilities within ~5e-2 of fp32;
- ``compile=True``: ``torch.compile`` of the whole model for the fixed window shape (1, 3, clip_len, H, W),
  done at :meth:`Recognizer.warmup` (or the first prediction), with inductor freezing on the CPU (weights
  folded as constants: batch norm into the convolutions, prepacked conv weights); other window shapes
  run the eager model. If compiling fails, one warning and the eager model. Within 1e-4 of fp32 eager.
- CUDA graphs are not used yet (``mode="reduce-overhead"`` would be the switch): untested without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint

LOG = logging.getLogger("repflow_core.recognizer")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_CHECKPOINT_NAME = "synthetic_default.pt"


class RecognizerError(RuntimeError):
    """A device, precision or input that the recognizer cannot honour; the message says which."""


def default_checkpoint() -> Path:
    """Installed path of the packaged default model (trained on the synthetic actions).

    It ships inside the Python package (``repflow_core/weights/``) so that it is found the same way in
    a venv, a pip install and a colcon install; colcon also installs a copy under share/repflow_ros/models.
    """
    path = Path(__file__).resolve().parent / "weights" / DEFAULT_CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"the packaged default model is missing: {path}. Train one with "
            "`python -m repflow_core.train --config config/train_synthetic.yaml` and pass its best.pt"
        )
    return path


def resolve_device(device: str = "auto", log: Callable[[str], None] | None = None) -> torch.device:
    """'auto' -> CUDA when present, else CPU (and says so). Asking for CUDA without one is an error."""
    log = log or LOG.info
    spec = (device or "auto").strip().lower()
    if spec == "auto":
        chosen = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        log(f"device 'auto' -> {describe_device(chosen)}")
        return chosen
    try:
        chosen = torch.device(spec)
    except RuntimeError as exc:
        raise RecognizerError(f"invalid device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RecognizerError(
                f"device {device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); use device 'cpu' or 'auto' explicitly"
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise RecognizerError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif chosen.type != "cpu":
        raise RecognizerError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return chosen


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


class Recognizer:
    """A loaded model on a device, with the preprocessing its checkpoint asks for."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str = "auto",
        precision: str = "fp32",
        log: Callable[[str], None] | None = None,
        source: str = "",
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise RecognizerError(f"invalid precision {precision!r}: choose one of {sorted(PRECISIONS)}")
        self.checkpoint = checkpoint
        self.source = source
        self.device = resolve_device(device, log)
        self.device_description = describe_device(self.device)
        self.precision = precision
        if precision == "fp16" and self.device.type == "cpu":
            raise RecognizerError("precision 'fp16' needs CUDA; on the CPU use 'fp32' or 'bf16'")
        self.labels: list[str] = list(checkpoint.labels)
        spec = checkpoint.input_spec
        self.clip_len = spec.clip_len
        self.frame_stride = spec.frame_stride
        self.input_size: tuple[int, int] = (int(spec.size[0]), int(spec.size[1]))
        self.resize_short = spec.resize_short
        self.model = checkpoint.build_model().to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.channels_last = _to_channels_last(self.model)
        self._mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1, 1)
        self._std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1, 1)
        self._log = log or LOG.info
        self.compile = bool(compile)
        self.compiled_shape: tuple[int, ...] | None = None  # the window shape the compiled model serves
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._compile_failed = False

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "fp32",
        log: Callable[[str], None] | None = None,
        compile: bool = False,
    ) -> "Recognizer":
        """Load ``path`` (default: the packaged model). Raises CheckpointError or RecognizerError."""
        path = Path(path) if path else default_checkpoint()
        return cls(load_checkpoint(path), device=device, precision=precision, log=log, source=str(path),
                   compile=compile)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, frame_rgb: np.ndarray) -> np.ndarray:
        """One RGB uint8 frame (H, W, 3) of any size -> (h, w, 3) uint8 at the model's input size.

        Short side resized to ``resize_short`` then centre-cropped, as the test-time transform of
        training does. Kept as uint8 so a window of frames is cheap to buffer and to copy to the device.
        """
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            shape = getattr(frame_rgb, "shape", None)
            raise RecognizerError(f"preprocess expects an RGB uint8 array (H, W, 3), got shape {shape}")
        if frame_rgb.dtype != np.uint8:
            raise RecognizerError(f"preprocess expects uint8 pixels, got {frame_rgb.dtype}")
        h, w = frame_rgb.shape[:2]
        out_h, out_w = self.input_size
        scale = self.resize_short / min(h, w)
        new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
        if (new_h, new_w) != (h, w):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            frame_rgb = cv2.resize(frame_rgb, (new_w, new_h), interpolation=interp)
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        return np.ascontiguousarray(frame_rgb[top : top + out_h, left : left + out_w])

    def _as_batch(self, frames: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(frames, torch.Tensor):
            clip = frames
        else:
            if not isinstance(frames, np.ndarray):
                frames = np.stack([np.asarray(f) for f in frames])
            clip = torch.from_numpy(np.ascontiguousarray(frames))
        if clip.dim() == 4:
            clip = clip.unsqueeze(0)
        if clip.dim() != 5 or clip.shape[-1] != 3:
            raise RecognizerError(f"predict expects frames (T, H, W, 3) or (B, T, H, W, 3), got {tuple(clip.shape)}")
        if tuple(clip.shape[2:4]) != self.input_size:
            raise RecognizerError(
                f"frames are {tuple(clip.shape[2:4])}, the model wants {self.input_size}: call preprocess() first"
            )
        if clip.shape[1] < self.model.min_frames:
            raise RecognizerError(f"need at least {self.model.min_frames} frames, got {clip.shape[1]}")
        if clip.dtype != torch.uint8:
            raise RecognizerError(f"predict expects uint8 frames, got {clip.dtype}")
        return clip

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    @torch.inference_mode()
    def predict_logits(self, frames) -> torch.Tensor:
        clip = self._as_batch(frames).to(self.device, non_blocking=True)
        # (B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float, normalised on the device.
        x = clip.permute(0, 4, 1, 2, 3).float().div_(255.0)
        x = (x - self._mean) / self._std
        with self._autocast():
            logits = self._run_model(x)
        return logits.float()

    def _run_model(self, x: torch.Tensor) -> torch.Tensor:
        if self.compile and self._compiled is None and not self._compile_failed:
            self._compile_for(x)
        if self._compiled is not None and tuple(x.shape) == self.compiled_shape:
            return self._compiled(x)
        return self.model(x)

    def _compile_for(self, x: torch.Tensor) -> None:
        """torch.compile the model for x's shape (the fixed window); on any failure warn once, stay eager."""
        start = time.perf_counter()
        try:
            from . import flow_fused

            flow_fused.native_library()  # build/load the flow kernel before tracing, not inside it
            compiled = torch.compile(self.model, dynamic=False)
            if self.device.type == "cpu":
                import torch._inductor.config as inductor_config

                # Freezing folds the (frozen) weights into the graph: BN into convs, prepacked mkldnn weights.
                with inductor_config.patch(freezing=True):
                    compiled(x)
            else:
                compiled(x)
        except Exception as exc:  # noqa: BLE001 - any compiler/toolchain failure must leave inference working
            self._compile_failed = True
            LOG.warning("torch.compile of the model failed, using the eager model: %s: %s",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return
        self._compiled, self.compiled_shape = compiled, tuple(x.shape)
        self._log(f"compiled the model for windows of shape {self.compiled_shape} in "
                  f"{time.perf_counter() - start:.1f} s")

    def predict(self, frames) -> np.ndarray:
        """Preprocessed frames (T, h, w, 3) uint8 -> class probabilities (num_classes,);
        a batch (B, T, h, w, 3) gives (B, num_classes)."""
        batched = (isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 5)
        probs = torch.softmax(self.predict_logits(frames), dim=1).cpu().numpy()
        return probs if batched else probs[0]

    def top_k(self, probs: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        order = np.argsort(-probs)[: max(1, min(k, len(self.labels)))]
        return [(self.labels[i], float(probs[i])) for i in order]

    def warmup(self, iterations: int = 2) -> float:
        """Run the model on blank windows (allocations, cuDNN autotune, and with ``compile=True`` the
        compilation for the window shape); returns the seconds taken."""
        start = time.perf_counter()
        blank = np.zeros((self.clip_len,) + self.input_size + (3,), np.uint8)
        for _ in range(max(1, iterations)):
            self.predict(blank)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def release(self) -> None:
        """Drop the model and free cached GPU memory (lifecycle deactivate)."""
        self.model = None  # type: ignore[assignment]
        self._compiled = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _to_channels_last(model: torch.nn.Module) -> bool:
    """Store the 2-D convolution weights channels_last (mkldnn and cuDNN then pick NHWC kernels, and
    the activations follow); 3-D (video) backbones are left as they are (not measured). Returns whether
    anything changed."""
    changed = False
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
            changed = True
    return changed


__all__ = [
    "Recognizer",
    "RecognizerError",
    "CheckpointError",
    "default_checkpoint",
    "resolve_device",
    "describe_device",
]
