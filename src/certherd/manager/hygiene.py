"""Tidying up after a certherd that was killed mid-work (kill -9, power loss, OOM).

Writes are atomic, so such a crash never damages a value; it can leave temporary files,
a staging folder of ``live/``, and the first files of a version whose last file (the key)
was never written. Those are removed here, only while holding the lineage's lock (no
live process is using them then) and only if they are older than this process: a
concurrent run's files are never touched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from certherd.errors import LockTimeoutError, StorageError
from certherd.storage.base import Lease, Leftovers, Storage, has_value
from certherd.storage.layout import FILES, INDEX, check_name, renewal_settings, state_file
from certherd.storage.leases import LEASE_TTL, LOCK_WAIT, held_lease, holding
from certherd.storage.lineages import archive_keys, archive_versions, live_version

__all__ = [
    "STARTED",
    "clear_interrupted",
    "partial_versions",
    "tidy_lineage",
    "working_on",
]

STARTED = time.time()
"""When this process started (module import): leftovers must be older."""

INDEX_MARGIN = 60.0
"""Seconds before this process started that a temporary file of index.json must be older."""


async def partial_versions(storage: Storage, lineage: str) -> dict[int, list[str]]:
    """Versions of ``lineage`` in ``archive/`` that miss a file, newer than the live one,
    with their keys: what a crash while saving a version leaves. (The key is written
    last, so such a version has no usable certificate and key pair.)"""
    found = await archive_versions(storage, check_name(lineage))
    live = await live_version(storage, lineage) or 0
    return {
        version: keys
        for version, keys in found.items()
        if version > live and len(keys) < len(FILES)
    }


async def tidy_lineage(storage: Storage, lineage: str, *, before: float = STARTED) -> list[str]:
    """Remove what killed runs left of ``lineage``; the caller MUST hold its lock.
    Returns the keys and paths removed."""
    removed: list[str] = []
    if isinstance(storage, Leftovers):
        removed += await storage.clear_leftovers(lineage, before=before)
    for keys in (await partial_versions(storage, lineage)).values():
        for key in keys:
            await storage.delete(key, fence=held_lease(lineage))
        removed += keys
    return removed


async def clear_interrupted(storage: Storage, *, before: float = STARTED) -> dict[str, list[str]]:
    """Tidy every lineage whose lock was last held by a process that died holding it,
    and the temporary files a killed run left of ``index.json``.

    A lock held now by a live process is not waited for (that run is working on it);
    the others are taken briefly. Returns what was removed, by lineage (or ``index.json``).
    """
    if not isinstance(storage, Leftovers):
        return {}
    cleared: dict[str, list[str]] = {}
    # index.json is written without a lock (it is a cache): only temporary files older
    # than a minute before this process started can be a killed run's, not a live one's.
    with contextlib.suppress(StorageError):
        index = await storage.clear_temporary(INDEX, before=before - INDEX_MARGIN)
        if index:
            cleared[INDEX] = index
    for name in await storage.interrupted():
        try:
            async with holding(storage, name, wait=0):
                removed = await tidy_lineage(storage, name, before=before)
        except (LockTimeoutError, StorageError):
            continue
        if removed:
            cleared[name] = removed
    return cleared


async def _has_values(storage: Storage, lineage: str) -> bool:
    if await has_value(storage, renewal_settings(lineage)):
        return True
    if await has_value(storage, state_file(lineage)):
        return True
    return bool(await archive_keys(storage, lineage))


@contextlib.asynccontextmanager
async def working_on(
    storage: Storage,
    lineage: str,
    *,
    timeout: float = LOCK_WAIT,
    say: Callable[[str, str], None] | None = None,
) -> AsyncIterator[Lease]:
    """Hold ``lineage``'s lease for a piece of work (renewed in the background; the
    work's writes carry it: ``held_lease(lineage)``), tidied before and after.

    Before: if its last holder died holding the lock, what that run left is removed.
    After: a lineage that has no values (a first issue that failed, a deleted lineage)
    leaves no lock file or empty folder behind.
    """
    interrupted = isinstance(storage, Leftovers) and lineage in await storage.interrupted()
    async with holding(storage, lineage, ttl=LEASE_TTL, wait=timeout) as lease:
        if interrupted:
            removed = await tidy_lineage(storage, lineage)
            if removed and say is not None:
                say(lineage, "removed what an interrupted run left: " + ", ".join(removed))
        try:
            yield lease
        finally:
            if isinstance(storage, Leftovers):
                with contextlib.suppress(StorageError):
                    if not await _has_values(storage, lineage):
                        await storage.forget(lineage, fence=lease)
