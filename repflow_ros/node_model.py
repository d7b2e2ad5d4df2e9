"""The recognizer node's model set-up (no ROS import): checkpoint, device, precision, backend, clip length, and the
validation every model passes before the node uses it (at configure and at a run-time swap, see
:mod:`repflow_ros.model_swap`).

Kept apart from the node so the checks that turn a parameter into a clear "configure failed: parameter X=..." message
are one set of functions with one error type, and the node only wires the result. The steps:

* :func:`read_model` -- the checkpoint (``.pt``, fully validated by ``checkpoint.load_checkpoint``) or an exported
  ``.onnx`` model (its metadata, ``onnx_backend.checkpoint_from_onnx``; backend ``onnxruntime`` only);
* :func:`resolve_window` -- ``clip_len`` / ``frame_stride`` from the parameters, 0 = the model's own;
* :func:`validate_on_cpu` -- a CPU :class:`~repflow_core.recognizer.Recognizer` and its ``self_test`` (one inference
  on a fixed window: weights that load but produce NaN are refused here, not at the first camera frame);
* :func:`build_on_device` -- the recognizer on the node's device and precision, warmed up (the CPU one reused when it
  already is that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConfigureError", "ModelSetup", "prepare_model", "read_model", "resolve_window", "validate_on_cpu",
           "build_on_device"]


class ConfigureError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the value."""


@dataclass
class ModelSetup:
    cfg: dict  #: the checked parameters, clip_len and frame_stride resolved from the checkpoint when 0
    checkpoint: Any
    path: str  #: the checkpoint file actually loaded (the packaged default when model_path is empty)
    device: Any  #: torch.device
    device_description: str
    sha256: str = ""  #: of the model file's bytes (``~/model_info``, ``/diagnostics``)
    cpu_recognizer: Any = None  #: the self-tested CPU recognizer (activation reuses it when the device is the CPU)


def model_file(model_path: str) -> str:
    """``model_path``, or the packaged default model's path when it is empty."""
    from repflow_core.recognizer import default_checkpoint

    try:
        return model_path or str(default_checkpoint())
    except FileNotFoundError as exc:
        raise ConfigureError(f"parameter model_path='' (the packaged default model): {exc}") from exc


def read_model(path: str, backend: str) -> Any:
    """The validated checkpoint of ``path`` (a ``.onnx`` file: the weightless checkpoint of its metadata)."""
    from repflow_core.checkpoint import CheckpointError, load_checkpoint

    is_onnx = Path(path).suffix.lower() == ".onnx"
    if is_onnx and backend != "onnxruntime":
        raise ConfigureError(f"parameter model_path={path!r} is an ONNX model: it runs with backend onnxruntime, "
                             f"not backend={backend!r} (set backend:=onnxruntime)")
    try:
        if is_onnx:
            from repflow_core.onnx_backend import checkpoint_from_onnx

            return checkpoint_from_onnx(path)
        return load_checkpoint(path)
    except CheckpointError as exc:
        field = getattr(exc, "field", None)
        named = f" (field {field})" if field and field not in str(exc) else ""
        raise ConfigureError(f"parameter model_path={path!r}: {exc}{named}") from exc
    except Exception as exc:  # anything else while reading the file
        raise ConfigureError(f"parameter model_path={path!r}: cannot load the model: {exc}") from exc


def resolve_window(params: dict, checkpoint: Any) -> tuple[int, int]:
    """(clip_len, frame_stride): the parameters', or the checkpoint's where a parameter is 0."""
    spec = checkpoint.input_spec
    consumed = getattr(checkpoint.model_config, "frames_consumed", 0)
    min_frames = (consumed() if callable(consumed) else int(consumed)) + 1
    clip_len = int(params["clip_len"]) or int(spec.clip_len)
    frame_stride = int(params["frame_stride"]) or int(spec.frame_stride)
    if clip_len < min_frames:
        raise ConfigureError(f"parameter clip_len={clip_len} is too short: this model needs at least "
                             f"{min_frames} frames (0 uses the checkpoint's {spec.clip_len})")
    return clip_len, frame_stride


def _onnx_model(path: str) -> str | None:
    return path if Path(path).suffix.lower() == ".onnx" else None


def validate_on_cpu(checkpoint: Any, path: str, backend: str, log: Callable[[str], None]) -> Any:
    """A CPU fp32 recognizer of ``checkpoint`` that passed its self-test; raises :class:`ConfigureError` naming
    ``model_path`` and why (weights that do not fit the model, scores that are NaN...)."""
    from repflow_core.recognizer import Recognizer

    try:
        recognizer = Recognizer(checkpoint, device="cpu", precision="fp32", log=log, source=path, backend=backend,
                                onnx_model=_onnx_model(path))
        recognizer.self_test()
    except Exception as exc:
        raise ConfigureError(f"parameter model_path={path!r}: the model fails its self-test on the CPU "
                             f"(backend {backend}): {exc}") from exc
    return recognizer


def build_on_device(checkpoint: Any, path: str, device: Any, precision: str, backend: str, warmup: int,
                    log: Callable[[str], None], cpu_recognizer: Any = None) -> tuple[Any, float]:
    """(recognizer on ``device`` at ``precision``, warm-up seconds). ``cpu_recognizer`` (from
    :func:`validate_on_cpu`) is reused when it already runs there; otherwise a new one is built and, off the CPU,
    self-tested too (fp16 overflow shows only there). Raises whatever the Recognizer raises."""
    from repflow_core.recognizer import Recognizer

    reusable = cpu_recognizer is not None and (cpu_recognizer.model is not None
                                               or getattr(cpu_recognizer, "_onnx", None) is not None)  # not released
    recognizer = cpu_recognizer if reusable and str(device) == "cpu" and precision == "fp32" else None
    if recognizer is None:
        recognizer = Recognizer(checkpoint, device=str(device), precision=precision, log=log, source=path,
                                backend=backend, onnx_model=_onnx_model(path))
        if str(device) != "cpu":
            recognizer.self_test()
    warm_s = recognizer.warmup(warmup) if warmup > 0 else 0.0
    return recognizer, warm_s


def prepare_model(cfg: dict, log: Callable[[str], None]) -> ModelSetup:
    """Load and check the model on the CPU (self-test included) and resolve the device; raises
    :class:`ConfigureError`."""
    # Imported here, after the node's cheap parameter checks: torch takes seconds to import.
    from repflow_core.checkpoint import file_sha256
    from repflow_core.devices import DeviceError, check_precision, describe_device, resolve_device

    cfg = dict(cfg)
    backend = cfg.get("backend", "torch")
    if backend == "onnxruntime" and cfg["precision"] != "fp32":
        raise ConfigureError(f"parameter precision={cfg['precision']!r}: backend onnxruntime runs fp32 only")
    path = model_file(cfg["model_path"])
    checkpoint = read_model(path, backend)
    try:
        device = resolve_device(cfg["device"], log=log)
    except DeviceError as exc:
        raise ConfigureError(f"parameter device={cfg['device']!r}: {exc}") from exc
    try:
        check_precision(cfg["precision"], device)  # the one fp16-needs-CUDA rule
    except DeviceError as exc:
        raise ConfigureError(f"parameter precision={cfg['precision']!r}: {exc}") from exc
    cfg["clip_len"], cfg["frame_stride"] = resolve_window(cfg, checkpoint)
    cpu_recognizer = validate_on_cpu(checkpoint, path, backend, log)
    return ModelSetup(cfg, checkpoint, path, device, describe_device(device), file_sha256(path), cpu_recognizer)
