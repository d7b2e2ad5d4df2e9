"""The recorder node's parameters: specs, validation, ``--help`` text and ``~/record`` request parsing (no ROS import,
so ``--help`` and the tests read them without rclpy)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .clip_writer import LabelError, check_clip_label
from .node_parameters import PARAMETER_CHOICES, ParamSpec

__all__ = ["NODE_NAME", "RECORDER_PARAMETERS", "MAX_SECONDS", "validate_recorder_value", "check_recorder_parameters",
           "format_recorder_help", "parse_record_request"]

NODE_NAME = "repflow_recorder"
MAX_SECONDS = 600.0  #: longest clip; a clip is streamed to disk, so this bounds file size, not memory

_RO = " Read-only once configured."
_RT = " Can be changed at run time."

RECORDER_PARAMETERS: dict[str, ParamSpec] = {
    "dataset_dir": ParamSpec(
        "recorded_clips", str, "Dataset folder (created if missing): clips go to <dataset_dir>/<label>/*.avi, the "
        "'folders' layout that repflow_core.train reads, plus <dataset_dir>/index.csv." + _RO, True, None),
    "label": ParamSpec(
        "", str, "Class of the clips ~/start records; must be a safe folder name (no '/', no leading dot, not "
        "train/test/val); a bad one is refused with the reason." + _RT, False, None),
    "seconds": ParamSpec(
        3.0, float, "Length of a clip by frame stamps (frames in [first, first + seconds))." + _RT, False,
        (0.05, MAX_SECONDS)),
    "fps": ParamSpec(
        0.0, float, "Frame rate written into the clip files; 0: the camera's rate measured from frame stamps."
        + _RT, False, (0.0, 1000.0)),
    "max_bytes": ParamSpec(
        0, int, "Limit for everything under dataset_dir; a clip that would pass it is discarded and new clips are "
        "refused. 0: no limit." + _RT, False, (0, 2 ** 62)),
    "min_free_bytes": ParamSpec(
        500 * 1024 * 1024, int, "Refuse to start (and discard a clip in progress) when the disk holding "
        "dataset_dir has less free space than this." + _RT, False, (0, 2 ** 62)),
    "image_transport": ParamSpec(
        "raw", str, "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage on "
        "`image/compressed`." + _RO, True, None),
    "image_qos": ParamSpec(
        "sensor_data", str, "Image subscription QoS: sensor_data (best effort), reliable or system_default." + _RO,
        True, None),
    "autostart": ParamSpec(
        True, bool, "Configure and activate at start-up; if that fails the process exits with status 1. "
        "Read at start-up only.", True, None),
}


def validate_recorder_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for recorder parameter ``name`` (None when it is)."""
    spec = RECORDER_PARAMETERS[name]
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.type is float and not numeric or spec.type is int and not (numeric and isinstance(value, int)) \
            or spec.type in (str, bool) and not isinstance(value, spec.type):
        return f"expected a {spec.type.__name__}, got {type(value).__name__} {value!r}"
    if spec.range is not None and (not math.isfinite(value) or not spec.range[0] <= value <= spec.range[1]):
        return f"out of range [{spec.range[0]}, {spec.range[1]}]"
    if name in PARAMETER_CHOICES and value not in PARAMETER_CHOICES[name]:
        return f"must be one of {', '.join(PARAMETER_CHOICES[name])}"
    if name == "label" and value != "":
        try:
            check_clip_label(value)
        except LabelError as exc:
            return str(exc)
    if name == "dataset_dir" and not value.strip():
        return "must name a folder"
    return None


def check_recorder_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter checked (floats from ints); ValueError naming the first bad one."""
    cfg = {}
    for name, spec in RECORDER_PARAMETERS.items():
        value = values[name]
        if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = validate_recorder_value(name, value)
        if problem:
            raise ValueError(f"parameter {name}={value!r} is invalid: {problem}")
        cfg[name] = value
    return cfg


def parse_record_request(text: str) -> tuple[str, float]:
    """``{"label": "wave", "seconds": 3}`` or ``wave 3`` (seconds optional: 3) -> (label, seconds); ValueError with
    the reason otherwise (a hostile label included)."""
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "label" not in data:
            raise ValueError('expected {"label": ..., "seconds": ...}')
        label, seconds = data["label"], data.get("seconds", RECORDER_PARAMETERS["seconds"].default)
    else:
        parts = text.split()
        if not parts or len(parts) > 2:
            raise ValueError("expected 'LABEL [SECONDS]' or a JSON object")
        label = parts[0]
        seconds = parts[1] if len(parts) == 2 else RECORDER_PARAMETERS["seconds"].default
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"seconds {seconds!r} is not a number") from None
    problem = validate_recorder_value("seconds", seconds)
    if problem:
        raise ValueError(f"seconds={seconds!r}: {problem}")
    try:
        return check_clip_label(label), seconds
    except LabelError as exc:
        raise ValueError(str(exc)) from None


def format_recorder_help(prog: str) -> str:
    lines = [
        f"usage: {prog} [--help] [--ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r FROM:=TO ...]]",
        "",
        f"Lifecycle node '{NODE_NAME}': records labelled clips from `image` into a dataset folder.",
        "Services ~/start and ~/stop (std_srvs/Trigger: ~/start records one clip with the current `label` and",
        "`seconds`), topic ~/record (std_msgs/String: {\"label\": \"wave\", \"seconds\": 3}), events on ~/events",
        "(std_msgs/String JSON), /diagnostics. Console helper: python -m repflow_ros.record_clips --help",
        "",
        "parameters:",
    ]
    for name, spec in RECORDER_PARAMETERS.items():
        extra = [f"range {spec.range[0]}..{spec.range[1]}"] if spec.range else []
        if name in PARAMETER_CHOICES:
            extra.append("one of " + ", ".join(PARAMETER_CHOICES[name]))
        extra.append("read-only" if spec.read_only else "run time")
        lines.append(f"  {name} ({spec.type.__name__}, default {spec.default!r}; {'; '.join(extra)})")
        lines.append(f"      {spec.description.replace(_RO, '').replace(_RT, '')}")
    lines += ["", "exit status: 0 after a normal shutdown (Ctrl-C, SIGTERM), 1 when autostart fails or a parameter",
              "file is missing, 2 on an unexpected error."]
    return "\n".join(lines)
