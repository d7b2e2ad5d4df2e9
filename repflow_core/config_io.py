"""Generic configuration machinery: any (nested) dataclass from YAML / a mapping, dotted command-line overrides.

:func:`from_dict` builds a dataclass from a plain mapping, converting every value to the type its field declares;
:func:`set_field` / :func:`apply_overrides` change single fields by dotted key (``model.width=0.5``); unknown keys
and values that do not fit a field's type raise :class:`ConfigError` naming the dotted key. Nothing here knows the
training schema (that is repflow_core.config, which re-exports every name below).

Split out of config.py (issue 8: modules under ~500 lines, functions under ~80).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "SHORTCUTS",
    "add_override_arguments",
    "apply_overrides",
    "collect_overrides",
    "dump_yaml",
    "from_dict",
    "load_yaml",
    "set_field",
    "to_dict",
]


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied; the message names the key."""



# ------------------------------------------------------------------------------ generic conversion

_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_NONE = {"none", "null", "~", ""}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or the command line) to the annotated type ``tp``: dispatch on the kind of type
    (Any, union, Literal, dataclass section, sequence, mapping, scalar), in that order."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, args, key)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        return _convert_section(value, tp, key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _convert_sequence(value, tp, key)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    for kind, convert in _SCALARS:
        if tp is kind:
            return convert(value, key)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    return value


def _convert_union(value: Any, args: tuple, key: str) -> Any:
    """``X | None`` and other unions: None (or a "none"-like string) when allowed, else the first member that fits."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args):
        if type(None) in args:
            return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg, key)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if errors else f"{key}: cannot convert {value!r}")


def _convert_section(value: Any, tp: type, key: str) -> Any:
    """A nested dataclass section, from a mapping (or already built)."""
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping for section {_describe(tp)}, got {value!r}")
    return from_dict(tp, value, prefix=key)


def _convert_sequence(value: Any, tp: Any, key: str) -> Any:
    """``list[X]``, ``tuple[X, ...]`` and fixed-length ``tuple[X, Y]``; a string is parsed as YAML first."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, str):
        value = _parse_scalar(value)
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(out) if origin is tuple or tp is tuple else out


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool):  # bool is an int subclass; `epochs: true` is a mistake, not 1
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a number, got {value!r}")


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return ""
    raise ConfigError(f"{key}: expected a string, got {value!r}")


# Checked by identity (``tp is kind``), in this order, after the structured kinds above.
_SCALARS = ((bool, _to_bool), (int, _to_int), (float, _to_float), (str, _to_str))


def _build(cls: type, kwargs: dict, prefix: str) -> Any:
    """Construct and validate; the dataclasses' own checks (ValueError) become ConfigErrors."""
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        where = f"{prefix}: " if prefix else ""
        raise ConfigError(f"{where}{exc}") from exc
    return obj


def from_dict(cls: type, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, converting values to the field types.
    Missing keys keep their defaults; unknown keys raise ConfigError naming the dotted key."""
    data = dict(data or {})
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise ConfigError(_unknown_key_message(key, sorted(names)))
        kwargs[name] = _convert(value, hints[name], key)
    return _build(cls, kwargs, prefix)


def _unknown_key_message(key: str, known: Sequence[str]) -> str:
    import difflib

    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (known keys here: {', '.join(known)})"


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dicts/lists/scalars, suitable for YAML and weights_only checkpoints."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------- overrides


def _parse_scalar(text: str) -> Any:
    """A command-line value as YAML (so lists ``[0.5,1.0]`` and numbers ``1e-3`` work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_field(cfg: Any, key: str, raw: Any) -> Any:
    """Return a copy of ``cfg`` with the dotted field ``key`` set to ``raw`` (converted and validated).

    ``raw`` may be a string from the command line; string fields take it verbatim (``data.root=123``
    stays the string "123"), others parse it as YAML then convert to the field's type."""
    cfg = copy.deepcopy(cfg)
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"invalid config key {key!r}")
    # Walk down to the parent section, remembering the chain to rebuild (and re-validate) it.
    chain = [cfg]
    for i, part in enumerate(parts[:-1]):
        node = chain[-1]
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names or not dataclasses.is_dataclass(getattr(node, part)):
            raise ConfigError(_unknown_key_message(".".join(parts[: i + 1]), names))
        chain.append(getattr(node, part))
    parent, leaf = chain[-1], parts[-1]
    names = [f.name for f in dataclasses.fields(parent)]
    if leaf not in names:
        raise ConfigError(_unknown_key_message(key, names))
    tp = _hints(type(parent))[leaf]
    if dataclasses.is_dataclass(tp):
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        new = _convert(value, tp, key)
    else:
        if isinstance(raw, str) and tp is not str:
            raw_value = _parse_scalar(raw)
        else:
            raw_value = raw
        new = _convert(raw_value, tp, key)
    # Rebuild the parent through its constructor so __post_init__/validate checks the new value.
    values = {f.name: getattr(parent, f.name) for f in dataclasses.fields(parent) if f.init}
    values[leaf] = new
    prefix = ".".join(parts[:-1])
    rebuilt = _build(type(parent), values, prefix or key)
    if len(chain) == 1:
        return rebuilt
    for depth in range(len(chain) - 2, -1, -1):
        setattr(chain[depth], parts[depth], rebuilt)
        rebuilt = chain[depth]
    return chain[0]


def apply_overrides(cfg: Any, overrides: Sequence[str] | Mapping[str, Any] | None) -> Any:
    """Apply ``["model.width=0.5", "optim.lr=0.05"]`` (or a {key: value} mapping) in order."""
    if not overrides:
        return cfg
    items: list[tuple[str, Any]]
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r} must look like key=value (e.g. model.width=0.5)")
            key, value = text.split("=", 1)
            items.append((key.strip(), value))
    for key, value in items:
        cfg = set_field(cfg, key, value)
    top_validate = getattr(cfg, "validate", None)
    if callable(top_validate):
        try:
            top_validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return cfg


# ------------------------------------------------------------------------------------------- files


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return dict(data)


def dump_yaml(obj: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)
    if path is not None:
        from .atomic_io import atomic_write_text  # temp + fsync + rename, the usual file mode

        atomic_write_text(path, text)
    return text


# ------------------------------------------------------------------------------------ command line

#: Direct flags for the common fields: flag -> dotted key.
SHORTCUTS: dict[str, str] = {
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "optim.lr",
    "--out-dir": "out_dir",
    "--device": "device",
    "--amp": "amp",
    "--data-root": "data.root",
    "--num-workers": "data.num_workers",
    "--seed": "seed",
}


def add_override_arguments(parser: argparse.ArgumentParser, shortcuts: Mapping[str, str] | None = None) -> None:
    """``--set key=value ...`` plus the direct flags in ``shortcuts`` (default :data:`SHORTCUTS`)."""
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="override any config field by dotted key, e.g. --set model.width=0.5 optim.lr=0.05 data.root=/data",
    )
    for flag, key in (shortcuts if shortcuts is not None else SHORTCUTS).items():
        parser.add_argument(flag, dest=f"short_{key.replace('.', '__')}", default=None, metavar="V",
                            help=f"same as --set {key}=V")


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides followed by the direct flags that were given, as key=value strings."""
    out = list(getattr(args, "overrides", None) or [])
    for name, value in vars(args).items():
        if name.startswith("short_") and value is not None:
            out.append(f"{name[len('short_'):].replace('__', '.')}={value}")
    return out
