"""Export a checkpoint for deployment: ``python -m repflow_core.export --checkpoint CKPT --format onnx|torchscript
--out FILE``.

The exported model takes what :meth:`Recognizer.predict` takes: preprocessed uint8 frames (B, T, H, W, 3)
(:meth:`Recognizer.preprocess` of each camera frame; T = the input spec's clip_len, H x W its size), and
returns class probabilities (B, K): the /255 scaling, the mean/std normalisation and the softmax are inside
the graph, so a deployment runtime needs no PyTorch code. The batch size is dynamic.

Metadata travels with the model (ONNX ``metadata_props``, TorchScript ``_extra_files``), each value a JSON
string: ``repflow.labels``, ``repflow.input_spec`` (incl. the crop policy where the checkpoint has one),
``repflow.model_config``, ``repflow.card`` (the model card), ``repflow.checkpoint_sha256``, ``repflow.format``.
The card is also written beside the exported file as ``FILE.card.json``. Files are written atomically.

The flow layer is exported through its eager form (Algorithm 1 as plain convolutions and element-wise ops):
the fused kernel is a custom op no exporter knows. ONNX uses the TorchScript-based exporter (``dynamo=False``,
opset 17): the dynamo exporter needs ``onnxscript``, which is not installed, and the legacy one gives the same
probabilities to ~1e-6 (test/test_export.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic_io import atomic_write, atomic_write_bytes, atomic_write_text
from .checkpoint import Checkpoint, CheckpointError, file_sha256, load_checkpoint
from .flow import RepresentationFlow
from .model_card import card_json

__all__ = ["EXPORT_FORMAT", "ExportError", "ExportedModel", "eager_flow", "export_checkpoint", "export_onnx_bytes",
           "export_torchscript", "main", "metadata", "onnx_session", "read_onnx_metadata", "verify_export"]

EXPORT_FORMAT = "repflow_ros.export/1"  # bump when the exported graph's contract changes (invalidates caches)
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "frames", "probs"
FORMATS = ("onnx", "torchscript")


class ExportError(RuntimeError):
    """Export or its check failed; the message says which step and why."""


class ExportedModel(torch.nn.Module):
    """uint8 frames (B, T, H, W, 3) -> probabilities (B, K): the Recognizer's normalisation, the model, softmax."""

    def __init__(self, model: torch.nn.Module, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Exactly Recognizer.predict_logits: (B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [0, 1], normalised.
        x = frames.permute(0, 4, 1, 2, 3).float() / 255.0
        x = (x - self.mean) / self.std
        return torch.softmax(self.model(x), dim=1)


@contextlib.contextmanager
def eager_flow(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Every RepresentationFlow in ``model`` runs its eager form (traceable) inside the block; restored after.

    The depthwise convolutions also get their channel count as a constant: the eager layer reads it from the
    input's shape, which a tracer records as a dynamic value, and the ONNX exporter refuses a convolution
    whose kernel shape is unknown ("ONNX export of convolution for kernel of unknown shape").
    """
    saved = []
    for layer in model.modules():
        if isinstance(layer, RepresentationFlow):
            saved.append((layer, layer.impl, layer.__dict__.get("_depthwise")))
            layer.impl = "eager"
            layer._depthwise = _static_depthwise(int(layer.channels))
    try:
        yield model
    finally:
        for layer, impl, depthwise in saved:
            layer.impl = impl
            if depthwise is None:
                layer.__dict__.pop("_depthwise", None)
            else:
                layer._depthwise = depthwise


def _static_depthwise(channels: int):
    def depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        # Same as RepresentationFlow._depthwise (every call there has C = layer.channels), shape made static.
        return F.conv2d(x, kernel.expand(channels, 1, kernel.shape[-2], kernel.shape[-1]), groups=channels)

    return depthwise


def _wrapped(ckpt: Checkpoint) -> ExportedModel:
    model = ckpt.build_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ExportedModel(model, ckpt.input_spec.mean, ckpt.input_spec.std).eval()


def _example(ckpt: Checkpoint, batch: int = 1, seed: int = 0) -> torch.Tensor:
    spec = ckpt.input_spec
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, spec.clip_len, spec.size[0], spec.size[1], 3), dtype=torch.uint8,
                         generator=g)


def metadata(ckpt: Checkpoint, checksum: str = "") -> dict[str, str]:
    """The exported model's metadata: JSON strings under ``repflow.*`` keys (see the module docstring)."""
    return {
        "repflow.format": EXPORT_FORMAT,
        "repflow.labels": json.dumps(list(ckpt.labels)),
        "repflow.input_spec": json.dumps(ckpt.input_spec.to_dict()),
        "repflow.model_config": json.dumps(ckpt.model_config.to_dict()),
        "repflow.card": json.dumps(ckpt.card or {}),
        "repflow.checkpoint_sha256": checksum,
        "repflow.input": f"{INPUT_NAME}: uint8 (B, T, H, W, 3) RGB, preprocessed (Recognizer.preprocess)",
        "repflow.output": f"{OUTPUT_NAME}: float32 (B, K) class probabilities (softmax), K = len(labels)",
    }


def export_onnx_bytes(ckpt: Checkpoint, checksum: str = "") -> bytes:
    """The checkpoint as an ONNX model (bytes), metadata included, checked by ``onnx.checker``."""
    import onnx

    wrapped = _wrapped(ckpt)
    buf = io.BytesIO()
    with eager_flow(wrapped), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        try:
            torch.onnx.export(wrapped, (_example(ckpt),), buf, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; name the step
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    proto = onnx.load_model_from_string(buf.getvalue())
    for key, value in metadata(ckpt, checksum).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.doc_string = "repflow_ros", (ckpt.card or {}).get("summary", "")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_torchscript(ckpt: Checkpoint, out: str | Path, checksum: str = "") -> Path:
    """Trace the checkpoint to TorchScript (``torch.jit.load``-able), metadata as ``_extra_files``."""
    wrapped = _wrapped(ckpt)
    with eager_flow(wrapped), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(wrapped, (_example(ckpt),), check_trace=False)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"TorchScript trace failed: {type(exc).__name__}: {exc}") from exc
    extra = {k: v.encode() for k, v in metadata(ckpt, checksum).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated but still what C++ loads
        return atomic_write(out, lambda f: torch.jit.save(traced, f, _extra_files=extra))


def read_onnx_metadata(source: str | Path | bytes) -> dict[str, str]:
    """``repflow.*`` metadata of an ONNX file (or bytes) without loading the weights into a session."""
    import onnx

    try:
        proto = (onnx.load_model_from_string(source) if isinstance(source, bytes)
                 else onnx.load(str(source), load_external_data=False))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have several types
        raise ExportError(f"not a readable ONNX model: {source if not isinstance(source, bytes) else '(bytes)'} "
                          f"({type(exc).__name__}: {exc})") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if "repflow.labels" not in meta or "repflow.input_spec" not in meta:
        raise ExportError(f"{source if not isinstance(source, bytes) else 'ONNX model'} has no repflow metadata "
                          "(labels, input spec): export it with python -m repflow_core.export")
    return meta


def onnx_session(model: str | Path | bytes, threads: int | None = None, providers: list[str] | None = None,
                 allow_spinning: bool = False):
    """An onnxruntime InferenceSession (CPU provider unless told; ``threads`` intra-op threads, default
    torch's thread count so both backends use the same cores).

    ``allow_spinning`` (onnxruntime's default is on): worker threads busy-wait for work between operators.
    Off here: on a robot the CPU is shared (camera driver, the node's intake thread, navigation), where
    spinning threads steal the cores the others need and, when oversubscribed, wait on descheduled peers;
    measured 1.3x faster per window with it off on the loaded 2-core machine (BENCHMARKS.md, "Backends").
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def verify_export(ckpt: Checkpoint, out: str | Path, fmt: str, batch: int = 2, tol: float = 1e-3) -> float:
    """Max |probability difference| between the exported file and the Recognizer (torch backend, fused flow
    where available) on a random batch; raises ExportError above ``tol``."""
    from .recognizer import Recognizer

    frames = _example(ckpt, batch=batch, seed=1)
    ref = Recognizer(ckpt, device="cpu").predict(frames.numpy())
    if fmt == "onnx":
        got = onnx_session(out).run([OUTPUT_NAME], {INPUT_NAME: frames.numpy()})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(out), map_location="cpu")(frames).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= tol:
        raise ExportError(f"the exported {fmt} model differs from the Recognizer by {diff:.2e} (> {tol:g})")
    return diff


def card_path(out: str | Path) -> Path:
    """Where the model card is written beside an exported file: ``FILE.card.json``."""
    out = Path(out)
    return out.with_name(out.name + ".card.json")


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx") -> Path:
    """Load and validate ``checkpoint``, export it as ``fmt`` to ``out`` (atomic) and write its card beside."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {FORMATS}")
    ckpt = load_checkpoint(checkpoint)
    checksum = file_sha256(checkpoint)
    if fmt == "onnx":
        atomic_write_bytes(out, export_onnx_bytes(ckpt, checksum))
    else:
        export_torchscript(ckpt, out, checksum)
    atomic_write_text(card_path(out), card_json(ckpt.card or {"name": Path(checkpoint).stem,
                                                                "summary": "(checkpoint without a model card)"}))
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repflow_core.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the .pt checkpoint to export")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt/.ts); the card goes to OUT.card.json")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the check of the exported file against the Recognizer (needs onnxruntime for ONNX)")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, args.format)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {card_path(out)}")
        if not args.no_verify:
            diff = verify_export(load_checkpoint(args.checkpoint), out, args.format)
            print(f"checked against the Recognizer: max |probability difference| {diff:.1e}")
    except (CheckpointError, ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
