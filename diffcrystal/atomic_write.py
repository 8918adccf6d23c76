"""Atomic file writes: a temporary file in the same folder, flushed, then renamed into place,
so a reader (or an interrupted run) never sees a half-written file under its final name.

Files get the mode an ordinary ``open(path, "w")`` would give them (``0o666`` less the
process umask: ``0o644`` under umask ``022``), not ``tempfile.mkstemp``'s private ``0o600``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_file_mode() -> int:
    """Permission bits of a newly created file: ``0o666`` less the process umask."""
    mask = os.umask(0)  # the umask can only be read by setting it; restore it at once
    os.umask(mask)
    return 0o666 & ~mask


def probe_writable(folder: str | os.PathLike) -> None:
    """Create and drop an anonymous temporary file in ``folder``; ``OSError`` if that fails.
    A real test: permission bits do not stop root, a read-only file system does."""
    tempfile.TemporaryFile(dir=folder).close()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) to ``path`` via a temporary file and
    ``os.replace``; the parent folder is created if missing. The file gets
    :func:`default_file_mode`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (see
    :func:`atomic_write_text`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
