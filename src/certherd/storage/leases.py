"""Holding a lease for a piece of work: acquire, renew in the background, release.

``async with holding(storage, name) as lease:`` is what callers use (not the Locker's
three calls): the lease is renewed every ``ttl / 3`` while the block runs and released
when it ends, however it ends. Writes of the work carry it (``fence=lease``), so a
holder that was paused past its lease cannot overwrite what the next holder wrote.

While a block holds a lease, :func:`held_lease` returns it to code running in the same
task (and tasks it starts), so helpers several calls deep can fence their writes
without the lease being passed through every signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar

from certherd.errors import LeaseLostError, StorageError
from certherd.storage.base import Lease, Locker

__all__ = ["LEASE_TTL", "LOCK_WAIT", "held_lease", "holding", "innermost_lease", "refresh_lease"]

log = logging.getLogger(__name__)

LEASE_TTL = 120.0
"""Seconds a lease lasts unless renewed (renewed every third of it while held)."""
LOCK_WAIT = 300.0
"""Seconds to wait for another holder by default."""

_held: ContextVar[Mapping[str, Lease] | None] = ContextVar("certherd_held_leases", default=None)
_lent: ContextVar[frozenset[str]] = ContextVar("certherd_granted_leases", default=frozenset())
"""Names held through ``holding(granted=...)``: held again inside, the same lease."""
_renew_now: ContextVar[Mapping[str, Callable[[], Awaitable[Lease]]] | None] = ContextVar(
    "certherd_lease_renewers", default=None
)
"""For each name held through :func:`holding`: renew its lease now, for its whole ttl."""


def innermost_lease() -> Lease | None:
    """The lease this task took last through :func:`holding` and still holds (the
    lineage being obtained, for a solver that writes under its lease), if any."""
    held = _held.get()
    return list(held.values())[-1] if held else None


def held_lease(name: str) -> Lease | None:
    """The lease on ``name`` this task holds through :func:`holding`, if any."""
    return (_held.get() or {}).get(name)


async def refresh_lease(name: str) -> Lease | None:
    """Renew now, for its whole ttl, the lease on ``name`` this task holds through
    :func:`holding` (None if it holds none); LeaseLostError if it was granted to another
    holder meanwhile.

    For the step before one no other holder may repeat (an ACME finalize): a fenced
    write only proves the lease was not granted again yet. A lease that ran out while
    this process stalled (its renewals came too late) passes it, and another node may
    take the lineage over a moment later and finalize too; renewed here, it is this
    holder's for a whole ttl again.
    """
    renew = (_renew_now.get() or {}).get(name)
    return None if renew is None else await renew()


@contextlib.asynccontextmanager
async def holding(
    locker: Locker,
    name: str,
    *,
    ttl: float = LEASE_TTL,
    wait: float = LOCK_WAIT,
    granted: Lease | None = None,
    release: bool = True,
) -> AsyncIterator[Lease]:
    """Hold the lease ``name`` for the ``async with`` block, renewed in the background.

    LockTimeoutError if another holder keeps it longer than ``wait``. If a renewal finds
    the lease lost (this process was paused past ``ttl``), the loss is logged and the
    block's fenced writes are refused (FencedError); the block is not cancelled.
    ``granted``: a lease already granted (a fleet node's claim), held from here on as if
    acquired (``release=False``: the block gives it back itself, as a fleet node's
    :meth:`~certherd.storage.fleet.Fleet.settle` does); within that block, holding
    ``name`` again (the same task, or one it
    started: the manager's work on the claimed lineage) is the same lease, neither
    acquired nor released by the inner block. (Any other lease held twice is waited
    for, as from another holder.)
    """
    if granted is None and name in _lent.get():
        inner = held_lease(name)
        if inner is not None:
            yield inner
            return
    lease = granted if granted is not None else await locker.acquire(name, ttl=ttl, wait=wait)
    current = [lease]

    async def renew_now() -> Lease:
        current[0] = await locker.renew(current[0], ttl=ttl)
        return current[0]

    async def keep() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                current[0] = await locker.renew(current[0], ttl=ttl)
            except LeaseLostError as exc:
                log.error("%s; what this run still writes to %s is refused", exc, name)
                return
            except StorageError as exc:  # tried again at the next third
                log.warning("cannot renew the lease of %s: %s", name, exc)

    renewing = asyncio.create_task(keep(), name=f"renew lease {name}")
    outer = {k: v for k, v in (_held.get() or {}).items() if k != name}
    held = _held.set({**outer, name: lease})
    renewers = _renew_now.set({**(_renew_now.get() or {}), name: renew_now})
    lent = _lent.set(_lent.get() | {name}) if granted is not None else None
    try:
        yield lease
    finally:
        if lent is not None:
            _lent.reset(lent)
        _held.reset(held)
        _renew_now.reset(renewers)
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        try:
            if release:
                await locker.release(current[0])
        except StorageError as exc:  # never hide how the block ended: it expires anyway
            log.warning("cannot release the lease of %s (it expires by itself): %s", name, exc)
