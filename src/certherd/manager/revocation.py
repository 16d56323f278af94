"""Ending a lineage's certificate: revoke it (and mark it for replacement), or delete it.

A revoked live version is flagged in the state (when, why) and due at once, so the next
``renew`` or daemon cycle replaces it with a new key; the CA answering ``alreadyRevoked``
flags it too (issue 10.5). Deleting removes every key of the lineage: its archive, live
files, settings, state and lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from certherd.acme.client import RevocationReason
from certherd.crypto.certs import load_pem_chain
from certherd.errors import AlreadyRevokedError, NotFoundError
from certherd.manager.hygiene import tidy_lineage, working_on
from certherd.manager.lineage import LineageState
from certherd.storage.base import Storage, has_value
from certherd.storage.layout import archive_file, notify_record, renewal_settings, state_file
from certherd.storage.leases import holding
from certherd.storage.lineages import archive_keys, unpublish

if TYPE_CHECKING:
    from certherd.manager.service import Manager

__all__ = ["delete_lineage", "mark_revoked", "revoke"]


async def revoke(manager: Manager, name: str, reason: RevocationReason | None) -> LineageState:
    """Revoke the live certificate of ``name`` with its lineage's account; see
    :meth:`Manager.revoke`."""
    settings, state = await manager.load(name)
    if state.version is None:
        raise NotFoundError(f"lineage {name!r} has no certificate to revoke")
    issuer = manager.issuer_ca(settings, state)
    if issuer is None:
        raise NotFoundError(
            f"lineage {name!r}: its certificate was issued by {state.issued_by}, which its "
            "settings no longer list: add that CA back to revoke it"
        )
    client = await manager.client(issuer)
    pem = await manager.storage.read(archive_file(name, "cert.pem", state.version))
    why = "unspecified" if reason is None else RevocationReason(reason).name.lower()
    try:
        await client.revoke(load_pem_chain(pem)[0], reason=reason)
    except AlreadyRevokedError:
        # The CA says so: the certificate is revoked whatever we thought (issue 10.5).
        await mark_revoked(
            manager.storage, state, "the CA answered alreadyRevoked", manager.clock.now()
        )
        raise
    return await mark_revoked(manager.storage, state, why, manager.clock.now())


async def mark_revoked(
    storage: Storage, seen: LineageState, reason: str, now: dt.datetime
) -> LineageState:
    """Flag the live version ``seen`` as revoked and due now (if it is still live)."""
    async with holding(storage, seen.name):
        current = await LineageState.load(storage, seen.name)
        if current.version != seen.version:
            return current  # replaced meanwhile: the new version is not revoked
        revoked = replace(current, revoked_at=now, revocation_reason=reason, next_check=now)
        await revoked.save(storage)
        return revoked


async def delete_lineage(
    storage: Storage, name: str, *, say: Callable[[str, str], None] | None = None
) -> int:
    """Remove every file of lineage ``name`` (its lock and folders too), under its lock;
    returns how many files were removed."""
    async with working_on(storage, name, say=say) as lease:
        await tidy_lineage(storage, name)  # temporary files would keep its folder
        keys = await archive_keys(storage, name)
        keys += [renewal_settings(name), state_file(name)]
        if await has_value(storage, notify_record(name)):
            keys.append(notify_record(name))
        for key in keys:
            await storage.delete(key, fence=lease)
        await unpublish(storage, name, fence=lease)
    return len(keys)
