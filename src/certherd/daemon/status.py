"""What the status page shows: every lineage's names, CA, expiry, next renewal and why,
last error and (in a fleet) which node holds it, as one JSON document.

Read-only and without secrets: no key, no account e-mail, no EAB key id, no hook or
solver option; CA directory URLs, names, serials and the sanitised last error only.
The document is built from storage at most once per :data:`FRESH_FOR` seconds, whatever
the number of clients (requests meanwhile share the one being built or the last one),
and a build that takes longer than :data:`BUILD_TIMEOUT` answers with the last document
and says it is stale, so the page never makes the daemon read storage in a loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from certherd.errors import CertherdError, NotFoundError, safe_text
from certherd.manager.policy import needs_renewal
from certherd.storage.fleet import node_of

if TYPE_CHECKING:
    from certherd.daemon.loop import Daemon
    from certherd.manager.lineage import LineageState
    from certherd.settings import LineageSettings
    from certherd.storage.base import Lease, Storage
    from certherd.storage.fleet import ScheduleEntry

__all__ = ["FRESH_FOR", "StatusSource", "lineage_row"]

FRESH_FOR: Final = 2.0
"""Seconds a built document is served again before storage is read anew."""
BUILD_TIMEOUT: Final = 20.0
"""Seconds a build may take before the last document is served instead."""
ERROR_TEXT: Final = 1000
READ_BATCH: Final = 64
"""Lineages read at once while building (the filesystem storage reads in threads)."""


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _condition(state: LineageState, now: dt.datetime, due: bool) -> str:
    """One word for the row: failing, expired, revoked, pending, due or ok."""
    if state.not_after is not None and state.not_after <= now:
        return "expired"
    if state.last_error is not None and state.failures > 0:
        return "failing"
    if state.revoked_at is not None:
        return "revoked"
    if state.version is None:
        return "pending"
    return "due" if due else "ok"


def lineage_row(
    settings: LineageSettings,
    state: LineageState,
    now: dt.datetime,
    *,
    lease: Lease | None = None,
    scheduled: ScheduleEntry | None = None,
) -> dict[str, Any]:
    """One lineage as the page shows it (JSON types only)."""
    reason: str | None = None
    next_renewal = state.ari_pick or state.next_check
    due = False
    if state.not_before is not None and state.not_after is not None:
        decision = needs_renewal(
            not_before=state.not_before,
            not_after=state.not_after,
            now=now,
            ari_start=state.ari_start,
            ari_end=state.ari_end,
            ari_pick=state.ari_pick,
            failures=state.failures,
            last_failure=state.last_failure,
            revoked_at=state.revoked_at,
        )
        due, reason, next_renewal = decision.due, decision.reason, decision.next_check
    elif state.version is None:
        reason = "not obtained yet"
    if state.reissue is not None and reason is not None:
        reason = f"{reason}; to be replaced: {state.reissue}"
    return {
        "name": settings.name,
        "names": list(settings.names),
        "ca": state.issued_by or settings.directory_url if state.version else None,
        "cas": [ca.directory_url for ca in settings.cas] or [settings.directory_url],
        "issuer": state.issuer,
        "serial": state.serial,
        "version": state.version,
        "not_before": _iso(state.not_before),
        "not_after": _iso(state.not_after),
        "next_renewal": _iso(next_renewal),
        "due": due,
        "reason": reason,
        "failures": state.failures,
        "last_error": safe_text(state.last_error, ERROR_TEXT) if state.last_error else None,
        "last_failure": _iso(state.last_failure),
        "last_success": _iso(state.last_success),
        "condition": _condition(state, now, due),
        "holder": node_of(lease.holder) if lease is not None else None,
        "obtained_by": node_of(scheduled.obtained_by) if scheduled is not None else None,
        "obtained": _iso(scheduled.obtained) if scheduled is not None else None,
    }


def _damaged_row(name: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "names": [],
        "ca": None,
        "cas": [],
        "issuer": None,
        "serial": None,
        "version": None,
        "not_before": None,
        "not_after": None,
        "next_renewal": None,
        "due": False,
        "reason": None,
        "failures": 0,
        "last_error": safe_text(reason, ERROR_TEXT),
        "last_failure": None,
        "last_success": None,
        "condition": "damaged",
        "holder": None,
        "obtained_by": None,
        "obtained": None,
    }


class StatusSource:
    """Builds the status document of ``daemon``'s storage (see the module docstring)."""

    def __init__(
        self,
        daemon: Daemon,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._daemon = daemon
        self._monotonic = monotonic
        self._last: dict[str, Any] | None = None
        self._built_at = -FRESH_FOR
        self._building: asyncio.Task[dict[str, Any]] | None = None

    async def document(self) -> dict[str, Any]:
        """The latest document, built anew when older than :data:`FRESH_FOR` seconds."""
        if self._last is not None and self._monotonic() - self._built_at < FRESH_FOR:
            return self._last
        if self._building is None or self._building.done():
            self._building = asyncio.ensure_future(self._build())
        try:
            document = await asyncio.wait_for(asyncio.shield(self._building), BUILD_TIMEOUT)
        except TimeoutError:
            if self._last is None:
                raise CertherdError("reading the lineages took too long: try again") from None
            return {**self._last, "stale": True}
        self._last, self._built_at = document, self._monotonic()
        return document

    async def _build(self) -> dict[str, Any]:
        daemon = self._daemon
        manager = daemon.manager
        now = manager.clock.now()
        leases, schedule = await _fleet_views(manager.storage)
        names = await manager.lineages()
        rows: list[dict[str, Any] | None] = []
        for start in range(0, len(names), READ_BATCH):
            batch = names[start : start + READ_BATCH]
            loaded = await asyncio.gather(*(_read(manager.storage, name) for name in batch))
            for name, found in zip(batch, loaded, strict=True):
                if isinstance(found, str):
                    rows.append(_damaged_row(name, found))
                elif found is not None:
                    lease, scheduled = leases.get(name), schedule.get(name)
                    rows.append(lineage_row(*found, now, lease=lease, scheduled=scheduled))
        status = daemon.status
        health = daemon.health()
        return {
            "generated": _iso(now),
            "node": _node_of(manager.storage),
            "healthy": health is None,
            "health": safe_text(health, ERROR_TEXT) if health else None,
            "cycles": status.cycles,
            "last_cycle": _iso(status.last_cycle),
            "stale": False,
            "lineages": [row for row in rows if row is not None],
        }


async def _read(storage: Storage, name: str) -> tuple[LineageSettings, LineageState] | str | None:
    """Settings and state as stored (never written: a crash repair is renew's job); the
    problem's text for a damaged lineage; None for one deleted meanwhile."""
    from certherd.manager.lineage import LineageState
    from certherd.settings import LineageSettings

    try:
        return await LineageSettings.load(storage, name), await LineageState.load(storage, name)
    except NotFoundError:
        return None
    except CertherdError as exc:
        return str(exc)


def _node_of(storage: object) -> str | None:
    from certherd.storage.fleet import fleet_of

    fleet = fleet_of(storage)
    return fleet.node if fleet is not None else None


async def _fleet_views(storage: object) -> tuple[dict[str, Lease], dict[str, ScheduleEntry]]:
    """The leases held now and a fleet's schedule, where the storage keeps them."""
    from certherd.storage.base import LeaseListing
    from certherd.storage.fleet import fleet_of

    leases: dict[str, Lease] = {}
    schedule: dict[str, ScheduleEntry] = {}
    shared = getattr(storage, "shared", storage)  # behind this host's live files
    if isinstance(shared, LeaseListing):
        leases = await shared.held()
    fleet = fleet_of(storage)
    if fleet is not None:
        schedule = await fleet.schedule()
    return leases, schedule
