"""Leases with fencing tokens in a folder (``<config dir>/locks``), across processes.

Per name, three things::

    locks/<name>.lock        the lease record (JSON: token, holder, expiry, released);
                             its ``flock`` is a short critical section around every
                             grant, renewal, release and fenced write of the name
    locks/.held/<name>       the holder's marker: created at each grant, ``flock``-ed by
                             the holder for as long as it holds the lease, removed on
                             release; left behind by a holder that died (``interrupted``)
    locks/.tokens            the highest token of any forgotten name (``forget``), so
                             tokens keep growing after a lock file is removed

A lease is free when it has no record, was released, has expired, or its holder's
marker is not ``flock``-ed any more (the kernel drops a dead process's locks at once,
kill -9 included). A holder paused past its expiry still holds its marker, but its
lease is granted again (a new marker, a higher token); its fenced writes are refused.

Critical sections never ``await``, so tasks of one event loop cannot interleave in
them; other processes are kept out by the record's ``flock``, which every section takes
without blocking the event loop (polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from certherd.crypto.files import atomic_write
from certherd.errors import (
    ConfigError,
    FencedError,
    LeaseLostError,
    LockTimeoutError,
    StorageError,
)
from certherd.storage.base import Lease
from certherd.storage.layout import check_name

__all__ = ["HELD", "FileLocker", "explain"]

log = logging.getLogger(__name__)

HELD = ".held"
_TOKENS = ".tokens"
_POLL = 0.02
_SECTION_QUIET = 1.0
"""Seconds a busy critical section is waited for before acquire says it waits."""
_SECTION_WAIT = 30.0
"""How long renew, release and fenced writes wait for another process's critical
section (milliseconds long, unless that process is stopped in the middle of one)."""


@dataclass(frozen=True)
class _Record:
    token: int
    holder: str
    expires: float
    released: bool


def _read_record(fd: int) -> _Record | None:
    """The record in the open lock file ``fd``; None if empty or damaged (a new file, or
    a write cut by power loss: every holder of that time is gone)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0))
        return _Record(
            int(data["token"]), str(data["holder"]), float(data["expires"]), bool(data["released"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def _write_record(fd: int, record: _Record) -> None:
    data = json.dumps(
        {
            "token": record.token,
            "holder": record.holder,
            "expires": record.expires,
            "released": record.released,
        }
    ).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``."""
    try:
        current = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class FileLocker:
    """The Locker half of :class:`~certherd.storage.filesystem.FilesystemStorage`."""

    def __init__(self, folder: Path, prepare: Callable[[Path], None]) -> None:
        """``prepare(path)`` creates the folders above ``path`` (0700) or raises."""
        self.folder = folder
        self._prepare = prepare
        self._markers: dict[tuple[str, int], int] = {}
        """Descriptors of the markers this object holds, by (name, token)."""

    # -- the critical section of a name ------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.folder / f"{check_name(name, 'lock name')}.lock"

    async def _section(
        self,
        name: str,
        wait: float,
        *,
        create: bool,
        on_busy: Callable[[], None] | None = None,
    ) -> int | None:
        """The lock file of ``name``, opened and ``flock``-ed (the caller unlocks and
        closes it); None if it does not exist and ``create`` is false.

        A lock file can be removed (``forget``) while we wait on it: a flock won on a
        removed file keeps nobody out, so the file is checked to still be the one at
        its path, else the current one is taken.
        """
        path = self._path(name)
        if create:
            self._prepare(path)
        deadline = time.monotonic() + wait
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                if create:
                    raise StorageError(f"cannot open lock {path}: its folder vanished") from None
                return None
            except OSError as exc:
                raise StorageError(f"cannot open lock {path}: {explain(exc)}") from None
            try:
                while not _try_flock(fd):
                    if time.monotonic() >= deadline:
                        raise LockTimeoutError(self._timeout_text(name, wait))
                    if on_busy is not None:
                        on_busy()
                    await asyncio.sleep(_POLL)
                if _same_file(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _timeout_text(self, name: str, wait: float) -> str:
        return (
            f"another certherd holds {name} (lock {self._path(name)}) for more than "
            f"{wait:.0f}s: wait for it to finish, or check for a stuck process"
        )

    @staticmethod
    def _leave(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    # -- tokens -------------------------------------------------------------------------

    def _floor(self) -> int:
        """The highest token of any forgotten lock file (0 if none)."""
        try:
            return int((self.folder / _TOKENS).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _raise_floor(self, token: int) -> None:
        """Keep ``token`` as a floor for future grants (before a lock file goes). The
        file is replaced atomically (readers see a whole number); writers are serialised
        by a flock on the folder itself, so no extra lock file is needed."""
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # only forget() takes it, for microseconds
            if token > self._floor():
                atomic_write(self.folder / _TOKENS, f"{token}\n".encode(), mode=0o600)
        finally:
            os.close(folder)

    # -- holders ------------------------------------------------------------------------

    def _marker(self, name: str) -> Path:
        return self.folder / HELD / name

    def _holder_alive(self, name: str) -> bool:
        """Whether a process still holds the marker of ``name`` (flock busy)."""
        try:
            fd = os.open(self._marker(name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            return not _try_flock(fd)  # free: its holder ended without releasing (kill -9)
        finally:
            os.close(fd)

    def _mark(self, name: str) -> int:
        """A fresh marker for a new grant of ``name``, flock-ed: the descriptor."""
        marker = self._marker(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)  # a dead or paused holder's: theirs keeps their own inode
        for _ in range(2):
            try:
                fd = os.open(
                    marker, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
                break
            except FileNotFoundError:
                with contextlib.suppress(OSError):
                    os.mkdir(marker.parent, 0o700)
            except OSError as exc:
                raise StorageError(f"cannot create {marker}: {explain(exc)}") from None
        else:
            raise StorageError(f"cannot create {marker}: its folder cannot be made")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
        return fd

    def _drop_marker(self, name: str, token: int, *, unlink: bool) -> None:
        """Let go of our marker of grant ``token`` (removing it if it is still at its
        path and ``unlink``); the caller is in the name's critical section."""
        fd = self._markers.pop((name, token), None)
        if fd is None:
            return
        try:
            if unlink and _same_file(fd, self._marker(name)):
                with contextlib.suppress(OSError):
                    os.unlink(self._marker(name))
        finally:
            os.close(fd)

    # -- the Locker protocol ------------------------------------------------------------

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        check_name(name, "lock name")
        started = time.monotonic()
        deadline = started + max(wait, 0.0)
        waited = False

        def waiting() -> None:
            nonlocal waited
            if not waited and wait > 0:  # a mere try (wait 0) is no wait
                waited = True
                log.warning(
                    "waiting for the lock of %s (%s): another certherd is working on it "
                    "(up to %.0f s)",
                    name,
                    self._path(name),
                    wait,
                )

        def busy() -> None:
            # Another process's grant or fenced write takes milliseconds: only a longer
            # wait (a holder stopped inside one, or a foreign flock) is worth saying.
            if time.monotonic() - started >= _SECTION_QUIET:
                waiting()

        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                fd = await self._section(name, remaining, create=True, on_busy=busy)
            except LockTimeoutError:
                raise LockTimeoutError(self._timeout_text(name, wait)) from None
            assert fd is not None
            try:
                lease = self._grant(fd, name, ttl)
            finally:
                self._leave(fd)
            if lease is not None:
                if waited:
                    log.warning("got the lock of %s after %.1f s", name, time.monotonic() - started)
                return lease
            waiting()
            if time.monotonic() >= deadline:
                raise LockTimeoutError(self._timeout_text(name, wait))
            await asyncio.sleep(_POLL)

    def _grant(self, fd: int, name: str, ttl: float) -> Lease | None:
        """In the critical section: grant ``name`` if it is free, else None."""
        record = _read_record(fd)
        now = time.time()
        if (
            record is not None
            and not record.released
            and now < record.expires
            and self._holder_alive(name)
        ):
            return None
        token = max(record.token if record else 0, self._floor()) + 1
        holder = f"{os.uname().nodename}/{os.getpid()}/{os.urandom(4).hex()}"
        marker = self._mark(name)
        lease = Lease(name, holder, token, now + ttl)
        try:
            _write_record(fd, _Record(token, holder, lease.expires, released=False))
        except OSError as exc:
            os.close(marker)
            raise StorageError(f"cannot write lock {self._path(name)}: {explain(exc)}") from None
        self._markers[(name, token)] = marker
        return lease

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        fd = await self._section(lease.name, _SECTION_WAIT, create=False)
        if fd is None:
            raise LeaseLostError(f"the lease of {lease.name} is gone (its lock file was removed)")
        try:
            record = _read_record(fd)
            if record is None or record.token != lease.token or record.released:
                raise LeaseLostError(_lost_text(lease, record))
            renewed = replace(lease, expires=time.time() + ttl)
            _write_record(fd, replace(record, expires=renewed.expires))
            return renewed
        finally:
            self._leave(fd)

    async def release(self, lease: Lease) -> None:
        fd = await self._section(lease.name, _SECTION_WAIT, create=False)
        if fd is None:  # forgotten: the marker went with it
            self._drop_marker(lease.name, lease.token, unlink=False)
            return
        try:
            record = _read_record(fd)
            ours = record is not None and record.token == lease.token and not record.released
            if ours and record is not None:
                _write_record(fd, replace(record, released=True))
            self._drop_marker(lease.name, lease.token, unlink=ours)
        finally:
            self._leave(fd)

    @contextlib.asynccontextmanager
    async def fenced(self, fence: Lease | None) -> AsyncIterator[None]:
        """Run the block (a write) only if ``fence`` is still the latest grant of its
        name, inside the name's critical section (no grant in between); FencedError
        otherwise. Without a fence, just run it."""
        if fence is None:
            yield
            return
        fd = await self._section(fence.name, _SECTION_WAIT, create=True)
        assert fd is not None
        try:
            record = _read_record(fd)
            latest = record.token if record is not None else self._floor()
            if fence.token < latest:
                raise FencedError(
                    f"refused a write under the lease of {fence.name} with token {fence.token}: "
                    f"it was granted again since (token {latest}); this certherd was paused or "
                    "cut off past its lease, and another one took over"
                )
            yield
        finally:
            self._leave(fd)

    # -- abilities of the filesystem ------------------------------------------------------

    async def forget(self, name: str, *, fence: Lease | None = None) -> None:
        """Remove the lock file and marker of ``name`` (held by us), keeping its token
        as a floor so the next grant's token is still higher. With ``fence``:
        FencedError, nothing removed, if the name was granted to another holder since."""
        fd = await self._section(name, _SECTION_WAIT, create=False)
        if fd is None:
            return
        try:
            record = _read_record(fd)
            if fence is not None and record is not None and record.token != fence.token:
                raise FencedError(
                    f"refused to remove the lock of {name} with token {fence.token}: it was "
                    f"granted again since (token {record.token})"
                )
            if record is not None:
                self._raise_floor(record.token)
                self._drop_marker(name, record.token, unlink=False)
            with contextlib.suppress(OSError):
                os.unlink(self._marker(name))  # ours: the caller holds the lease
            path = self._path(name)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot delete {path}: {explain(exc)}") from None
        finally:
            self._leave(fd)

    async def interrupted(self) -> list[str]:
        try:
            names = os.listdir(self.folder / HELD)
        except OSError:
            return []
        return sorted(name for name in names if _usable_name(name))


def _lost_text(lease: Lease, record: _Record | None) -> str:
    if record is None or record.released:
        return f"the lease of {lease.name} (token {lease.token}) is no longer held"
    return (
        f"the lease of {lease.name} (token {lease.token}) ran out and was granted to "
        f"{record.holder} (token {record.token}): stop working on it"
    )


def _usable_name(name: str) -> bool:
    try:
        check_name(name, "lock name")
    except ConfigError:
        return False
    return True


def explain(exc: OSError) -> str:
    """Why an operation on a file failed, and what to do, in a few words."""
    if exc.errno == errno.ENOSPC:
        return "the disk is full: free some space"
    if exc.errno in (errno.EROFS,):
        return "the file system is read-only: keep certherd's state on a writable one"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: run as the owner of the config dir or fix its permissions"
    return exc.strerror or str(exc)
