"""Device and precision parsing, in one place (training, evaluation, the Recognizer and the ROS node).

Device specs: ``auto`` (CUDA when present, else the CPU, and says which), ``cpu``, ``cuda``, ``cuda:N``.
Asking for CUDA on a machine without it is an error rather than a silent fall-back to the CPU: a robot
that was configured for its GPU should not quietly run 20x slower.

Precisions: ``fp32`` (no autocast), ``bf16`` (autocast on the CPU or CUDA) and ``fp16`` (autocast on
CUDA only: CPU kernels for float16 are slow or missing, and fp16 training needs loss scaling, which is a
CUDA feature here).

API (stable; errors are :class:`DeviceError`, a ``ValueError`` whose message names the value)::

    check_device_spec("cuda:1")            -> "cuda:1"      syntax only, no CUDA needed (config checks)
    resolve_device("auto", log=print)      -> torch.device  the device to use on this machine
    describe_device(device)                -> "cpu (2 threads)" / "cuda:0 (NVIDIA H200)"
    check_precision("bf16", device)        -> torch.bfloat16 (None for fp32)
    autocast(device, "bf16")               -> a context manager (nullcontext for fp32)
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

__all__ = [
    "DEVICE_CHOICES",
    "PRECISIONS",
    "DeviceError",
    "autocast",
    "check_device_spec",
    "check_precision",
    "describe_device",
    "resolve_device",
]

LOG = logging.getLogger("repflow_core.devices")

#: What a user may write (plus ``cuda:N``).
DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: Precision name -> autocast dtype (None = plain fp32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device or precision that cannot be honoured here; the message names the value and the choices."""


def check_device_spec(spec: str) -> str:
    """Normalise (strip, lower-case) and check the syntax of a device spec without touching CUDA.

    Used where the spec is only stored (configs, parameters) and the machine that will run it may differ.
    """
    text = str(spec if spec is not None else "auto").strip().lower() or "auto"
    if not _DEVICE_RE.match(text):
        raise DeviceError(f"invalid device {spec!r}: use auto, cpu, cuda or cuda:N")
    return text


def resolve_device(spec: str = "auto", log: Callable[[str], None] | None = None,
                   local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for ``spec`` on this machine.

    ``auto`` picks CUDA when available, else the CPU, and logs the choice through ``log`` (default: this
    module's logger). ``local_rank`` (distributed training, one process per GPU) replaces the CUDA index.
    Raises :class:`DeviceError` when CUDA is asked for but absent or the index does not exist.
    """
    text = check_device_spec(spec)
    if text == "auto":
        chosen = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        if chosen.type == "cuda" and local_rank is not None:
            chosen = torch.device("cuda", local_rank)
        (log or LOG.info)(f"device 'auto' -> {describe_device(chosen)}")
        return chosen
    chosen = torch.device(text)
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {spec!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); use device 'cpu' or 'auto' explicitly")
        if local_rank is not None:
            chosen = torch.device("cuda", local_rank)
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return chosen


def describe_device(device: torch.device) -> str:
    """A human line for logs and diagnostics: ``cuda:0 (NVIDIA ...)`` or ``cpu (N threads)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None for fp32).

    The one rule: ``fp16`` needs CUDA; ``bf16`` runs on the CPU and CUDA; anything else is an error
    listing the choices.
    """
    name = str(precision).strip().lower()
    if name not in PRECISIONS:
        raise DeviceError(f"invalid precision {precision!r}: choose one of {sorted(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise DeviceError(f"precision 'fp16' needs CUDA but the device is {device}; on the CPU use 'fp32' or 'bf16'")
    return PRECISIONS[name]


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device`` (checked by :func:`check_precision`), or a no-op for fp32."""
    dtype = check_precision(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
