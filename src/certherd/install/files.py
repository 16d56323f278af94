"""Writing a web server's config files the safe way, whatever the server.

Every installer changes files through these: :func:`real_target` (where writing a path
must go: a symlinked site file is written where it points, refused when another user
could swap a folder on the way), :func:`backup` (a copy of each file about to change
under ``ROOT/certherd/backup/``), :func:`write` (temp + fsync + rename, the file's mode
and owner kept; a :class:`Link` makes a symlink, as ``a2ensite`` does) and
:func:`restore` (each file's previous bytes, or link, or absence, again).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certherd._nofollow import untrusted_reason
from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError

__all__ = [
    "KEEP_BACKUPS",
    "Content",
    "Link",
    "backup",
    "current",
    "real_target",
    "restore",
    "write",
]

log = logging.getLogger(__name__)

KEEP_BACKUPS = 20
"""How many backups (one folder per change) are kept under ``ROOT/certherd/backup/``."""


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target`` (as written: ``../sites-available/x.conf``)."""

    target: str


Content = bytes | Link | None
"""What a path holds: bytes, a symlink, or nothing (None: no file)."""


def real_target(path: Path) -> Path:
    """Where writing ``path`` must go: a symlinked site file is written where it points,
    refused when another user could change a folder on the way, to the link or to where
    it points (certherd._nofollow.untrusted_reason, as for the config dir)."""
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys((path.parent, real.parent)):
        reason = untrusted_reason(folder)
        if reason is not None:
            raise ConfigError(f"certherd will not edit {real}: {reason}")
    return real


def current(path: Path) -> Content:
    """What ``path`` holds now (a symlink as a :class:`Link`, not followed)."""
    if path.is_symlink():
        return Link(os.readlink(path))
    return path.read_bytes() if path.exists() else None


def write(path: Path, data: Content) -> None:
    """Make ``path`` hold ``data`` atomically (mode and owner of a file kept)."""
    if data is None:
        path.unlink(missing_ok=True)
        return
    if isinstance(data, Link):
        reason = untrusted_reason(path.parent)
        if reason is not None:
            raise ConfigError(f"certherd will not make the link {path}: {reason}")
        temporary = path.with_name(f".{path.name}.certherd-link")
        temporary.unlink(missing_ok=True)
        os.symlink(data.target, temporary)
        os.replace(temporary, path)
        return
    try:
        info = path.stat() if not path.is_symlink() else None
    except FileNotFoundError:
        info = None
    if info is None:
        path.unlink(missing_ok=True)  # a link certherd replaces by a file
        atomic_write(path, data, 0o644)
        return
    atomic_write(path, data, stat.S_IMODE(info.st_mode))
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, info.st_uid, info.st_gid)
        except PermissionError:
            log.warning("could not give %s its owner back (uid %d)", path, info.st_uid)


def restore(previous: Mapping[Path, Content]) -> None:
    """Put every path of ``previous`` back as it was (errors logged, the others go on)."""
    for path, data in previous.items():
        try:
            write(path, data)
        except (OSError, ConfigError) as exc:  # keep restoring the others
            log.error("could not restore %s: %s (its backup is in certherd/backup/)", path, exc)


def backup(owned: Path, previous: Mapping[Path, Content]) -> None:
    """A copy of each file about to change: ``owned/backup/<stamp>/<its path>``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    (owned / "backup").mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = sorted(p for p in (owned / "backup").iterdir() if p.is_dir())
    for old in kept[: max(0, len(kept) - KEEP_BACKUPS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    folder = owned / "backup" / stamp
    for path, data in previous.items():
        if not isinstance(data, bytes):
            continue
        copy = folder / str(path).lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(copy, data, 0o600)
