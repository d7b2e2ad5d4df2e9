"""Atomic file writing with the usual file mode: the one helper every writer of run files uses.

A file is written to a temporary sibling, flushed and fsynced, given the mode a plain ``open(path, "w")``
would have given it (``0o666 & ~umask``, so 0644 under the common umask 022), then renamed over the target.
A crash at any moment leaves either the old file or the new one, never a truncated one; and a file written
here is readable by the same users as any other file of the run (``tempfile.mkstemp`` alone creates 0600
files, which is how best.pt/last.pt became unreadable by a node running as another user).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_text", "default_file_mode"]

_UMASK_LOCK = threading.Lock()


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0o666 & ~umask)."""
    return 0o666 & ~_current_umask()


def _current_umask() -> int:
    """The process umask. Read from /proc (Linux >= 4.7) because the portable way, setting it and setting
    it back, briefly changes it for every other thread of the process; that fallback runs under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], mode: int | None = None) -> Path:
    """Call ``write(f)`` on a binary file that becomes ``path`` only once complete (temp + fsync + rename).

    ``mode`` defaults to :func:`default_file_mode`. The parent folder is created when missing. On any
    failure the temporary file is removed and the exception propagates; ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 on purpose (private temp files); the final file gets the ordinary mode.
        os.fchmod(fd, default_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data), mode)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode(encoding), mode)


def atomic_torch_save(obj: Any, path: str | os.PathLike, mode: int | None = None) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`)."""
    import torch  # local: this module is also used by writers that never need torch

    # Streamed into the temporary file (no second copy in memory); a failure removes the temporary file.
    return atomic_write(path, lambda f: torch.save(obj, f), mode)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse fsync on a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
