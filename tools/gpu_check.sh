#!/usr/bin/env bash
# One-shot GPU check (issue 12): CUDA correctness of the Triton flow kernel, bf16 / CUDA-graph Recognizer,
# 20 bf16 training steps, an in-run num_warps sweep at 56x56 (<= 60 s) and one table of eager-vs-Triton ratios.
# Run from the repository root on a CUDA machine with torch and triton installed (no ROS needed); about 2-3
# minutes (mostly Triton compiles). Results: stdout, and
# $OUT/gpu_check.txt when OUT is set. Extra arguments go to the module (--cpu-dry-run, --only a,b).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && ! "$PY" -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi
if ! "$PY" -c "import triton" 2>/dev/null; then
    echo "gpu_check: triton missing; trying pip install triton" >&2
    "$PY" -m pip install -q triton || echo "gpu_check: could not install triton (the Triton sections will report it)" >&2
fi
"$PY" -c "import cv2" 2>/dev/null || "$PY" -m pip install -q opencv-python-headless 2>/dev/null || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m repflow_core.gpu_check "$@"
