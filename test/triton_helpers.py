"""Shared set-up of the tests that run the Triton kernels on CPU tensors under Triton's interpreter.

Import this module before anything that may import triton: it sets ``TRITON_INTERPRET=1`` (unless the
environment says otherwise). :func:`require_triton_interpreter` skips the calling module, with the reason, where
triton is not installable, the interpreter is turned off, or the kernels do not build.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "1")


def require_triton_interpreter():
    """The ``repflow_core.kernels.triton_flow`` module, or a module-level skip saying why it cannot run here."""
    pytest.importorskip("triton", reason="triton is not installable here (wheels exist for x86_64 and aarch64 Linux)")
    from repflow_core.kernels import triton_flow

    if not triton_flow.interpreter_active():
        pytest.skip("TRITON_INTERPRET is set to something other than 1: the CPU checks need the interpreter",
                    allow_module_level=True)
    if triton_flow.kernels() is None:
        pytest.skip(f"triton kernels unavailable: {triton_flow.import_error()}", allow_module_level=True)
    return triton_flow


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative difference (a 0 reference counts as absolute)."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()
