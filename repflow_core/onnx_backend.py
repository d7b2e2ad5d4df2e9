"""The Recognizer's ``onnxruntime`` backend: the checkpoint exported to ONNX (repflow_core.export), run by an
onnxruntime InferenceSession.

- From a checkpoint: exported once and cached by the checkpoint file's SHA-256 (and the export contract
  version, torch and onnx versions) under :func:`cache_dir`, written atomically, so a second start (or a second
  node) loads the cached file in well under a second instead of re-exporting (~5-10 s). A checkpoint that is
  not a file (built in memory), or a cache folder that cannot be written, is exported to memory instead.
- From a ``.onnx`` file exported by ``python -m repflow_core.export``: its metadata gives labels, input spec,
  model config and card (:func:`checkpoint_from_onnx`).

The session uses the CPU provider with torch's intra-op thread count (both backends then use the same cores),
or CUDA's provider on a CUDA device where onnxruntime-gpu provides it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .atomic_io import atomic_write_bytes
from .checkpoint import Checkpoint, CheckpointError, file_sha256, validate_spec_fields
from .model_card import CardError, validate_card

LOG = logging.getLogger("repflow_core.onnx_backend")
__all__ = ["OnnxBackend", "cache_dir", "checkpoint_from_onnx", "cached_onnx"]


def cache_dir() -> Path:
    """``$REPFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/repflow_ros/onnx``, else ``~/.cache/repflow_ros/onnx``."""
    if os.environ.get("REPFLOW_CACHE_DIR"):
        return Path(os.environ["REPFLOW_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "repflow_ros" / "onnx"


def _cache_key(checksum: str) -> str:
    import onnx

    from .export import EXPORT_FORMAT

    # The exported graph depends on the checkpoint and on the code and tools that exported it.
    tag = f"{checksum}|{EXPORT_FORMAT}|torch {torch.__version__}|onnx {onnx.__version__}"
    return hashlib.sha256(tag.encode()).hexdigest()[:40]


def cached_onnx(ckpt: Checkpoint, checkpoint_path: str | os.PathLike | None,
                log: Callable[[str], None] = LOG.info) -> Path | bytes:
    """The ONNX model of ``ckpt``: the cached file when ``checkpoint_path`` is a file (exported and cached on
    first use), else bytes exported in memory."""
    from .export import export_onnx_bytes

    if checkpoint_path is None or not Path(checkpoint_path).is_file():
        return export_onnx_bytes(ckpt)
    checksum = file_sha256(checkpoint_path)
    path = cache_dir() / f"{_cache_key(checksum)}.onnx"
    if path.is_file():
        log(f"onnxruntime backend: using the cached export {path}")
        return path
    data = export_onnx_bytes(ckpt, checksum)
    try:
        atomic_write_bytes(path, data)
        log(f"onnxruntime backend: exported {checkpoint_path} to {path}")
    except OSError as exc:
        log(f"onnxruntime backend: cannot cache the export in {path.parent} ({exc}); keeping it in memory")
        return data
    return path


def checkpoint_from_onnx(path: str | os.PathLike) -> Checkpoint:
    """A weightless :class:`Checkpoint` (empty state_dict) describing an exported ``.onnx`` model, from its
    metadata, validated like a checkpoint's fields. Raises CheckpointError naming the file and the field."""
    from .export import ExportError, read_onnx_metadata

    source = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"ONNX model not found: {source}")
    try:
        meta = read_onnx_metadata(path)
    except ExportError as exc:
        raise CheckpointError(str(exc)) from exc
    fields = {}
    for key in ("labels", "input_spec", "model_config"):
        try:
            fields[key] = json.loads(meta[f"repflow.{key}"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{source}: metadata repflow.{key} is missing or not JSON ({exc})",
                                  field=key) from exc
    model_config, labels, input_spec = validate_spec_fields(fields["model_config"], fields["labels"],
                                                            fields["input_spec"], source)
    card = json.loads(meta.get("repflow.card") or "{}") or None
    if card is not None:
        try:
            validate_card(card, labels=labels)
        except CardError as exc:
            raise CheckpointError(f"{source}: metadata field {exc.field!r} {exc}", field=exc.field) from exc
    return Checkpoint(model_config=model_config, labels=labels, input_spec=input_spec, state_dict={},
                      training={}, card=card)


class OnnxBackend:
    """An InferenceSession for one model: ``run(frames uint8 (B, T, H, W, 3)) -> probabilities (B, K)``."""

    def __init__(self, model: str | os.PathLike | bytes, device: torch.device, threads: int | None = None) -> None:
        import onnxruntime as ort

        from .export import INPUT_NAME, OUTPUT_NAME, onnx_session

        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("backend onnxruntime on CUDA needs onnxruntime-gpu (CUDAExecutionProvider); "
                                   f"available: {ort.get_available_providers()}")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.model = model if isinstance(model, bytes) else Path(model)
        self.session = onnx_session(model if isinstance(model, bytes) else str(model), threads=threads,
                                    providers=providers)
        self.input_name, self.output_name = INPUT_NAME, OUTPUT_NAME
        self.threads = int(threads or torch.get_num_threads())

    def run(self, frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        return self.session.run([self.output_name], {self.input_name: frames})[0]
