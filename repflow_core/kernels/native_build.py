"""Build, cache and load the native CPU flow kernel (``tvl1_flow.cpp``, shipped as package data).

The library goes to ``$REPFLOW_NATIVE_DIR``, else ``$XDG_CACHE_HOME/repflow_core`` (``~/.cache/repflow_core``),
else a per-user temporary directory; a library prebuilt into ``repflow_core/_native/`` is also found. Its file
name hashes the source, the flags and the CPU's feature flags (it is built with ``-march=native``), so a
changed source or another CPU gets a fresh build. The compiler is ``$CXX`` or ``g++``/``c++``; without one
the eager layer is used (one warning). ``REPFLOW_NATIVE_DISABLE=1`` skips the native kernel altogether.

It is a plain shared library (C ABI, raw float pointers, loaded with ctypes), not a
``torch.utils.cpp_extension`` module: that compiles against the torch headers (about a minute here, and again
for every torch version) for no benefit to a kernel that only needs pointers; this one builds in seconds and
keeps working across torch upgrades. Build ahead of time with ``python -m repflow_core.kernels build``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from .registry import warn_once

ENV_NATIVE_DIR = "REPFLOW_NATIVE_DIR"
ENV_NATIVE_DISABLE = "REPFLOW_NATIVE_DISABLE"
ABI_VERSION = 1
SOURCE_PATH = Path(__file__).resolve().parent / "tvl1_flow.cpp"
BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math"]
TUNED_FLAGS = ["-march=native", "-fopenmp-simd"]  # dropped if the compiler refuses them


class BuildError(RuntimeError):
    """The native kernel could not be built (no compiler, compiler error, unwritable directory)."""


@lru_cache(maxsize=1)
def cpp_source() -> str:
    """The C++ source of the kernel (package data next to this module)."""
    try:
        return SOURCE_PATH.read_text()
    except OSError as exc:  # a broken install (package data not shipped)
        raise BuildError(f"the kernel source {SOURCE_PATH} is missing: {exc}") from exc


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compiler() -> str | None:
    """The C++ compiler used for the native kernel: ``$CXX``, else g++ or c++ on PATH (None if none)."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def library_name(flags: list[str] | None = None) -> str:
    flags = BASE_FLAGS + TUNED_FLAGS if flags is None else flags
    key = "\n".join([cpp_source(), " ".join(flags), platform.machine(), _cpu_signature(), str(ABI_VERSION)])
    return f"repflow_flow_cpu_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _temp_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"repflow_core_{os.getuid()}"


def search_dirs() -> list[Path]:
    """Where a built library is looked for, in order; the first one is where :func:`build` writes."""
    dirs = []
    if os.environ.get(ENV_NATIVE_DIR):
        dirs.append(Path(os.environ[ENV_NATIVE_DIR]))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repflow_core"
    dirs += [cache, Path(__file__).resolve().parent.parent / "_native"]
    return dirs


def find_built() -> Path | None:
    """The path of an already built library for this source, flags and CPU, or None."""
    for flags in (BASE_FLAGS + TUNED_FLAGS, BASE_FLAGS):
        for d in search_dirs() + [_temp_dir()]:
            path = d / library_name(flags)
            if path.is_file():
                return path
    return None


def _install(built: Path, targets: list[Path], errors: list[str]) -> Path | None:
    """Copy ``built`` into the first writable target under a temporary name, then rename (atomic)."""
    for out_dir in targets:
        target = out_dir / built.name
        partial = out_dir / f".{built.name}.{os.getpid()}.tmp"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, partial)
            os.chmod(partial, 0o755 & ~_umask())
            os.replace(partial, target)  # concurrent builds (several processes starting at once) are safe
            return target
        except OSError as exc:
            errors.append(f"cannot write {target}: {exc}")
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build(directory: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Compile the CPU kernel (unless already built) and return the library's path.

    Written into ``directory``, else the first writable of ``$REPFLOW_NATIVE_DIR``, the user cache and a
    per-user temporary directory. Raises :class:`BuildError` with the compiler's message.
    """
    if not force and directory is None:
        found = find_built()
        if found is not None:
            return found
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found (set CXX or install g++)")
    targets = [Path(directory)] if directory is not None else search_dirs()[:-1] + [_temp_dir()]
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="repflow_build_") as tmp:
        source = Path(tmp) / "tvl1_flow.cpp"
        source.write_text(cpp_source())
        for flags in (BASE_FLAGS + TUNED_FLAGS, BASE_FLAGS):
            built = Path(tmp) / library_name(flags)
            cmd = [cxx, *flags, str(source), "-o", str(built)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                errors.append(f"$ {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}")
                continue
            installed = _install(built, targets, errors)
            if installed is not None:
                return installed
            break
    raise BuildError("building the native flow kernel failed:\n" + "\n".join(errors))


def load(path: Path) -> ctypes.CDLL:
    """Load a built library and declare its C ABI; OSError if its ABI version is not ours."""
    lib = ctypes.CDLL(str(path))
    if lib.repflow_abi_version() != ABI_VERSION:
        raise OSError(f"{path} has ABI {lib.repflow_abi_version()}, expected {ABI_VERSION}")
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.repflow_forward.argtypes = [p, p, p, i, i, p, p, p, p, i]
    lib.repflow_forward.restype = i
    lib.repflow_backward.argtypes = [p, p, p, p, p, i, i, p, p, p, p, i, i]
    lib.repflow_backward.restype = i
    return lib


_LIB_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_LIB_ERROR: str | None = None


def native_library() -> ctypes.CDLL | None:
    """The loaded CPU kernel, building it on first use; None (and one logged warning) if that fails."""
    global _LIB, _LIB_ERROR
    if _LIB is not None or _LIB_ERROR is not None:
        return _LIB
    with _LIB_LOCK:
        if _LIB is None and _LIB_ERROR is None:
            if os.environ.get(ENV_NATIVE_DISABLE):
                _LIB_ERROR = f"disabled by {ENV_NATIVE_DISABLE}"
            else:
                try:
                    _LIB = load(build())
                except (BuildError, OSError, AttributeError) as exc:
                    _LIB_ERROR = str(exc)
            if _LIB_ERROR is not None:
                warn_once("native", f"native CPU flow kernel unavailable, using the eager layer: {_LIB_ERROR}")
    return _LIB


def native_error() -> str | None:
    """Why the native kernel is unavailable (None when it loaded or was not tried yet)."""
    return _LIB_ERROR


def reset_for_tests(error: str | None = None) -> None:
    """Forget the loaded library; with ``error``, pretend building it failed with that message."""
    global _LIB, _LIB_ERROR
    from .registry import forget_warning

    _LIB, _LIB_ERROR = None, error
    forget_warning("native")
