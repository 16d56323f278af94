"""The expiring-soon notification on a fleet node (``run --node``), as ``renew`` and the
lone daemon tell it (:func:`~certherd.manager.failures.notify_expiring`): a node tells
it for each lineage it claimed and did not renew, under that lineage's lease, and every
:data:`EXPIRY_SWEEP` (the first at its start) for the lineages past their renewal point
that nobody claims (one in failure backoff), under a lease it takes for the moment; the
dedup record in the shared storage keeps it to one message a day whichever node tells.
"""

from __future__ import annotations

from collections.abc import Container

from certherd.errors import CertherdError, LockTimeoutError
from certherd.manager.failures import notify_expiring
from certherd.manager.outcome import Outcome
from certherd.manager.renewal import EXPIRY_NOTICE_MAX
from certherd.manager.service import Manager
from certherd.storage.fleet import Fleet
from certherd.storage.leases import holding

__all__ = ["EXPIRY_SWEEP", "sweep_expiring", "tell_expiring"]

EXPIRY_SWEEP = 3600.0
"""Seconds between two looks for lineages that expire soon and nobody renews."""


async def tell_expiring(manager: Manager, name: str, outcome: Outcome | None) -> None:
    """The expiring-soon event of ``name``, whose lease the caller holds; ``outcome``:
    what the caller just did with it, else it was not due (backing off). Never raises
    but for cancellation and storage errors reading the lineage."""
    try:
        settings, state = await manager.load(name)
    except CertherdError:
        return  # damaged: its renewal reports it
    if outcome is None:
        waiting = "backing off after failed attempts" if state.failures else "not due"
        outcome = Outcome(
            name, "not-due", waiting, state.version, state.not_after, error=state.last_error
        )
    await notify_expiring(manager, settings, state, outcome)


async def sweep_expiring(
    manager: Manager, fleet: Fleet, working: Container[str], lease_ttl: float
) -> None:
    """Tell the lineages past their renewal point (a third of the lifetime left, from
    the schedule) that this node is not working on, each under a lease taken without
    waiting (one another node holds is that node's to tell)."""
    now = manager.clock.now()
    for name, entry in (await fleet.schedule()).items():
        if name in working or entry.not_after is None or entry.obtained is None:
            continue
        left = entry.not_after - now
        if left > min(EXPIRY_NOTICE_MAX, (entry.not_after - entry.obtained) / 3):
            continue
        try:
            async with holding(manager.storage, name, ttl=lease_ttl, wait=0):
                await tell_expiring(manager, name, None)
        except LockTimeoutError:
            continue
