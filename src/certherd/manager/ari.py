"""ACME Renewal Information (RFC 9773) for a lineage, cached in its state.

The CA's suggested window, the moment picked inside it (chosen once and stored, so every
node sharing the storage agrees) and when to ask again (the CA's Retry-After, bounded)
are facts kept in the lineage's state: :func:`refresh_renewal_info` asks the CA when that
time has passed, and :func:`update_state` writes such cached facts without ever undoing
a renewal that happened meanwhile.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from certherd.crypto.ari import pick_in_window
from certherd.crypto.certs import load_pem_chain
from certherd.errors import FeatureUnsupportedError, LockTimeoutError
from certherd.manager.accounts import CaOptions
from certherd.manager.clients import ClientPool
from certherd.manager.lineage import LineageState
from certherd.settings import LineageSettings
from certherd.storage.base import Storage
from certherd.storage.layout import archive_file
from certherd.storage.leases import holding

__all__ = [
    "ARI_MAX_RECHECK",
    "ARI_MIN_RECHECK",
    "STATE_LOCK_WAIT",
    "refresh_renewal_info",
    "update_state",
]

ARI_MIN_RECHECK = dt.timedelta(minutes=10)
"""The soonest renewalInfo is asked again, whatever Retry-After says."""
ARI_MAX_RECHECK = dt.timedelta(days=1)
"""The latest renewalInfo is asked again; also the wait when a CA has no ARI."""
ARI_DEFAULT_RECHECK = dt.timedelta(hours=6)
"""The wait when the CA sends no Retry-After with its renewalInfo."""
STATE_LOCK_WAIT = 5.0
"""Seconds a cache update waits for the lineage lock (a renewal may hold it)."""


async def update_state(storage: Storage, seen: LineageState, **changes: Any) -> LineageState:
    """Write ``changes`` (cached facts: ARI window, next check) onto the stored state,
    under the lineage lock and only if it still describes the version we looked at.

    A renewal that saved a newer version meanwhile wins; a lock held by a running
    renewal is not waited for long: these facts are only a cache.
    """
    try:
        async with holding(storage, seen.name, wait=STATE_LOCK_WAIT):
            current = await LineageState.load(storage, seen.name)
            if current.version != seen.version:
                return current
            updated = replace(current, **changes)
            await updated.save(storage)
            return updated
    except LockTimeoutError:
        return replace(seen, **changes)


async def refresh_renewal_info(
    storage: Storage,
    clients: ClientPool,
    settings: LineageSettings,
    state: LineageState,
    ca: CaOptions,
    *,
    now: dt.datetime,
    save: bool,
) -> LineageState:
    """``state`` with the CA's current renewal window, asked only once ``ari_retry_at``
    has passed; saved (as a cache, see :func:`update_state`) unless ``save`` is false.

    A CA without renewalInfo (or refusing it for this certificate) is asked again after
    :data:`ARI_MAX_RECHECK`. Errors of the CA or the network propagate: the caller
    treats ARI as advisory.
    """
    if state.version is None or (state.ari_retry_at is not None and now < state.ari_retry_at):
        return state

    async def keep(**changes: Any) -> LineageState:
        if not save:
            return replace(state, **changes)
        return await update_state(storage, state, **changes)

    client = await clients.client(ca)
    directory = await client.directory()
    if directory.renewal_info is None:
        return await keep(ari_retry_at=now + ARI_MAX_RECHECK)
    pem = await storage.read(archive_file(settings.name, "cert.pem", state.version))
    try:
        info = await client.renewal_info(load_pem_chain(pem)[0])
    except FeatureUnsupportedError:
        return await keep(ari_retry_at=now + ARI_MAX_RECHECK)
    pick = state.ari_pick
    if pick is None or not (info.start <= pick <= info.end):
        # Chosen once and stored, so every node sharing this storage agrees.
        pick = pick_in_window(info.start, info.end)
    wait = dt.timedelta(seconds=info.retry_after) if info.retry_after else ARI_DEFAULT_RECHECK
    wait = min(max(wait, ARI_MIN_RECHECK), ARI_MAX_RECHECK)
    return await keep(
        ari_start=info.start,
        ari_end=info.end,
        ari_pick=pick,
        ari_retry_at=now + wait,
        ari_explanation=info.explanation_url,
    )
