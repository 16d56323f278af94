"""Converge storage on certherd.toml: obtain what is missing or changed, leave the rest.

A lineage whose names, key type, profile or CA changed is obtained again now; one
whose solvers or hooks changed only has its settings rewritten; an unchanged one is
renewed if due. Lineages not in the file are left alone.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from certherd.config import ConfigFile
from certherd.errors import NotFoundError
from certherd.manager.hygiene import clear_interrupted
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.request import earlier_wildcard_lineage
from certherd.manager.tasks import finish_all
from certherd.names import name_set
from certherd.settings import LineageSettings
from certherd.storage.base import Storage

if TYPE_CHECKING:
    from certherd.manager.service import Manager

__all__ = ["apply_config", "store_config", "sync_settings"]


def _reissue_reason(wanted: LineageSettings, stored: LineageSettings) -> str | None:
    if name_set(wanted.names) != name_set(stored.names):
        return "names changed"
    if wanted.key_type != stored.key_type:
        return "key type changed"
    if wanted.profile != stored.profile:
        return "profile changed"
    if wanted.directory_url != stored.directory_url:
        return "CA changed"
    return None


async def _wanted(storage: Storage, settings: LineageSettings) -> LineageSettings:
    """``settings`` under the name of the lineage that already holds them: one made
    before for a wildcard-first entry keeps its name (issue 9 item 9)."""
    lineage = await earlier_wildcard_lineage(storage, settings.name, settings.names)
    return settings if lineage == settings.name else dataclasses.replace(settings, name=lineage)


async def _stored(storage: Storage, name: str) -> LineageSettings | None:
    try:
        return await LineageSettings.load(storage, name)
    except NotFoundError:
        return None


async def apply_config(manager: Manager, config: ConfigFile) -> list[Outcome]:
    """Apply every certificate of ``config``, concurrently (bounded by the manager)."""
    await clear_interrupted(manager.storage)  # what runs killed mid-work left behind

    def obtained_meanwhile(stored: LineageSettings | None, state: LineageState) -> str | None:
        """Under the lineage's lease: another certherd (a fleet node, another apply)
        obtained what is wanted while this one waited for the lease."""
        if stored is None or state.version is None or state.reissue:
            return None
        if _reissue_reason(entry_wanted[stored.name], stored) is not None:
            return None
        return "obtained by another certherd meanwhile"

    entry_wanted: dict[str, LineageSettings] = {}

    async def one(entry: LineageSettings) -> Outcome:
        wanted = await _wanted(manager.storage, entry)
        entry_wanted[wanted.name] = wanted
        stored = await _stored(manager.storage, wanted.name)
        try:
            if stored is None:
                outcome = await manager.issue(wanted, unless=obtained_meanwhile)
                if outcome.action == "skipped":
                    return outcome
                return dataclasses.replace(outcome, reason="new in the config file")
            reason = _reissue_reason(wanted, stored)
            if reason is not None:
                outcome = await manager.issue(wanted, unless=obtained_meanwhile)
                if outcome.action == "skipped":
                    return outcome
                return dataclasses.replace(outcome, action="renewed", reason=reason)
            if wanted != stored:
                await wanted.save(manager.storage)
            return await manager.renew_one(wanted.name)
        except Exception as exc:  # one lineage's failure never stops the others (issue 9.3)
            return Outcome(wanted.name, "failed", "apply", error=describe_failure(exc))

    # Every lineage to its end; stopped, every one cleans up (not only the first).
    return await finish_all(one(entry) for entry in config.certificates)


async def store_config(storage: Storage, config: ConfigFile) -> list[Outcome]:
    """``apply --defer``: store what ``config`` wants, for a fleet's nodes to obtain.

    A new lineage's settings are written (due at once on every node's schedule); a
    changed one's too, and when the change needs a new certificate (key type, profile,
    CA; new names are seen by every renewal already) its state says so, under its lease.
    Nothing is ordered here."""
    from certherd.storage.leases import holding

    outcomes = []
    for entry in config.certificates:
        wanted = await _wanted(storage, entry)
        stored = await _stored(storage, wanted.name)
        if stored == wanted:
            outcomes.append(Outcome(wanted.name, "not-due", "unchanged in the config file"))
            continue
        reason = "new in the config file" if stored is None else "changed in the config file"
        reissue = None if stored is None else _reissue_reason(wanted, stored)
        if reissue is None:
            await wanted.save(storage)
        else:
            reason = f"{reissue}: to be obtained again"
            async with holding(storage, wanted.name) as lease:
                state = await LineageState.load(storage, wanted.name)
                if state.version is not None:
                    await dataclasses.replace(state, reissue=reissue).save(storage, fence=lease)
                await wanted.save(storage, fence=lease)
        outcomes.append(Outcome(wanted.name, "stored", reason))
    return outcomes


async def sync_settings(storage: Storage, config: ConfigFile) -> None:
    """Write the settings of every certificate in ``config`` (``renew`` and the daemon
    follow the file: the CA and account details and the secrets' references included);
    a lineage whose names changed becomes due, one not yet obtained is obtained."""
    for entry in config.certificates:
        wanted = await _wanted(storage, entry)
        if await _stored(storage, wanted.name) != wanted:
            await wanted.save(storage)
