"""Writing HAProxy's files the safe way: atomically, where only root could swap them,
with a backup first and the previous bytes back on failure."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from certherd._nofollow import untrusted_reason
from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError

__all__ = ["backup", "restore", "write_file"]

log = logging.getLogger(__name__)

KEEP_BACKUPS = 20
"""How many backups (one folder per change) are kept."""


def write_file(path: Path, data: bytes | None, mode: int) -> None:
    """Write ``data`` to ``path`` (None: remove it) atomically, where a symlinked config
    points; an existing file keeps its mode and owner (a PEM is always 0600)."""
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys((path.parent, real.parent)):
        reason = untrusted_reason(folder)
        if reason is not None:
            raise ConfigError(f"certherd will not write {real}: {reason}")
    if data is None:
        real.unlink(missing_ok=True)
        return
    try:
        info = real.stat()
    except FileNotFoundError:
        atomic_write(real, data, mode)
        return
    keep = mode if path.suffix == ".pem" else stat.S_IMODE(info.st_mode)
    atomic_write(real, data, keep)
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(real, info.st_uid, info.st_gid)
        except PermissionError:
            log.warning("could not give %s its owner back (uid %d)", real, info.st_uid)


def restore(previous: Mapping[Path, bytes | None]) -> None:
    """Every file of ``previous`` with those bytes again (None: removed)."""
    for path, data in previous.items():
        try:
            write_file(path, data, 0o600)
        except (OSError, ConfigError) as exc:  # keep restoring the others
            log.error("could not restore %s: %s (its backup is in certherd/backup/)", path, exc)


def backup(folder: Path, previous: Mapping[Path, bytes | None]) -> None:
    """A copy (0600) of each file about to change: ``folder/<stamp>/<its path>``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = sorted(p for p in folder.iterdir() if p.is_dir())
    for old in kept[: max(0, len(kept) - KEEP_BACKUPS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    for path, data in previous.items():
        if data is None:
            continue
        copy = folder / stamp / str(path).lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(copy, data, 0o600)
