"""Atomic file writes: a temporary file in the same directory, fsync, rename, fsync."""

from __future__ import annotations

import contextlib
import os

from certherd.errors import ConfigError

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace the file at ``path`` with ``data`` so that readers see old or new, never half.

    The data goes to a new temporary file in the same directory, created exclusively
    (``O_CREAT|O_EXCL``) with ``mode`` and then set to exactly ``mode`` whatever the umask,
    before a single byte is written; it is fsynced, renamed over ``path`` with
    :func:`os.replace`, and the directory is fsynced so that the rename itself survives a
    crash. On failure the temporary file is removed and :class:`ConfigError` names the path.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    temporary = os.path.join(directory, f".{os.path.basename(target)}.{os.urandom(8).hex()}.tmp")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(temporary, flags, mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with open(descriptor, "wb") as handle:
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Flush a directory entry change (the rename) to disk, where the platform allows it.

    Some systems and file systems refuse to open or fsync a directory (Windows, some
    network file systems); the file itself is already durable then, so that is ignored.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
