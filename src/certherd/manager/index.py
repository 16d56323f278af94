"""An index of every lineage's next check, so a renew run with nothing due stays cheap.

``index.json`` holds, per lineage, when it must next be looked at and the change tokens
(:attr:`~certherd.storage.base.Stat.token`) of its settings and state values at the time
the entry was made, its fingerprint. A run stats both folders (one listing each where
the store can), trusts an entry only while its fingerprint is unchanged, and reads the
state of everything else. A missing, damaged or foreign-version index is rebuilt; an
entry goes stale by itself when any process (or a user's editor) rewrites the lineage's
values. Fingerprints are taken *before* the state is read, so a write racing the read
leaves a mismatch, never a wrong entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from certherd.errors import StorageError
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome
from certherd.storage.base import Storage, stat_below
from certherd.storage.fleet import Fleet, ScheduleEntry, fleet_of
from certherd.storage.layout import (
    INDEX,
    SETTINGS_FOLDER,
    STATE_FOLDER,
    lineage_of_settings,
    lineage_of_state,
)

__all__ = ["IndexEntry", "LineageIndex", "RenewalPlan", "plan_renewal"]

VERSION = 1


@dataclass(frozen=True)
class IndexEntry:
    """What a renew run needs to know to skip a lineage without reading it."""

    fingerprint: str
    next_check: dt.datetime | None
    ari_retry_at: dt.datetime | None
    not_after: dt.datetime | None
    version: int | None

    def to_json(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "f": self.fingerprint,
            "next": iso(self.next_check),
            "ari": iso(self.ari_retry_at),
            "exp": iso(self.not_after),
            "v": self.version,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexEntry:
        def when(value: Any) -> dt.datetime | None:
            if value is None:
                return None
            moment = dt.datetime.fromisoformat(value)
            # Naive times (an edited index) are UTC, as in the lineage state files.
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

        return cls(
            fingerprint=str(data["f"]),
            next_check=when(data.get("next")),
            ari_retry_at=when(data.get("ari")),
            not_after=when(data.get("exp")),
            version=data.get("v"),
        )

    def skippable(self, now: dt.datetime) -> bool:
        """Not due, and no ARI re-check owed, at ``now``."""
        if self.version is None or self.next_check is None or now >= self.next_check:
            return False
        return self.ari_retry_at is not None and now < self.ari_retry_at


class LineageIndex:
    """The index of one storage; load, scan, update, save."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.entries: dict[str, IndexEntry] = {}
        self.fingerprints: dict[str, str] = {}
        self.names: list[str] = []
        self._dirty = False

    async def load(self) -> None:
        """Read index.json (an unreadable one counts as empty: it will be rebuilt)."""
        try:
            data = json.loads(await self.storage.read(INDEX))
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("foreign index version")
            self.entries = {
                name: IndexEntry.from_json(entry) for name, entry in data["lineages"].items()
            }
        except (StorageError, ValueError, KeyError, TypeError, AttributeError):
            self.entries = {}
            self._dirty = True

    async def scan(self) -> None:
        """List every lineage and the current fingerprint of its files."""
        settings = await stat_below(self.storage, SETTINGS_FOLDER)
        states = {
            name: found.token
            for key, found in (await stat_below(self.storage, STATE_FOLDER)).items()
            if (name := lineage_of_state(key)) is not None
        }
        fingerprints = {
            name: f"{found.token}|{states.get(name, '-')}"
            for key, found in settings.items()
            if (name := lineage_of_settings(key)) is not None
        }
        self.names = sorted(fingerprints)
        self.fingerprints = fingerprints
        for gone in set(self.entries) - set(self.names):
            del self.entries[gone]
            self._dirty = True

    def skippable(self, name: str, now: dt.datetime) -> IndexEntry | None:
        """The entry of ``name`` if it is current and says "not due", else None."""
        entry = self.entries.get(name)
        if entry is None or entry.fingerprint != self.fingerprints.get(name):
            return None
        return entry if entry.skippable(now) else None

    async def refresh(self, names: Iterable[str]) -> None:
        """Re-read the state of ``names`` (after a fresh scan) and update their entries."""
        await self.scan()
        for name in names:
            fingerprint = self.fingerprints.get(name)
            if fingerprint is None:
                continue
            try:
                state = await LineageState.load(self.storage, name)
            except StorageError:
                # Damaged or unreadable: no entry, so every run checks (and reports) it.
                self.entries.pop(name, None)
                self._dirty = True
                continue
            self.entries[name] = IndexEntry(
                fingerprint=fingerprint,
                # Deploy hooks still owed: no "not due until", so every run looks at it.
                next_check=None if state.deploy_owed else state.next_check,
                ari_retry_at=state.ari_retry_at,
                not_after=state.not_after,
                version=state.version,
            )
            self._dirty = True

    async def save(self) -> None:
        """Write index.json if anything changed; a failure only costs speed next time."""
        if not self._dirty:
            return
        document = {
            "version": VERSION,
            "lineages": {name: entry.to_json() for name, entry in sorted(self.entries.items())},
        }
        try:
            await self.storage.write(INDEX, json.dumps(document, separators=(",", ":")).encode())
        except StorageError:
            return
        self._dirty = False


class ScheduleIndex:
    """The index of a store that keeps a fleet's schedule (PostgreSQL): one query of
    ``certherd_schedule``, kept by the store in each write's transaction, instead of
    index.json (one blob of every lineage, which does not scale to 100,000 in a
    database). Nothing to refresh or save: the store keeps it."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.rows: dict[str, ScheduleEntry] = {}
        self.names: list[str] = []

    async def load(self) -> None:
        self.rows = await self.fleet.schedule()
        self.names = sorted(self.rows)

    async def refresh(self, names: Iterable[str]) -> None:
        """Lineages a run checked and left as they were are scheduled from their state
        (a check that changed nothing wrote nothing, so the store did not move them)."""
        for name in names:
            await self.fleet.settle(name, floor=0)

    async def save(self) -> None:
        return


@dataclass
class RenewalPlan:
    """Which lineages a renew run must look at, and the ones the index proves not due."""

    index: LineageIndex | ScheduleIndex
    to_check: list[str]
    not_due: list[Outcome]


async def plan_renewal(
    storage: Storage, names: Iterable[str] | None, *, force: bool, now: dt.datetime
) -> RenewalPlan:
    """Split the lineages into those to check and those the index says are not due.

    Forced runs check everything; named lineages use the index like the rest; an
    unknown name is checked (and fails there with a clear error). A store keeping a
    fleet's schedule answers from it (:class:`ScheduleIndex`).
    """
    fleet = fleet_of(storage)
    if fleet is not None:
        return await _plan_from_schedule(ScheduleIndex(fleet), names, force=force, now=now)
    index = LineageIndex(storage)
    await index.load()
    await index.scan()
    wanted = list(names) if names else index.names
    if force:
        return RenewalPlan(index, wanted, [])
    to_check: list[str] = []
    not_due: list[Outcome] = []
    for name in wanted:
        entry = index.skippable(name, now)
        if entry is None or entry.next_check is None:
            to_check.append(name)
            continue
        stamp = entry.next_check.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        not_due.append(
            Outcome(name, "not-due", f"not due until {stamp}", entry.version, entry.not_after)
        )
    return RenewalPlan(index, to_check, not_due)


async def _plan_from_schedule(
    index: ScheduleIndex, names: Iterable[str] | None, *, force: bool, now: dt.datetime
) -> RenewalPlan:
    await index.load()
    wanted = list(names) if names else index.names
    if force:
        return RenewalPlan(index, wanted, [])
    to_check: list[str] = []
    not_due: list[Outcome] = []
    for name in wanted:
        entry = index.rows.get(name)
        if entry is None or entry.live is None or entry.due <= now:
            to_check.append(name)
            continue
        stamp = entry.due.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        not_due.append(
            Outcome(name, "not-due", f"not due until {stamp}", entry.live, entry.not_after)
        )
    return RenewalPlan(index, to_check, not_due)
