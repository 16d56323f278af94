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
from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.request import earlier_wildcard_lineage
from certherd.manager.tasks import finish_all
from certherd.names import name_set
from certherd.settings import LineageSettings
from certherd.storage.base import Storage

if TYPE_CHECKING:
    from certherd.manager.service import Manager

__all__ = ["apply_config", "sync_settings"]


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

    async def one(entry: LineageSettings) -> Outcome:
        wanted = await _wanted(manager.storage, entry)
        stored = await _stored(manager.storage, wanted.name)
        try:
            if stored is None:
                outcome = await manager.issue(wanted)
                return dataclasses.replace(outcome, reason="new in the config file")
            reason = _reissue_reason(wanted, stored)
            if reason is not None:
                outcome = await manager.issue(wanted)
                return dataclasses.replace(outcome, action="renewed", reason=reason)
            if wanted != stored:
                await wanted.save(manager.storage)
            return await manager.renew_one(wanted.name)
        except Exception as exc:  # one lineage's failure never stops the others (issue 9.3)
            return Outcome(wanted.name, "failed", "apply", error=describe_failure(exc))

    # Every lineage to its end; stopped, every one cleans up (not only the first).
    return await finish_all(one(entry) for entry in config.certificates)


async def sync_settings(storage: Storage, config: ConfigFile) -> None:
    """Write the settings of every certificate in ``config`` (``renew`` and the daemon
    follow the file: the CA and account details and the secrets' references included);
    a lineage whose names changed becomes due, one not yet obtained is obtained."""
    for entry in config.certificates:
        wanted = await _wanted(storage, entry)
        if await _stored(storage, wanted.name) != wanted:
            await wanted.save(storage)
