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
- ``cuda_graphs=True`` (CUDA only; ignored with a log line elsewhere): the first window shape is captured
  into a CUDA graph (:func:`capture_graph`, after warm-up on a side stream) and replayed for every window of
  that shape; other shapes run normally. Same kernels, so outputs equal the uncaptured model's (float
  tolerance 1e-5; checked on a GPU by ``tools/gpu_check.sh``). If capture fails: one warning, no graphs.
- ``backend="onnxruntime"``: the checkpoint exported to ONNX (``repflow_core.export``: normalisation and
  softmax in the graph, the flow layer in its eager form), cached by the checkpoint's SHA-256
  (``repflow_core.onnx_backend``), run by an onnxruntime session (CPU provider, torch's thread count); a
  ``.onnx`` file from the exporter is accepted as the model path too. fp32 only; ``compile`` and
  ``cuda_graphs`` do not apply. Probabilities within 1e-3 of the torch backend (test/test_onnx_backend.py);
  speed against the torch backend: BENCHMARKS.md ("Backends").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import devices as _devices
from .checkpoint import MAX_CHECKPOINT_BYTES, Checkpoint, CheckpointError, load_checkpoint
from .data.transforms import preprocess_frame

LOG = logging.getLogger("repflow_core.recognizer")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BACKENDS = ("torch", "onnxruntime")
DEFAULT_CHECKPOINT_NAME = "synthetic_default.pt"


class RecognizerError(RuntimeError):
    """A device, precision or input that the recognizer cannot honour; the message says which."""


class FrameShapeError(RecognizerError):
    """A frame whose shape preprocess refuses (not (H, W, 3) uint8, a side below MIN_FRAME_SIDE, an aspect
    ratio beyond MAX_FRAME_ASPECT); a host counts these as dropped frames of that cause."""


class NonFiniteOutput(RecognizerError):
    """The model produced NaN or infinite scores; nothing may be published for that window."""


#: Frames refused by preprocess: a side shorter than this (no usable picture; 0-sized frames included) ...
MIN_FRAME_SIDE = 8
#: ... or a long side more than this many times the short side. The widest common cameras are 32:9 (3.6);
#: the bound keeps the resized frame (short side -> resize_short) within MAX_FRAME_ASPECT x resize_short^2
#: pixels, so a 1 x 30000 frame cannot become 128 x 3,840,000.
MAX_FRAME_ASPECT = 8.0


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
    """'auto' -> CUDA when present, else CPU (and says so). Asking for CUDA without one is an error.
    The rule lives in :mod:`repflow_core.devices`; here its errors become RecognizerErrors."""
    try:
        return _devices.resolve_device(device, log=log or LOG.info)
    except _devices.DeviceError as exc:
        raise RecognizerError(str(exc)) from exc


describe_device = _devices.describe_device


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
        cuda_graphs: bool = False,
        backend: str = "torch",
        onnx_model: str | os.PathLike | bytes | None = None,
    ) -> None:
        """``onnx_model`` (backend onnxruntime): an exported model to run instead of exporting ``checkpoint``
        (then ``checkpoint`` may be weightless, see onnx_backend.checkpoint_from_onnx)."""
        if backend not in BACKENDS:
            raise RecognizerError(f"invalid backend {backend!r}: choose one of {list(BACKENDS)}")
        if backend == "onnxruntime" and precision != "fp32":
            raise RecognizerError(f"backend onnxruntime runs fp32 only, got precision {precision!r}")
        if precision not in PRECISIONS:
            raise RecognizerError(f"invalid precision {precision!r}: choose one of {sorted(PRECISIONS)}")
        self.checkpoint = checkpoint
        self.source = source
        self.device = resolve_device(device, log)
        self.device_description = describe_device(self.device)
        self.precision = precision
        try:
            _devices.check_precision(precision, self.device)  # the one fp16-needs-CUDA rule
        except _devices.DeviceError as exc:
            raise RecognizerError(str(exc)) from exc
        self.labels: list[str] = list(checkpoint.labels)
        spec = checkpoint.input_spec
        self.clip_len = spec.clip_len
        self.frame_stride = spec.frame_stride
        self.input_size: tuple[int, int] = (int(spec.size[0]), int(spec.size[1]))
        self.resize_short = spec.resize_short
        self.crop = getattr(spec, "crop", "center")  # geometry policy; checkpoints without one: center
        self._mean_rgb = tuple(spec.mean)
        self.backend = backend
        self._min_frames = checkpoint.model_config.frames_consumed + 1
        self._onnx = None
        if backend == "onnxruntime":
            self.model = None  # type: ignore[assignment]
            self.channels_last = False
            self._onnx = _open_onnx(checkpoint, onnx_model, source, self.device, log or LOG.info)
            compile = cuda_graphs = False  # torch-only paths; onnxruntime optimises its own graph
        else:
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
        # cuda_graphs: the window shape is captured once into a CUDA graph and replayed (no per-kernel launch
        # cost); only on CUDA (elsewhere logged once and ignored). See capture_graph.
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            self._log("cuda_graphs needs a CUDA device; ignored on " + self.device_description)
        self.graph_shape: tuple[int, ...] | None = None
        self._graph: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._graph_failed = False
        self._upscale_warned = False
        #: Where one-time warnings go (upscaled frames); a host may point it at its own logger.
        self.on_warning: Callable[[str], None] = LOG.warning

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "fp32",
        log: Callable[[str], None] | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
        max_checkpoint_bytes: int = MAX_CHECKPOINT_BYTES,
        backend: str = "torch",
    ) -> Recognizer:
        """Load ``path`` (default: the packaged model), validated in full (checkpoint.validate_checkpoint; a
        file over ``max_checkpoint_bytes`` is refused before it is read). Raises CheckpointError or
        RecognizerError. ``backend``: ``torch`` or ``onnxruntime`` (exported once, cached; a ``.onnx`` file
        from ``python -m repflow_core.export`` is accepted as ``path`` with this backend)."""
        path = Path(path) if path else default_checkpoint()
        if path.suffix.lower() == ".onnx":
            if backend != "onnxruntime":
                raise RecognizerError(f"{path} is an ONNX model: it runs with backend='onnxruntime', not {backend!r}")
            from .onnx_backend import checkpoint_from_onnx

            _check_size(path, max_checkpoint_bytes)
            return cls(checkpoint_from_onnx(path), device=device, precision=precision, log=log, source=str(path),
                       backend=backend, onnx_model=path)
        return cls(load_checkpoint(path, max_checkpoint_bytes), device=device, precision=precision, log=log,
                   source=str(path), compile=compile, cuda_graphs=cuda_graphs, backend=backend)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, frame_rgb: np.ndarray) -> np.ndarray:
        """One RGB uint8 frame (H, W, 3) of any size -> (h, w, 3) uint8 at the model's input size.

        By the checkpoint's geometry policy ``input_spec.crop`` (:func:`repflow_core.data.transforms.
        preprocess_frame`, the same function as the evaluation transform of training): ``center`` = short side
        resized to ``resize_short`` then centre-cropped; ``full`` = the whole frame resized with its aspect
        kept and letterboxed with the normalisation mean. Kept as uint8 so a window of frames is cheap to
        buffer and to copy to the device. Memory is bounded whatever the frame: shapes beyond
        :meth:`check_frame_shape`'s bounds raise :class:`FrameShapeError` before anything is allocated; frames
        smaller than the input are upscaled, with a warning once (``on_warning``).
        """
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            shape = getattr(frame_rgb, "shape", None)
            raise FrameShapeError(f"preprocess expects an RGB uint8 array (H, W, 3), got shape {shape}")
        if frame_rgb.dtype != np.uint8:
            raise FrameShapeError(f"preprocess expects uint8 pixels, got {frame_rgb.dtype}")
        h, w = frame_rgb.shape[:2]
        out_h, out_w = self.input_size
        self.check_frame_shape(h, w)
        if self.crop == "full":
            scale = min(out_h / h, out_w / w)
        else:
            scale = self.resize_short / min(h, w)
        if scale > 1 and not self._upscale_warned:
            self._upscale_warned = True
            self.on_warning(f"frames of {h}x{w} are smaller than the model's input ({self.resize_short} px on the "
                            f"short side, then {out_h}x{out_w}): upscaling them, detail is lost (said once)")
        # Bounded by the shape check: at most MAX_FRAME_ASPECT * resize_short^2 pixels (or the input size).
        return preprocess_frame(frame_rgb, self.input_size, self.resize_short, self.crop, self._mean_rgb)

    @staticmethod
    def check_frame_shape(height: int, width: int) -> None:
        """Refuse (FrameShapeError) a frame size preprocess will not take: a side below MIN_FRAME_SIDE
        (0-sized included) or an aspect ratio beyond MAX_FRAME_ASPECT. A host may call it before decoding."""
        if min(height, width) < MIN_FRAME_SIDE:
            raise FrameShapeError(f"frame of {height}x{width} refused: each side must be at least {MIN_FRAME_SIDE} px")
        if max(height, width) > MAX_FRAME_ASPECT * min(height, width):
            raise FrameShapeError(f"frame of {height}x{width} refused: aspect ratio "
                                  f"{max(height, width) / min(height, width):.1f}:1 is beyond {MAX_FRAME_ASPECT:g}:1")

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
        if clip.shape[1] < self._min_frames:
            raise RecognizerError(f"need at least {self._min_frames} frames, got {clip.shape[1]}")
        if clip.dtype != torch.uint8:
            raise RecognizerError(f"predict expects uint8 frames, got {clip.dtype}")
        return clip

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        # Autocast's cast-weight cache must be off when a CUDA graph is captured (the graph would keep
        # pointers into a cache that is freed when the autocast region exits).
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision],
                              cache_enabled=not self.cuda_graphs)

    @torch.inference_mode()
    def predict_logits(self, frames) -> torch.Tensor:
        """Class scores (B, K) before the softmax (backend onnxruntime: log-probabilities, whose softmax is
        the same)."""
        if self._onnx is not None:
            return torch.from_numpy(self._run_onnx(frames)).clamp_min(1e-30).log()
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
        model = self.model
        if self._compiled is not None and tuple(x.shape) == self.compiled_shape:
            model = self._compiled
        if self.cuda_graphs and self._graph is None and not self._graph_failed:
            try:
                self._graph, self.graph_shape = capture_graph(model, x), tuple(x.shape)
                self._log(f"captured a CUDA graph for windows of shape {self.graph_shape}")
            except Exception as exc:  # noqa: BLE001 - capture failures must leave inference working
                self._graph_failed = True
                LOG.warning("CUDA graph capture failed, running without: %s: %s", type(exc).__name__, exc)
        if self._graph is not None and tuple(x.shape) == self.graph_shape:
            return self._graph(x)
        return model(x)

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
        a batch (B, T, h, w, 3) gives (B, num_classes). Raises NonFiniteOutput when any score is NaN or
        infinite (a broken model or input): such scores must never be published."""
        batched = (isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 5)
        if self._onnx is not None:
            probs = self._run_onnx(frames)  # softmax is in the exported graph
        else:
            probs = torch.softmax(self.predict_logits(frames), dim=1).cpu().numpy()
        if not np.isfinite(probs).all():
            rows = np.flatnonzero(~np.isfinite(probs).all(axis=1)).tolist()
            raise NonFiniteOutput(f"the model's scores are not finite (NaN or inf) for window(s) {rows[:8]} of "
                                  f"{len(probs)}; model {self.source or '(in memory)'}")
        return probs if batched else probs[0]

    def _run_onnx(self, frames) -> np.ndarray:
        clip = self._as_batch(frames)
        return self._onnx.run(clip.numpy())

    def self_test(self) -> float:
        """One inference on a fixed pseudo-random test window; raises NonFiniteOutput when the scores are not
        finite (e.g. weights that overflow) or do not sum to 1. A host calls it before accepting a model
        (the node at configure). Returns the seconds taken."""
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        window = rng.integers(0, 256, (self.clip_len,) + self.input_size + (3,), dtype=np.uint8)
        probs = self.predict(window)
        if abs(float(probs.sum()) - 1.0) > 1e-3:
            raise NonFiniteOutput(f"self-test: the model's probabilities sum to {float(probs.sum()):.6f}, not 1; "
                                  f"model {self.source or '(in memory)'}")
        return time.perf_counter() - start

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
        self._onnx = None
        self._compiled = None
        self._graph = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _ReplayOnCPU:
    """Stand-in for ``torch.cuda.CUDAGraph`` (tests on the CPU): ``replay`` re-runs the captured call on the
    same static buffers, so the copy-in / replay / copy-out logic of :func:`capture_graph` is exercised."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], static_in: torch.Tensor) -> None:
        self.fn, self.static_in = fn, static_in
        self.static_out = fn(static_in)

    def replay(self) -> None:
        self.static_out.copy_(self.fn(self.static_in))


def capture_graph(fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 2,
                  stand_in: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Capture ``fn`` on a static copy of ``example`` into a CUDA graph; returns ``replay(x)``: x (same shape,
    dtype and device) is copied into the static input, the graph replayed, and a clone of the static output
    returned (the next replay overwrites it). Warm-up runs on a side stream first (cuDNN autotune, Triton
    compilation, allocator pools), as CUDA graph capture requires. ``stand_in``: use :class:`_ReplayOnCPU`
    instead (any device; tests)."""
    static_in = example.detach().clone()
    if stand_in:
        graph = _ReplayOnCPU(fn, static_in)
        static_out = graph.static_out
    else:
        stream = torch.cuda.Stream(example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream):
            for _ in range(max(1, warmup)):
                fn(static_in)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fn(static_in)

    def replay(x: torch.Tensor) -> torch.Tensor:
        if x.shape != static_in.shape or x.dtype != static_in.dtype or x.device != static_in.device:
            raise RecognizerError(f"CUDA graph captured for {tuple(static_in.shape)} {static_in.dtype} on "
                                  f"{static_in.device}, got {tuple(x.shape)} {x.dtype} on {x.device}")
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    return replay


def _open_onnx(checkpoint: Checkpoint, onnx_model, source: str, device: torch.device, log: Callable[[str], None]):
    """The onnxruntime session of the recognizer: ``onnx_model`` when given, else ``checkpoint`` exported
    (cached by the checksum of ``source`` when it is a checkpoint file)."""
    try:
        from . import onnx_backend

        model = onnx_model if onnx_model is not None else onnx_backend.cached_onnx(checkpoint, source or None, log)
        return onnx_backend.OnnxBackend(model, device)
    except ImportError as exc:
        raise RecognizerError(f"backend onnxruntime needs onnx and onnxruntime (pip install '.[export]'): "
                              f"{exc}") from exc
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - export and session errors come in many types; name the backend
        raise RecognizerError(f"backend onnxruntime could not load the model: {type(exc).__name__}: {exc}") from exc


def _check_size(path: Path, max_bytes: int) -> None:
    if not path.is_file():
        raise CheckpointError(f"model not found: {path}")
    if path.stat().st_size > max_bytes:
        raise CheckpointError(f"{path}: file size {path.stat().st_size} bytes exceeds the limit of {max_bytes} "
                              "bytes (max_bytes); not reading it", field="file size")


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
    "FrameShapeError",
    "NonFiniteOutput",
    "CheckpointError",
    "default_checkpoint",
    "resolve_device",
    "describe_device",
]
