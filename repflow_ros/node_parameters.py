"""The recognizer node's parameters: one table of specs, their validation and the ``--help`` text.

No ROS import: the launch-file and config tests, ``--help`` and the node all read this one table, so the node, the
YAML file (config/recognize.yaml) and the launch file cannot drift apart without a test failing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from repflow_core.data.image_codec import DEFAULT_MAX_ASPECT, DEFAULT_MAX_IMAGE_PIXELS

__all__ = [
    "NODE_NAME",
    "ParamSpec",
    "PARAMETER_SPECS",
    "PARAMETER_CHOICES",
    "RUNTIME_PARAMETERS",
    "SWAPPABLE_PARAMETERS",
    "validate_value",
    "coerce_value",
    "check_parameters",
    "format_parameter_help",
    "params_file_problem",
]


NODE_NAME = "repflow_recognizer"  #: the node's default name (launch file, diagnostics, --help)


class ParamSpec(NamedTuple):
    """One node parameter: ``range`` is ``(low, high)`` inclusive for numbers, else None. ``read_only`` parameters
    can only change while the node is unconfigured (restart it, or deactivate + cleanup, set, configure)."""

    default: Any
    type: type
    description: str
    read_only: bool
    range: tuple[float, float] | None


_RO = " Read-only once configured (restart the node, or cleanup, set it and configure again)."
_RT = " Can be changed at run time."

#: Every parameter of the node: name -> ParamSpec. The node declares exactly these (with descriptions and ranges);
#: config/recognize.yaml and launch/recognize.launch.py are checked against this table by the tests.
PARAMETER_SPECS: dict[str, ParamSpec] = {
    "model_path": ParamSpec(
        "", str, "Checkpoint file (.pt, or an exported .onnx with backend onnxruntime) to load; empty: the packaged "
        "default model. Can be changed at run time: the new model is loaded and validated in the background and "
        "swapped in between two windows; a model that fails keeps the old one running and the refusal says why "
        "(repflow_ros.model_swap).", True, None),
    "backend": ParamSpec(
        "torch", str, "Inference runtime: torch, or onnxruntime (exports the checkpoint once, cached; runs .onnx "
        "files; fp32 only). Measured not faster than torch on a 2-core CPU (BENCHMARKS.md)." + _RO, True, None),
    "device": ParamSpec(
        "auto", str, "Inference device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. Asking for CUDA "
        "where there is none fails configure (no silent CPU fallback)." + _RO, True, None),
    "precision": ParamSpec(
        "fp32", str, "Inference precision: fp32, fp16 (CUDA only) or bf16." + _RO, True, None),
    "clip_len": ParamSpec(
        0, int, "Frames per window fed to the model; 0: the checkpoint's clip_len (best accuracy)." + _RO,
        True, (0, 512)),
    "frame_stride": ParamSpec(
        0, int, "Use every N-th frame in a window; 0: the checkpoint's frame_stride." + _RO, True, (0, 64)),
    "hop": ParamSpec(
        4, int, "Run inference every `hop` new frames (on the newest complete window)." + _RT, False, (1, 512)),
    "smoothing": ParamSpec(
        3, int, "Average the class probabilities of the last K windows before choosing the label (1: no smoothing); "
        "the history restarts when the frame stream resets." + _RT, False, (1, 100)),
    "score_threshold": ParamSpec(
        0.0, float, "Minimum smoothed top-1 probability; below it action_label says 'unknown' (~/prediction has "
        "label 'unknown' and the real score). 0: always publish the top label." + _RT, False, (0.0, 1.0)),
    "top_k": ParamSpec(
        5, int, "Number of classes listed in `actions` and ~/prediction." + _RT, False, (1, 1000)),
    "image_transport": ParamSpec(
        "raw", str, "raw: subscribe sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage on "
        "`image/compressed` (the remapped `image` name + /compressed)." + _RO, True, None),
    "image_qos": ParamSpec(
        "reliable", str, "Image subscription QoS: reliable (depth 5; keeps the frames of a camera on the same host: "
        "best effort lost 80-90% of raw 640x480 / 1280x720 frames in BENCHMARKS.md; does not match a best-effort "
        "camera), sensor_data (best effort, depth 5; matches every camera; for remote cameras over lossy links) or "
        "system_default." + _RO, True, None),
    "max_frame_gap": ParamSpec(
        0.5, float, "Seconds between frame stamps beyond which the frame window restarts; 0 disables the check."
        + _RO, True, (0.0, 3600.0)),
    "max_image_pixels": ParamSpec(
        DEFAULT_MAX_IMAGE_PIXELS, int, "Largest frame accepted, in pixels (width x height as declared by the message "
        "or the JPEG/PNG header, checked before decoding); larger frames are dropped and counted (frames_dropped_"
        "too_large). The memory bound per frame: default 4096 x 2160 (DCI 4K)." + _RO, True, (64, 1 << 30)),
    "max_aspect": ParamSpec(
        DEFAULT_MAX_ASPECT, float, "Largest accepted max(width, height) / min(width, height); beyond it frames are "
        "dropped and counted (frames_dropped_bad_aspect) before decoding." + _RO, True, (1.0, 64.0)),
    "warmup": ParamSpec(
        2, int, "Warm-up inferences on blank frames at activation (0: none)." + _RO, True, (0, 100)),
    "autostart": ParamSpec(
        True, bool, "Configure and activate at start-up (so `ros2 run` just works); if that fails the process exits "
        "with status 1. false: wait in 'unconfigured' for a lifecycle manager. Read at start-up only.", True, None),
    "publish_debug_image": ParamSpec(
        True, bool, "Publish ~/debug_image (newest frame with label and score) while someone subscribes to it."
        + _RO, True, None),
}

#: Allowed values of the string parameters that are enumerations.
PARAMETER_CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("fp32", "fp16", "bf16"),
    "backend": ("torch", "onnxruntime"),
    "image_transport": ("raw", "compressed"),
    "image_qos": ("sensor_data", "reliable", "system_default"),
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: Parameters that may change while the node is configured / active.
RUNTIME_PARAMETERS: tuple[str, ...] = tuple(name for name, spec in PARAMETER_SPECS.items() if not spec.read_only)
#: Read at configure, but settable while configured too: setting it swaps the model (repflow_ros.model_swap).
SWAPPABLE_PARAMETERS: tuple[str, ...] = ("model_path",)


def coerce_value(name: str, value: Any) -> Any:
    """``-p score_threshold:=1`` arrives as an integer: accept it for a float parameter (bools excluded)."""
    if PARAMETER_SPECS[name].type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def validate_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is). Checks type, range and choices."""
    spec = PARAMETER_SPECS[name]
    if spec.type is float:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif spec.type is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok_type = isinstance(value, spec.type)
    if not ok_type:
        return f"expected a {spec.type.__name__}, got {type(value).__name__} {value!r}"
    if spec.range is not None:
        low, high = spec.range
        if not (low <= value <= high) or (spec.type is float and not math.isfinite(value)):
            return f"out of range [{low}, {high}]"
    if name in PARAMETER_CHOICES and value not in PARAMETER_CHOICES[name]:
        return f"must be one of {', '.join(PARAMETER_CHOICES[name])}"
    if name == "device" and not _DEVICE_RE.match(str(value).strip().lower()):
        return "must be auto, cpu, cuda or cuda:N"
    return None


def check_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value checked and normalised (floats from ints, strings stripped, device lower-case).
    Raises ValueError naming the first bad parameter and its value."""
    cfg: dict[str, Any] = {}
    for name in PARAMETER_SPECS:
        value = coerce_value(name, values[name])
        problem = validate_value(name, value)
        if problem:
            raise ValueError(f"parameter {name}={value!r} is invalid: {problem}")
        cfg[name] = value.strip() if isinstance(value, str) else value
    cfg["device"] = cfg["device"].lower()
    return cfg


def format_parameter_help(prog: str, node_name: str) -> str:
    """The ``--help`` text: usage, then every parameter with its type, default, range / choices and description."""
    lines = [
        f"usage: {prog} [--help] [--ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r FROM:=TO ...]]",
        "",
        f"Lifecycle node '{node_name}': camera images -> action labels (representation flow network).",
        "Topics: image (in; image/compressed with image_transport:=compressed), action_label, actions, ~/prediction,",
        "~/debug_image, ~/model_info (latched JSON), /diagnostics; services ~/enable (std_srvs/SetBool), ~/load_model",
        "(std_srvs/Trigger: load model_path again; `ros2 param set ... model_path NEW` swaps the model).",
        "",
        "parameters (run time: may change while the node runs; the others are read at configure):",
    ]
    for name, spec in PARAMETER_SPECS.items():
        extra = []
        if spec.range is not None:
            extra.append(f"range {spec.range[0]}..{spec.range[1]}")
        if name in PARAMETER_CHOICES:
            extra.append("one of " + ", ".join(PARAMETER_CHOICES[name]))
        extra.append("run time" if not spec.read_only else "run time: swaps the model" if name in
                     SWAPPABLE_PARAMETERS else "read-only")
        lines.append(f"  {name} ({spec.type.__name__}, default {spec.default!r}; {'; '.join(extra)})")
        lines.append(f"      {spec.description.replace(_RO, '').replace(_RT, '')}")
    lines += ["", "exit status: 0 after a normal shutdown (Ctrl-C, SIGTERM), 1 when autostart fails or a parameter",
              "file is missing, 2 on an unexpected error."]
    return "\n".join(lines)


def params_file_problem(argv: Sequence[str]) -> str | None:
    """Why a ``--params-file`` given in the ``--ros-args`` of ``argv`` cannot be used (None when all are fine).

    rcl only warns about a missing file and the node would then run on its built-in defaults, which hides a typo
    (``params_file:=/wrong/path.yaml``) behind a working-looking robot: the node fails instead."""
    import yaml

    in_ros_args = False
    tokens = list(argv)
    for i, token in enumerate(tokens):
        if token == "--ros-args":
            in_ros_args = True
        elif token == "--":
            in_ros_args = False
        elif in_ros_args and token == "--params-file":
            if i + 1 >= len(tokens):
                return "--params-file needs a file name"
            path = tokens[i + 1]
            if not os.path.isfile(path):
                return f"parameter file {path!r} (--params-file) does not exist"
            try:
                with open(path, encoding="utf-8") as handle:
                    data = yaml.safe_load(handle)
            except (OSError, yaml.YAMLError) as exc:
                return f"parameter file {path!r} (--params-file) cannot be read: {exc}"
            if not isinstance(data, dict):
                return f"parameter file {path!r} (--params-file) is not a mapping of node names to ros__parameters"
    return None
