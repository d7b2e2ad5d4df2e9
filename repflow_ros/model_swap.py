"""Putting a new model into the running recognizer node (issue 10 part 5), with no ROS import.

A swap starts from ``ros2 param set /repflow_recognizer model_path NEW.pt`` (the primary interface) or from the
``~/load_model`` service (std_srvs/Trigger: load ``model_path`` again, e.g. after the file was retrained in place):

1. :meth:`ModelLoader.load` runs on the thread of that parameter or service callback, never on the intake or the
   inference thread, so frames keep flowing and the old model keeps publishing meanwhile. It reads and validates the
   file in full (:func:`repflow_ros.node_model.read_model`: ``checkpoint.load_checkpoint`` or an exported ``.onnx``
   model's metadata), resolves clip_len / frame_stride, builds a CPU recognizer and runs its ``self_test`` (weights
   that load but give NaN are refused here), then builds the recognizer on the node's device and warms it up. Any
   failure raises :class:`SwapError` with the reason; the running model is untouched.
2. The node installs the result under its swap lock: the new recognizer and a new predictor (the smoothing history
   never averages two models' scores) replace the old ones; the frame window is replaced by a new one when the input
   spec differs (:func:`changed_spec`: frames preprocessed for one spec never reach the other model), otherwise kept.
3. The inference thread picks the new recognizer up before its next window and releases the old one itself (it may
   be in the middle of a window with it): the switch always falls between two windows.

:func:`model_info` is the JSON of the latched ``~/model_info`` topic; :class:`WindowCounters` keeps the window
counters of ``/diagnostics`` monotonic across replaced windows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .node_model import (
    ConfigureError,
    build_on_device,
    model_file,
    read_model,
    resolve_window,
    validate_on_cpu,
)

__all__ = ["SwapError", "LoadedModel", "Prepared", "ModelLoader", "window_spec", "changed_spec", "model_name",
           "model_info", "WindowCounters", "ModelSwapMixin"]

#: Input-spec fields whose change restarts the frame window (clip_len / frame_stride as the node resolved them).
SPEC_FIELDS = ("clip_len", "frame_stride", "size", "resize_short", "crop", "mean", "std")


class SwapError(ValueError):
    """Why a model could not be swapped in (the message names the path and the cause)."""


@dataclass
class LoadedModel:
    """A model that passed every check, ready to be installed."""

    path: str
    checkpoint: Any
    sha256: str
    recognizer: Any  #: on the node's device and warmed up (``on_device``), else the self-tested CPU recognizer
    clip_len: int
    frame_stride: int
    load_s: float  #: seconds from the request to ready (read, validate, build, warm up)


def window_spec(checkpoint: Any, clip_len: int, frame_stride: int) -> dict[str, Any]:
    """The input spec that decides how frames are buffered and preprocessed (:data:`SPEC_FIELDS`)."""
    spec = checkpoint.input_spec
    return {"clip_len": int(clip_len), "frame_stride": int(frame_stride), "size": [int(v) for v in spec.size],
            "resize_short": int(spec.resize_short), "crop": str(getattr(spec, "crop", "center")),
            "mean": [float(v) for v in spec.mean], "std": [float(v) for v in spec.std]}


def changed_spec(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The :data:`SPEC_FIELDS` that differ (all of them when there is no old spec)."""
    if old is None:
        return list(SPEC_FIELDS)
    return [name for name in SPEC_FIELDS if old.get(name) != new.get(name)]


def model_name(checkpoint: Any, path: str) -> str:
    """The card's name, else the file name without its suffix."""
    card = getattr(checkpoint, "card", None) or {}
    return str(card.get("name") or Path(path).stem)


def model_info(checkpoint: Any, path: str, sha256: str, spec: dict[str, Any], backend: str, device: str,
               precision: str, swaps: int, load_s: float | None = None) -> dict[str, Any]:
    """The ``~/model_info`` record: name, path, sha256 of the file, labels, the input spec the node uses, backend,
    device, precision, the card's summary, how many swaps so far and how long the last load took."""
    card = getattr(checkpoint, "card", None) or {}
    return {"name": model_name(checkpoint, path), "path": str(path), "sha256": sha256,
            "labels": list(checkpoint.labels), "input_spec": dict(spec), "backend": backend, "device": device,
            "precision": precision, "summary": str(card.get("summary", "")),
            "known_limits": list(card.get("known_limits", [])), "swaps": int(swaps),
            "load_s": None if load_s is None else round(float(load_s), 3)}


@dataclass
class Prepared:
    """A model file read and validated (the quick, synchronous part of a swap)."""

    path: str
    checkpoint: Any
    clip_len: int
    frame_stride: int
    sha256: str
    start: float  #: time.perf_counter() at the request


class ModelLoader:
    """One swap at a time: :meth:`check` (synchronous: read and validate the file, a few ms for the packaged model's
    3 MB) claims the loader, :meth:`build` (the background part) releases it; a request while one runs is refused
    (not queued), so two callers never race to install."""

    def __init__(self) -> None:
        self._busy = threading.Lock()
        self._loading: str | None = None

    def check(self, model_path: str, params: dict[str, Any], backend: str) -> Prepared:
        """Read and validate ``model_path`` ('' = the packaged model); ``params`` holds the node's ``clip_len`` and
        ``frame_stride`` parameters (0 = the model's own). Raises :class:`SwapError`; on success the loader stays
        claimed until :meth:`build` (or :meth:`release`)."""
        if not self._busy.acquire(blocking=False):
            raise SwapError(f"model_path={model_path!r}: another model ({self._loading!r}) is being loaded; "
                            "try again when it is done")
        self._loading = model_path
        start = time.perf_counter()
        try:
            from repflow_core.checkpoint import file_sha256

            path = model_file(model_path)
            checkpoint = read_model(path, backend)
            clip_len, frame_stride = resolve_window(params, checkpoint)
            return Prepared(path, checkpoint, clip_len, frame_stride, file_sha256(path), start)
        except ConfigureError as exc:
            self.release()
            raise SwapError(str(exc)) from exc
        except Exception as exc:  # an unexpected failure must still leave the old model running
            self.release()
            raise SwapError(f"parameter model_path={model_path!r}: {type(exc).__name__}: {exc}") from exc

    def release(self) -> None:
        self._loading = None
        self._busy.release()

    def build(self, prepared: Prepared, device: Any, precision: str, backend: str, warmup: int, on_device: bool,
              log: Callable[[str], None]) -> LoadedModel:
        """The background part: a CPU recognizer and its self-test, then (``on_device``: an active node) the
        recognizer on ``device``, warmed up. Raises :class:`SwapError`; releases the loader either way."""
        try:
            return self._build(prepared, device, precision, backend, warmup, on_device, log)
        finally:
            self.release()

    @staticmethod
    def _build(prepared, device, precision, backend, warmup, on_device, log) -> LoadedModel:
        path = prepared.path
        try:
            recognizer = validate_on_cpu(prepared.checkpoint, path, backend, log)
        except ConfigureError as exc:
            raise SwapError(str(exc)) from exc
        except Exception as exc:
            raise SwapError(f"parameter model_path={path!r}: {type(exc).__name__}: {exc}") from exc
        if on_device:
            try:
                recognizer, _ = build_on_device(prepared.checkpoint, path, device, precision, backend, warmup, log,
                                                cpu_recognizer=recognizer)
            except Exception as exc:
                raise SwapError(f"parameter model_path={path!r}: cannot run on {device} ({precision}, backend "
                                f"{backend}): {exc}") from exc
        return LoadedModel(path, prepared.checkpoint, prepared.sha256, recognizer, prepared.clip_len,
                           prepared.frame_stride, time.perf_counter() - prepared.start)


class WindowCounters:
    """Counters of frame windows that were replaced at a swap, added to the live window's so ``/diagnostics``
    (``windows_skipped_busy``, ``window_resets_<reason>``) never goes backwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skipped = 0
        self._resets: dict[str, int] = {}
        self.replaced = 0  #: windows replaced because the input spec changed

    def retire(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self.replaced += 1
            self._skipped += int(stats.get("windows_skipped_busy", 0))
            for reason, count in stats.get("resets", {}).items():
                self._resets[reason] = self._resets.get(reason, 0) + int(count)

    def merged(self, stats: dict[str, Any] | None) -> dict[str, Any] | None:
        """``stats`` (a FrameWindow.stats() snapshot, or None) with the retired windows' counts added."""
        if stats is None:
            return None
        with self._lock:
            out = dict(stats)
            out["windows_skipped_busy"] = int(stats.get("windows_skipped_busy", 0)) + self._skipped
            resets = dict(stats.get("resets", {}))
            for reason, count in self._resets.items():
                resets[reason] = resets.get(reason, 0) + count
            out["resets"] = resets
            out["windows_replaced_model_change"] = self.replaced
            return out


class ModelSwapMixin:
    """The node's side of a swap, mixed into :class:`repflow_ros.recognizer_node.RecognizerNode` (kept here so the
    node module stays about intake and publishing). Uses the node's ``_cfg``, ``_device``, ``_device_description``,
    ``_checkpoint``, ``_model_source``, ``_recognizer``, ``_window``, ``_predictor``, ``_stop``, ``state_label``,
    ``get_parameter``, ``get_logger`` and ``_publish_model_info``."""

    def _init_model_swap(self) -> None:
        self._swap_lock = threading.Lock()  # the image callback reads (recognizer, window) under it: never mixed
        self._loader = ModelLoader()
        self._window_counters = WindowCounters()
        self._model_sha256 = ""
        self._model_spec: dict[str, Any] | None = None
        self._model_swaps = 0
        self._last_load_s: float | None = None
        self._setup_recognizer = None  # the CPU recognizer validated at configure / an inactive swap
        self._pending_swap: tuple[Prepared, str] | None = None  # accepted model_path, started after it is set
        self._reverting_to: str | None = None  # model_path being set back after a failed swap

    def _swap_parameter_check(self, value: str, previous: str) -> str:
        """``model_path`` set while configured: validate the file now (the parameter is refused with the reason when
        it is missing, corrupt or does not fit); the rest runs once the value is set (:meth:`_swap_after_set`).
        Returns '' when accepted. The value the node reverts to after a failed background part is let through."""
        if self._reverting_to is not None and value == self._reverting_to:
            return ""
        prepared, reason = self.begin_swap(value, "model_path")
        if prepared is None:
            return reason
        self._pending_swap = (prepared, previous)
        return ""

    def _swap_after_set(self, params: list[Any]) -> None:
        """Post-set callback: start the background part of an accepted ``model_path``; when it fails (e.g. a model
        that gives NaN), the old model keeps running and ``model_path`` is set back to it, with the reason logged."""
        if self._reverting_to is not None and any(p.name == "model_path" for p in params):
            self._reverting_to = None
            return
        pending, self._pending_swap = self._pending_swap, None
        if pending is None:
            return
        prepared, previous = pending

        def done(ok: bool, message: str) -> None:
            if not ok:
                from rclpy.parameter import Parameter

                self._reverting_to = previous
                self.set_parameters([Parameter("model_path", value=previous)])
        self.start_swap(prepared, "model_path", done)

    def _pipeline(self) -> tuple[Any, Any, Any]:
        """(recognizer, window, predictor), read together."""
        with self._swap_lock:
            return self._recognizer, self._window, self._predictor

    def _window_stats(self) -> dict[str, Any] | None:
        window = self._window
        return self._window_counters.merged(window.stats() if window is not None else None)

    def _model_info_record(self) -> dict[str, Any]:
        cfg = self._cfg
        return model_info(self._checkpoint, self._model_source, self._model_sha256, self._model_spec or {},
                          cfg.get("backend", "torch"), self._device_description, cfg.get("precision", ""),
                          self._model_swaps, self._last_load_s)

    def _model_id(self) -> str:
        """``name@sha256[:12]`` for /diagnostics."""
        if self._checkpoint is None:
            return ""
        return f"{model_name(self._checkpoint, self._model_source)}@{self._model_sha256[:12]}"

    def begin_swap(self, model_path: str, origin: str) -> tuple[Prepared | None, str]:
        """The synchronous part (on the executor thread): the node's state, then the file read and validated.
        Returns (prepared, '') or (None, why it was refused)."""
        state = self.state_label
        if state not in ("inactive", "active"):
            return None, f"model_path={model_path!r}: the node is {state}; a model is loaded at configure"
        params = {name: self.get_parameter(name).value for name in ("clip_len", "frame_stride")}
        try:
            return self._loader.check(model_path, params, self._cfg["backend"]), ""
        except SwapError as exc:
            message = f"model not swapped (still running {self._model_source}): {exc}"
            self.get_logger().error(f"{origin}: {message}")
            return None, message

    def start_swap(self, prepared: Prepared, origin: str, done: Callable[[bool, str], None]) -> threading.Thread:
        """The rest in a background thread (the executor keeps serving intake and timers): build, self-test, warm
        up, install; then ``done(success, message)``."""
        def run():
            ok, message = self._finish_swap(prepared, origin)
            done(ok, message)
        thread = threading.Thread(target=run, name="repflow_model_swap", daemon=True)
        thread.start()
        return thread

    def _finish_swap(self, prepared: Prepared, origin: str) -> tuple[bool, str]:
        log, cfg = self.get_logger(), self._cfg
        active = self.state_label == "active"
        log.info(f"{origin}: loading {prepared.path} in the background ({cfg['backend']}, "
                 f"{self._device_description}); the current model keeps running")
        try:
            loaded = self._loader.build(prepared, self._device, cfg["precision"], cfg["backend"], cfg["warmup"],
                                        active, log.info)
        except SwapError as exc:
            message = f"model not swapped (still running {self._model_source}): {exc}"
            log.error(f"{origin}: {message}")
            return False, message
        except Exception as exc:  # noqa: BLE001 - never let a swap thread die silently
            message = f"model not swapped (still running {self._model_source}): {type(exc).__name__}: {exc}"
            log.error(f"{origin}: {message}")
            return False, message
        message = self._install(loaded, active)
        if message.startswith("model not swapped"):
            log.error(f"{origin}: {message}")
            return False, message
        log.info(f"{origin}: {message}")
        self._publish_model_info()
        return True, message

    def _install(self, loaded: LoadedModel, active: bool) -> str:
        from .frame_window import FrameWindow
        from .prediction import Predictor

        spec = window_spec(loaded.checkpoint, loaded.clip_len, loaded.frame_stride)
        cfg = self._cfg
        # Its one-time warnings (frames smaller than the input...) go to this node's log, as the first model's do.
        loaded.recognizer.on_warning = self.get_logger().warning
        with self._swap_lock:
            if active and (self._recognizer is None or self._stop.is_set()):
                loaded.recognizer.release()
                return "model not swapped: the node was deactivated while the model was loading"
            changed = changed_spec(self._model_spec, spec)
            if active:
                if changed:  # frames preprocessed for the old spec must never reach the new model
                    gap = cfg["max_frame_gap"]
                    self._window_counters.retire(self._window.stats())
                    self._window = FrameWindow(loaded.clip_len, loaded.frame_stride, cfg["hop"],
                                               gap if gap > 0 else None)
                self._predictor = Predictor(loaded.recognizer.top_k, cfg["smoothing"], cfg["score_threshold"],
                                            cfg["top_k"])
                self._recognizer = loaded.recognizer  # the inference thread releases the old one
            else:
                if self._setup_recognizer is not None:
                    self._setup_recognizer.release()
                self._setup_recognizer = loaded.recognizer
            self._checkpoint, self._model_source, self._model_sha256 = loaded.checkpoint, loaded.path, loaded.sha256
            self._model_spec, self._last_load_s = spec, loaded.load_s
            cfg["clip_len"], cfg["frame_stride"] = loaded.clip_len, loaded.frame_stride
            self._model_swaps += 1
        restart = (f"; frame window restarted ({', '.join(changed)} changed)" if active and changed
                   else "; frame window kept (same input spec)" if active else "; used at activation")
        return (f"swapped in {model_name(loaded.checkpoint, loaded.path)} ({loaded.path}, sha256 "
                f"{loaded.sha256[:12]}, {len(loaded.checkpoint.labels)} classes) after {loaded.load_s:.2f} s of "
                f"loading and validation{restart}")
