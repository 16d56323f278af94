"""The storage interface: key-value with locks, plus publishing a lineage's live version.

Keys are ``/``-separated relative paths built only by :mod:`certherd.storage.layout`
(never from CA input). A backend MUST:

- make every write atomic (a reader sees the old value or the new one, never a mix) and
  durable before returning (temp file, fsync, rename; or a committed transaction);
- keep ``private=True`` values readable by their owner only (files 0600);
- raise :class:`certherd.errors.NotFoundError` for a missing key on ``read`` and
  :class:`certherd.errors.StorageError` (one line: what, where, why) for any failure;
- serialise holders of one ``lock(name)`` across processes (and machines, where the
  backend is shared); ``lock`` waits up to ``timeout`` then raises LockTimeoutError.
  After taking a lock, callers check storage again: the work may have been done while
  they waited.

Calls may run concurrently from tasks of one event loop; cancellation during a write
leaves the old value in place.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Leftovers", "LocalPaths", "Storage"]


@runtime_checkable
class Storage(Protocol):
    """Where certherd keeps accounts, keys, certificates, settings and state."""

    async def read(self, key: str) -> bytes:
        """The value at ``key``; NotFoundError if there is none."""
        ...

    async def write(self, key: str, data: bytes, *, private: bool = False) -> None:
        """Store ``data`` at ``key`` atomically; ``private`` for keys (owner-only)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key counts as removed."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Every key below ``prefix`` (recursively), sorted."""
        ...

    async def fingerprints(self, prefix: str) -> dict[str, str]:
        """Every key directly below ``prefix`` with a token that changes with its value
        (mtime and size, a row version...): lets callers keep a cache of parsed values."""
        ...

    def lock(self, name: str, *, timeout: float = 300.0) -> AbstractAsyncContextManager[None]:
        """Hold the lock ``name`` for the ``async with`` block."""
        ...

    async def publish(self, lineage: str, version: int, files: tuple[str, ...]) -> None:
        """Make archive version ``version`` of ``lineage`` the live one, atomically per file."""
        ...

    async def unpublish(self, lineage: str) -> None:
        """Remove the live version of ``lineage`` (its archive stays until deleted)."""
        ...

    async def live_version(self, lineage: str) -> int | None:
        """The live version of ``lineage``, or None if it has none."""
        ...


@runtime_checkable
class LocalPaths(Protocol):
    """An optional ability: live files exist as paths on this machine (for hooks)."""

    def live_dir(self, lineage: str) -> Path:
        """The folder holding ``cert.pem``, ``chain.pem``, ``fullchain.pem``, ``privkey.pem``."""
        ...


@runtime_checkable
class Leftovers(Protocol):
    """An optional ability: clearing what a killed certherd leaves beside the values
    (temporary files, staging folders, lock files), which a backend without files lacks.

    Only certherd's own leftovers are touched, matched by their exact names. Callers MUST
    hold the lock of the lineage (or account) concerned, so no live process is using them.
    """

    async def interrupted(self) -> list[str]:
        """Lock names whose holder ended without releasing them (kill -9, power loss).
        A name may be held again by a live process meanwhile: take its lock first."""
        ...

    async def clear_leftovers(self, lineage: str, *, before: float) -> list[str]:
        """Remove ``lineage``'s temporary files and staging folders older than ``before``
        (``time.time()`` when this process started); returns what was removed."""
        ...

    async def clear_temporary(self, key: str, *, before: float) -> list[str]:
        """Remove temporary files of interrupted writes of ``key`` older than ``before``."""
        ...

    async def forget(self, lineage: str) -> None:
        """Remove what a lineage without values leaves: its empty ``archive`` folder and
        its lock file (while holding that lock; a waiter then takes a fresh one)."""
        ...
