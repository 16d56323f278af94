"""The default storage: a folder (``/etc/certherd`` for root), Certbot-like on disk.

Values are files written through a temp file, fsync and rename; private values are
0600, and so is every file of ``accounts``, ``renewal`` and ``state``; those folders,
``archive`` and ``locks`` are 0700 (tightened on first use where an older certherd
left them open). ``live/<lineage>/*.pem`` are
relative symlinks into ``archive/<lineage>/``, each swapped atomically by renaming a
new link over the old one, so a web server never reads a half-written file. Leases
live in ``locks/`` (see :mod:`certherd.storage.filelocks`): exclusive across processes
on this machine, free at once if the holder dies (kill -9 included), granted again
with a higher fencing token once a paused holder's lease expired.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
from pathlib import Path
from typing import Any

from certherd._nofollow import untrusted_reason
from certherd.crypto.files import atomic_write
from certherd.errors import ConfigError, NotFoundError, StorageError
from certherd.storage.base import Lease, Stat
from certherd.storage.filelocks import FileLocker, explain
from certherd.storage.layout import FILES, check_name

_new_tuple = tuple.__new__

__all__ = ["FilesystemStorage"]

_PRIVATE_TOPS = ("accounts", "archive", "locks", "renewal", "state")
"""Folders only their owner may enter (0700): keys, settings (which may hold a DNS
credential given on a command line), state (order URLs), locks."""
_PRIVATE_VALUES = ("accounts", "renewal", "state")
"""Folders whose every file is written 0600, whatever ``private`` says."""
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, looked up on first use (ctypes is not needed to read lineages)."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


def _exchange(first: Path, second: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code))


def _rmtree(path: Path, *, ignore_errors: bool = False) -> None:
    import shutil  # only for clean-up: kept off the import path of every command

    shutil.rmtree(path, ignore_errors=ignore_errors)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


_VERSION = re.compile(r"^[a-z]+(\d+)\.pem$")


def staging_pattern(lineage: str) -> re.Pattern[str]:
    """The names of ``lineage``'s staging folders in ``live/`` (``.NAME.<pid>.new``), exactly."""
    return re.compile(rf"^\.{re.escape(lineage)}\.\d+\.new$")


Names = list[str]  # (the class's ``list`` method hides the builtin in its body)
# atomic_write's temporary files: ".<name>.<16 hex digits>.tmp" beside the value.
_ARCHIVE_TEMPORARY = re.compile(
    r"^\.(?:(?:cert|chain|fullchain|privkey)\d+|pending-privkey)\.pem\.[0-9a-f]{16}\.tmp$"
)


def _stat_of(info: os.stat_result) -> Stat:
    # The inode too: every atomic write makes a new file, so a rewrite within one tick
    # of a coarse mtime clock (same size) still changes the token.
    return Stat(info.st_size, info.st_mtime, f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}")


def _temporary_pattern(file: str) -> re.Pattern[str]:
    """The names atomic_write gives its temporary files for ``file``, exactly."""
    return re.compile(rf"^\.{re.escape(file)}\.[0-9a-f]{{16}}\.tmp$")


class FilesystemStorage:
    """Storage in a local folder; leases safe across processes (storage.filelocks)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._secured = False
        self._root_checked = False
        self._locks = FileLocker(self.root / "locks", self._ensure_parent)

    def _check_root(self) -> None:
        """ConfigError if another user could change what the folder holds (once per object).

        The folder holds account keys, private keys and the hooks root runs: if a user
        could swap it or an entry on its path, they could read the keys or run their own
        program as root. See :func:`certherd._nofollow.untrusted_reason` for the rules.
        """
        if self._root_checked:
            return
        try:
            reason = untrusted_reason(self.root)
        except OSError as exc:
            raise StorageError(f"cannot check {self.root}: {explain(exc)}") from None
        if reason is not None:
            raise ConfigError(
                f"the config dir {self.root} is not safe for keys and hooks: {reason}; use a "
                "folder only root (or the user certherd runs as) can change, such as "
                "/etc/certherd, or fix its owner and mode"
            )
        self._root_checked = True

    def _secure(self) -> None:
        """Once per instance: tighten what an older certherd left open (private folders
        0755, settings files 0644). Only existing entries are touched; symlinks never
        followed; a folder we may not change is left as it is."""
        if self._secured:
            return
        self._check_root()  # never change modes under a folder another user controls
        self._secured = True
        for top in _PRIVATE_TOPS:
            folder = self.root / top
            try:
                info = os.lstat(folder)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode):
                continue
            if not info.st_mode & 0o077:
                continue  # made or fixed by this certherd: its files are 0600 already
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o700)  # first: the folder alone keeps others out
                if top in _PRIVATE_VALUES:
                    with os.scandir(folder) as entries:
                        for entry in entries:
                            if entry.is_file(follow_symlinks=False):
                                mode = entry.stat(follow_symlinks=False).st_mode
                                if mode & 0o077:
                                    os.chmod(entry.path, 0o600)

    def _path(self, key: str) -> Path:
        self._check_root()
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise ValueError(f"bad storage key {key!r}")
        return self.root.joinpath(*parts)

    def _ensure_parent(self, path: Path) -> None:
        self._check_root()
        relative = path.relative_to(self.root).parts
        mode = 0o700 if relative and relative[0] in _PRIVATE_TOPS else 0o755
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
            current = self.root
            for part in relative[:-1]:
                current = current / part
                if not current.is_dir():
                    current.mkdir(mode=mode, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {explain(exc)}") from None

    async def read(self, key: str) -> bytes:
        path = self._path(key)
        self._secure()
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            # A folder, or a path below a value, holds no value either.
            raise NotFoundError(f"{key} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {explain(exc)}") from None

    async def write(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        path = self._path(key)
        self._secure()
        self._ensure_parent(path)
        private = private or key.split("/", 1)[0] in _PRIVATE_VALUES
        async with self._locks.fenced(fence):
            try:
                atomic_write(path, data, mode=0o600 if private else 0o644)
            except ConfigError as exc:
                cause = exc.__cause__
                reason = explain(cause) if isinstance(cause, OSError) else str(exc)
                raise StorageError(f"cannot write {path}: {reason}") from None

    async def delete(self, key: str, *, fence: Lease | None = None) -> None:
        path = self._path(key)
        async with self._locks.fenced(fence):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {explain(exc)}") from None

    async def stat(self, key: str) -> Stat:
        path = self._path(key)
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{key} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {explain(exc)}") from None
        if not stat.S_ISREG(info.st_mode):
            raise NotFoundError(f"{key} not found in {self.root}")  # a folder is no value
        return _stat_of(info)

    async def list(self, prefix: str) -> list[str]:
        self._secure()
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        keys: list[str] = []
        for directory, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # a crashed publish's staging
            for name in files:
                if name.startswith("."):
                    continue  # temp files of an interrupted write
                full = Path(directory) / name
                keys.append(full.relative_to(self.root).as_posix())
        return sorted(keys)

    async def stat_all(self, prefix: str) -> dict[str, Stat]:
        """Every key below ``prefix`` with its Stat, in one scan of its folders."""
        top = prefix.strip("/")
        base = self._path(top) if top else self.root
        found: dict[str, Stat] = {}
        pending = [(base, top)]
        while pending:
            folder, key_prefix = pending.pop()
            try:
                entries = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StorageError(f"cannot list {folder}: {explain(exc)}") from None
            with entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue  # temp files of an interrupted write, staging folders
                    key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
                    if entry.is_file():  # as read() and list(): symlinks followed
                        info = entry.stat()  # (inlined _stat_of: 10,000s of keys per run)
                        token = f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"
                        # tuple.__new__: NamedTuple's own __new__ is a Python call per key
                        found[key] = _new_tuple(Stat, (info.st_size, info.st_mtime, token))
                    elif entry.is_dir(follow_symlinks=False):  # as list(): not linked folders
                        pending.append((Path(entry.path), key))
        return found

    # -- leases (certherd.storage.filelocks) ----------------------------------------------

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        return await self._locks.acquire(name, ttl=ttl, wait=wait)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        return await self._locks.renew(lease, ttl=ttl)

    async def release(self, lease: Lease) -> None:
        await self._locks.release(lease)

    async def forget(self, lineage: str, *, fence: Lease | None = None) -> None:
        name = check_name(lineage)
        await self.forget_lock(name, fence=fence)  # first: FencedError removes nothing
        with contextlib.suppress(OSError):
            (self.root / "archive" / name).rmdir()  # only if empty

    async def forget_lock(self, name: str, *, fence: Lease | None = None) -> None:
        self._check_root()
        await self._locks.forget(name, fence=fence)

    async def interrupted(self) -> Names:
        return await self._locks.interrupted()

    async def clear_leftovers(self, lineage: str, *, before: float) -> Names:
        name = check_name(lineage)
        own_json = _temporary_pattern(f"{name}.json")
        removed = self._remove_old(self.root / "renewal", own_json, before)
        removed += self._remove_old(self.root / "state", own_json, before)
        removed += self._remove_old(self.root / "archive" / name, _ARCHIVE_TEMPORARY, before)
        removed += self._remove_old(self.root / "live", staging_pattern(name), before, folders=True)
        return removed

    async def clear_temporary(self, key: str, *, before: float) -> Names:
        path = self._path(key)
        return self._remove_old(path.parent, _temporary_pattern(path.name), before)

    def _remove_old(
        self, folder: Path, pattern: re.Pattern[str], before: float, *, folders: bool = False
    ) -> Names:
        """Remove the entries of ``folder`` named by ``pattern`` and changed before
        ``before``: files (or, with ``folders``, folders), never a symlink."""
        removed: Names = []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return removed
        for entry in entries:
            if not pattern.match(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            kind = stat.S_ISDIR if folders else stat.S_ISREG
            if not kind(info.st_mode) or info.st_mtime >= before:
                continue
            try:
                if folders:
                    _rmtree(Path(entry.path))
                else:
                    os.unlink(entry.path)
            except OSError as exc:
                raise StorageError(f"cannot remove {entry.path}: {explain(exc)}") from None
            removed.append(Path(entry.path).relative_to(self.root).as_posix())
        return removed

    async def publish(
        self, lineage: str, version: int, files: tuple[str, ...], *, fence: Lease | None = None
    ) -> None:
        live = self._path(f"live/{check_name(lineage)}/x").parent
        targets = {
            file: Path("..", "..", "archive", lineage, f"{file.removesuffix('.pem')}{version}.pem")
            for file in files
        }
        # Every file is checked before anything moves: never half a version live.
        for target in targets.values():
            if not (self.root / target.relative_to("../..")).is_file():
                raise StorageError(f"cannot publish {lineage} v{version}: {target} is missing")
        self._ensure_parent(live)
        async with self._locks.fenced(fence):
            try:
                self._publish_folder(live, targets)
            except OSError as exc:
                raise StorageError(f"cannot update {live}: {explain(exc)}") from None

    def _publish_folder(self, live: Path, targets: dict[str, Path]) -> None:
        """Build the new live folder beside the old one, then swap the two in one step.

        ``renameat2(RENAME_EXCHANGE)`` exchanges them atomically, so a crash leaves every
        file of the old version or every file of the new one, never a mix (a reader that
        opens two files by path may still straddle the swap; servers reload after the
        deploy hook, by which time the folder is settled).
        Where the kernel lacks it, each link is swapped on its own (atomic per file).
        """
        parent = live.parent
        # Left by a crash mid-publish of this lineage (we hold its lock, so no live
        # process is using one). Matched exactly: ``.example.com.*.new`` would also
        # take ``.example.com.au.<pid>.new``, another lineage's folder in use.
        own = staging_pattern(live.name)
        for entry in os.scandir(parent):
            if own.match(entry.name) and entry.is_dir(follow_symlinks=False):
                _rmtree(Path(entry.path), ignore_errors=True)
        staging = parent / f".{live.name}.{os.getpid()}.new"
        staging.mkdir(mode=0o755)
        for file, target in targets.items():
            os.symlink(target, staging / file)
        _fsync_directory(staging)
        if not live.exists():
            os.rename(staging, live)
        elif _exchange(staging, live):
            _rmtree(staging, ignore_errors=True)
        else:
            for file in targets:
                os.replace(staging / file, live / file)
            _rmtree(staging, ignore_errors=True)
        _fsync_directory(parent)

    async def unpublish(self, lineage: str, *, fence: Lease | None = None) -> None:
        live = self.live_dir(lineage)
        async with self._locks.fenced(fence):
            for file in FILES:
                with contextlib.suppress(FileNotFoundError):
                    (live / file).unlink()
            with contextlib.suppress(OSError):
                live.rmdir()

    def live_dir(self, lineage: str) -> Path:
        return self.root / "live" / check_name(lineage)

    async def live_versions(self) -> dict[str, int]:
        """The live version of every lineage with live files here, in one scan of
        ``live/`` (a fleet host comparing 100,000 lineages with the shared store)."""
        found: dict[str, int] = {}
        try:
            entries = list(os.scandir(self.root / "live"))
        except OSError:
            return found
        for entry in entries:
            try:
                target = os.readlink(entry.path + "/cert.pem")
            except OSError:
                continue
            match = _VERSION.match(target.rpartition("/")[2])
            if match:
                found[entry.name] = int(match.group(1))
        return found

    async def live_version(self, lineage: str) -> int | None:
        link = self._path(f"live/{check_name(lineage)}/cert.pem")
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        match = _VERSION.match(Path(target).name)
        return int(match.group(1)) if match else None
