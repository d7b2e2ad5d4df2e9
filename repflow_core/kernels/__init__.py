"""Fused implementations of the representation-flow iterations (Algorithm 1) behind one registry.

:class:`repflow_core.flow.RepresentationFlow` is the readable, eager reference of Algorithm 1. This package
holds the fast paths it dispatches to, registered by device type in :data:`REGISTRY`:

- ``cpu``: ``cpu-native``, a native C++ kernel (:mod:`.cpu_native`, source ``tvl1_flow.cpp`` shipped as
  package data, built once per machine and cached by :mod:`.native_build`).
- ``cuda``: ``triton`` where :mod:`.triton_flow` exists and Triton is installed (it registers itself);
  otherwise CUDA uses the eager layer.

Every kernel takes the same packed parameters (:func:`pack_parameters`: coef, 3x3 image kernels, flow
kernels, divergence kernels, plus the ``sobel`` flag) and must match the eager layer to 1e-4 relative.

Selection policy (``RepresentationFlow(impl=...)``, see :func:`repflow_core.flow.default_impl` and
:func:`select`):

- ``"eager"``: always the reference. ``"fused"``: the device's fused kernel; if it is unavailable (no
  compiler, unsupported device or dtype) a warning is logged once and the eager layer runs: never a crash.
- ``"auto"`` (default): the fused kernel whenever it supports the call (CPU float32, or bfloat16/float16
  computed in float32 and cast back, standard kernel shapes) and is available; else eager, silently
  (float64, as the reference tests use, is always eager). It is cheap to make automatic because nothing is
  compiled per process, per shape or per iteration count.
- a kernel's name (``"triton"``): that kernel or a clear error; never a silent substitute.
- ``REPFLOW_FLOW_IMPL=eager|fused|auto|triton`` replaces the ``auto`` default for the whole process (layers
  built with an explicit ``impl`` keep it); :func:`repflow_core.flow.set_default_impl` does the same in-process.

Kernel modules import what they need from :mod:`.registry` (never from this package's ``__init__``, and
nothing from ``repflow_core.flow`` at import time), and this package registers them: no import cycle.
Build the CPU kernel ahead of time with ``python -m repflow_core.kernels build``.
"""

from __future__ import annotations

import importlib
import logging

from .cpu_native import CPU_NATIVE, tvl1_flow, tvl1_flow_backward
from .native_build import BuildError, build, compiler, native_error, native_library
from .registry import (
    LOG,
    NAMED_IMPLS,
    REGISTRY,
    SOBEL_FLOW_GRADIENT,
    STANDARD_SHAPES,
    FusedKernel,
    available_impls,
    find,
    make_fused,
    pack_parameters,
    register,
    select,
    standard_shape_problem,
    uses_sobel_flow_gradient,
    warn_once,
)

__all__ = [
    "LOG", "NAMED_IMPLS", "REGISTRY", "SOBEL_FLOW_GRADIENT", "STANDARD_SHAPES", "FusedKernel", "available_impls",
    "find", "make_fused",
    "pack_parameters", "register", "select", "standard_shape_problem", "uses_sobel_flow_gradient", "warn_once",
    "CPU_NATIVE", "tvl1_flow", "tvl1_flow_backward", "BuildError", "build", "compiler", "native_error",
    "native_library",
]

register(CPU_NATIVE)

# Optional kernels register themselves when imported (``register(kernel)`` in their module); a missing
# module or a missing dependency (Triton) only means that kernel is not offered.
for _name in ("triton_flow",):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ImportError as _exc:
        logging.getLogger(__name__).debug("optional flow kernel %s not loaded: %s", _name, _exc)
