"""One node of a fleet (``certherd --storage URL run --node NAME``): claims due lineages
from the shared schedule, works on each under the lease the claim granted, keeps this
host's live files current and runs the deploy hooks here when a new version arrives,
whichever node obtained it.

The loop: (1) bring this host's live files up to the shared live versions (one query of
the schedule; a lineage whose copy moved gets its deploy hooks and installer run on this
host); (2) claim up to ``concurrency`` minus the lineages in hand (one statement,
``SKIP LOCKED``: nodes never wait on each other) and start one task per lineage:
:meth:`~certherd.manager.service.Manager.renew_one` under the granted lease, then
:meth:`~certherd.storage.fleet.Fleet.settle`; (3) sleep until the next lineage can be
claimed, a change is notified (LISTEN/NOTIFY), a task ends, a signal, or ``max_sleep``
(polling: the fallback when notifications are lost).

The database going away (at start or later) is not the end: the node keeps what is on
disk served, stops claiming (a lease it cannot renew lapses, and its fenced writes would
be refused), says so once in the log and in ``/metrics`` (``storage_up``), and tries
again with backoff (1 s doubling to 60 s). Every call has a deadline
(:attr:`PostgresStorage.deadline`), so a hung database is an error, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from certherd.daemon.expiring import EXPIRY_SWEEP, sweep_expiring, tell_expiring
from certherd.daemon.loop import Daemon
from certherd.daemon.markers import DeployMarkers
from certherd.errors import CertherdError, StorageError
from certherd.manager.hooks import run_lineage_hooks
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.service import Manager
from certherd.settings import LineageSettings
from certherd.storage.base import Lease
from certherd.storage.fleet import Fleet, ScheduleEntry
from certherd.storage.hostfiles import HostFiles
from certherd.storage.layout import archive_folder
from certherd.storage.leases import LEASE_TTL, holding

__all__ = ["FleetNode"]

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 60.0
DEPLOY_RETRY_MAX = 3600.0
"""Seconds at most between two tries of a deploy that fails on a host (the first comes
after ``min_sleep``, doubling)."""
SYNC_EVERY = 1.0
"""Seconds between two reads of the whole schedule (live files, metrics) at most: a
round that only fills a freed slot claims without reading it."""


class FleetNode(Daemon):
    """A :class:`Daemon` whose work comes from the fleet's schedule."""

    def __init__(
        self,
        manager: Manager,
        fleet: Fleet,
        *,
        concurrency: int = 10,
        lease_ttl: float = LEASE_TTL,
        min_sleep: float = 60.0,
        max_sleep: float = 300.0,
        grace: float = 30.0,
        before_cycle: Callable[[], object] | None = None,
        on_outcomes: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        super().__init__(
            manager,
            min_sleep=min_sleep,
            max_sleep=max_sleep,
            grace=grace,
            before_cycle=before_cycle,
            on_outcomes=on_outcomes,
        )
        self.fleet = fleet
        self.concurrency = max(1, concurrency)
        self.lease_ttl = lease_ttl
        self.host = manager.storage if isinstance(manager.storage, HostFiles) else None
        self.markers = DeployMarkers(self.host.local) if self.host is not None else None
        self.working: dict[str, asyncio.Task[None]] = {}
        self._nudge = asyncio.Event()
        self._here: dict[str, int] = {}
        """Live versions this host's files are known to hold (of lineages in the schedule:
        one deleted from it since is removed from this host)."""
        self._seeded = False
        self._owed_here: set[str] = set()
        """Lineages whose deploy hooks a run of this node killed before they finished
        (a marker left on this host): run for the version this host's files hold."""
        self._deploys_owed: dict[str, tuple[int, float, float]] = {}
        """Lineages whose deploy hooks failed on this host: (version, when to try again
        (``time.monotonic()``), the wait after that try)."""
        self._follow = True
        self._retry = RETRY_FIRST
        self._synced = -SYNC_EVERY
        self._expiry_sweep_at = 0.0
        self._changed = True
        """A live version or the desired state changed since the schedule was read."""
        self.storage_up: bool | None = None
        """Whether the last round reached the storage (None: no round yet)."""
        self.storage_errors = 0
        """Rounds that could not reach the storage, since start."""
        self.storage_ok_at: float | None = None
        """When a round last reached the storage (``time.time()``)."""
        manager.deployed_here = self._deployed_here

    @property
    def node(self) -> str:
        return self.fleet.node

    def wake(self) -> None:
        self._follow = True  # SIGHUP: read certherd.toml again
        super().wake()

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(), name="fleet notifications")
        try:
            while not self._stop.is_set():
                if self._wake.is_set():
                    self._changed = True
                self._wake.clear()
                self._nudge.clear()
                wait = await self._round()
                if self._stop.is_set():
                    break
                await self._pause(wait)
        finally:
            listener.cancel()
            await self._finish_work()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _round(self) -> float:
        """One round of sync, claim and schedule; seconds to sleep after it."""
        try:
            if self._follow and self._before_cycle is not None:
                result = self._before_cycle()
                if asyncio.iscoroutine(result):
                    await result
                self._follow = False
            cap = self.max_sleep
            if self._changed:
                since = time.monotonic() - self._synced
                if since >= SYNC_EVERY:
                    self._changed = False
                    rows = await self.fleet.schedule()
                    self._synced = time.monotonic()
                    self._status_from(rows)
                    await self._sync(rows)
                else:
                    cap = SYNC_EVERY - since  # read soon, not at every notification
            if self.host is not None:
                retry_in = await self._retry_deploys()
                if retry_in is not None:
                    cap = min(cap, retry_in)
            if time.monotonic() >= self._expiry_sweep_at:
                self._expiry_sweep_at = time.monotonic() + EXPIRY_SWEEP
                await sweep_expiring(self.manager, self.fleet, self.working, self.lease_ttl)
            free = self.concurrency - len(self.working)
            for lease in await self.fleet.claim(limit=free, ttl=self.lease_ttl):
                self.working[lease.name] = asyncio.create_task(
                    self._work(lease), name=f"lineage {lease.name}"
                )
            # Every slot busy: the next round comes when one frees (no need to ask).
            full = len(self.working) >= self.concurrency
            due_in = None if full else await self.fleet.due_in()
        except StorageError as exc:
            return self._storage_down(exc)
        except CertherdError as exc:  # certherd.toml unreadable, say: the rest goes on
            self.status.last_error = describe_failure(exc, 300)
            log.error("node %s: %s", self.node, self.status.last_error)
            return self.min_sleep
        self._storage_back()
        self.storage_ok_at = time.time()
        self.status.cycles += 1
        self.status.last_cycle = self.manager.clock.now()
        if due_in is None:
            return cap
        return min(max(due_in, 0.05), cap)

    def _storage_down(self, exc: StorageError) -> float:
        self.storage_errors += 1
        self._changed = True
        if self.storage_up is not False:
            log.error(
                "node %s: the storage is unavailable; serving what is on disk, claiming "
                "nothing, trying again with backoff: %s",
                self.node,
                exc,
            )
        self.storage_up = False
        self.status.last_error = f"storage unavailable: {describe_failure(exc, 300)}"
        wait, self._retry = self._retry, min(self._retry * 2, RETRY_MAX)
        return wait

    def _storage_back(self) -> None:
        if self.storage_up is False:
            log.warning("node %s: the storage is available again", self.node)
            self.status.last_error = None
        self.storage_up = True
        self._retry = RETRY_FIRST

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or until stopped, woken, nudged (a notification) or a
        lineage's work ends (a free slot: claim again)."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._nudge.wait()),
        ]
        try:
            watched: list[asyncio.Future[Any]] = [*waiters, *self.working.values()]
            done, _ = await asyncio.wait(
                watched,
                timeout=seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                self._changed = True  # polling: read the schedule again
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _finish_work(self) -> None:
        """Stopping: the lineages in hand get ``grace`` seconds, then are cancelled
        (their leases are released; an open order is resumed by whoever is next)."""
        tasks = list(self.working.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one lineage ----------------------------------------------------------------------

    async def _work(self, lease: Lease) -> None:
        name = lease.name
        settled = False
        try:
            outcome: Outcome | None = None
            storage = self.manager.storage
            before = await self._mark(name)
            async with holding(storage, name, ttl=self.lease_ttl, granted=lease, release=False):
                outcome = await self.manager.renew_one(name)
                if outcome.action not in ("issued", "renewed"):
                    await tell_expiring(self.manager, name, outcome)  # under the lease
                if outcome.hook_errors and outcome.version is not None:
                    await self._owe_here(name, outcome.version)
                # Scheduled from the state it left, under its lease (never sooner than
                # min_sleep: a check that changed nothing is not repeated in a loop), and
                # the lease given back in the same statement; a node that lost the lease
                # leaves the schedule to the new holder.
                await self.fleet.settle(name, floor=self.min_sleep, fence=lease, release=True)
                settled = True
            if outcome.failed:
                self.status.failures_total[name] = self.status.failures_total.get(name, 0) + 1
            if outcome.action in ("issued", "renewed") and outcome.version is not None:
                self._here[name] = outcome.version  # published here: hooks ran here
                if outcome.hook_errors:  # ... and failed here: tried again here
                    retry = time.monotonic() + self.min_sleep
                    self._deploys_owed[name] = (outcome.version, retry, self.min_sleep * 2)
            if not outcome.hook_errors:
                await self._unmark(name)
            elif outcome.version is not None and self._here.get(name) != outcome.version:
                self._here[name] = outcome.version  # "deployed" (owed) failed here: retried
                retry = time.monotonic() + self.min_sleep
                self._deploys_owed[name] = (outcome.version, retry, self.min_sleep * 2)
            if self._on_outcomes is not None:
                self._on_outcomes([outcome])
        except StorageError as exc:
            log.error("node %s: %s: %s", self.node, name, exc)
            await self._switched_anyway(name, before)
        except Exception as exc:  # one lineage's trouble never stops the node
            log.error("node %s: %s: %s", self.node, name, describe_failure(exc, 300))
            log.debug("traceback", exc_info=exc)
            await self._switched_anyway(name, before)
        finally:
            if not settled:  # stopped or failed before settling: the lease goes back
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.manager.storage.release(lease))
            self.working.pop(name, None)

    # -- this host's live files -----------------------------------------------------------

    async def _sync(self, rows: dict[str, ScheduleEntry]) -> None:
        """Copy every live version this host lacks; run the deploy hooks here for each."""
        if self.host is None:
            return
        if not self._seeded:  # what this host holds already, in one scan of live/
            on_disk = await self.host.local.live_versions()
            assert self.markers is not None
            self._owed_here |= await self.markers.owed(on_disk, set(rows))
            self._here.update(
                {n: v for n, v in on_disk.items() if n in rows and n not in self._owed_here}
            )
            self._seeded = True
        for name in [n for n in self._here if n not in rows and n not in self.working]:
            await self._remove_here(name)
        behind = {
            name: entry.live
            for name, entry in rows.items()
            if entry.live is not None
            and name not in self.working
            and self._here.get(name) != entry.live
        }
        for name, version in behind.items():
            try:
                if await self.host.local.live_version(name) != version:
                    await self._mark(name)
                    await self.host.copy_live(name, version)
                    await self._deploy_here(name, version)
                elif name in self._owed_here:  # switched here by a run killed before its hooks
                    await self._deploy_here(name, version)
            except CertherdError as exc:
                log.warning("node %s: cannot bring %s's live files here: %s", self.node, name, exc)
                continue
            self._here[name] = version

    async def _remove_here(self, name: str) -> None:
        """A lineage this node saw and that was deleted since (``certherd delete`` on any
        host): its live files and archive copy leave this host too. Only lineages seen
        in the schedule by this run are removed, never what a node pointed at another
        (or an empty) database merely does not find."""
        assert self.host is not None
        try:
            await self.host.local.unpublish(name)
            for key in await self.host.local.list(archive_folder(name)):
                await self.host.local.delete(key)
            await self.host.local.forget(name)
        except CertherdError as exc:
            log.warning("node %s: cannot remove %s from this host: %s", self.node, name, exc)
            return
        self._here.pop(name, None)
        self._deploys_owed.pop(name, None)
        log.warning("node %s: %s was deleted: removed from this host", self.node, name)

    async def _deploy_here(self, name: str, version: int) -> None:
        """The deploy hooks and installer of ``name`` on this host, for ``version``
        (obtained by another node); a failure is tried again next round."""
        try:
            settings = await LineageSettings.load(self.manager.storage, name)
        except CertherdError as exc:
            log.warning("node %s: cannot read the settings of %s: %s", self.node, name, exc)
            return
        errors = await run_lineage_hooks("deploy", settings, self.manager.storage, version)
        errors += await self.manager._after_deploy(settings)
        if errors:
            owed = self._deploys_owed.get(name)
            wait = owed[2] if owed is not None and owed[0] == version else self.min_sleep
            self._deploys_owed[name] = (
                version,
                time.monotonic() + wait,
                min(wait * 2, DEPLOY_RETRY_MAX),
            )
            for problem in errors:
                log.error("node %s: %s: deploy on this host failed: %s", self.node, name, problem)
        else:
            self._deploys_owed.pop(name, None)
            self._owed_here.discard(name)
            await self._unmark(name)
            if settings.hooks.deploy or settings.installer:
                log.info("node %s: %s v%d deployed on this host", self.node, name, version)

    def _deployed_here(self, name: str, version: int) -> bool:
        """For the manager: this host ran (or retries itself) the deploy of ``version``,
        after copying it from another node's work, so a deploy the shared state still
        owes (the obtaining node died before its hooks) is not run here a second time."""
        return (
            self.host is not None
            and self._here.get(name) == version
            and name not in self._owed_here
        )

    async def _mark(self, name: str) -> int | None:
        """Before this host's files of ``name`` may switch (:mod:`.markers`)."""
        return None if self.markers is None else await self.markers.mark(name)

    async def _unmark(self, name: str) -> None:
        if self.markers is not None:
            await self.markers.unmark(name)

    async def _switched_anyway(self, name: str, before: int | None) -> None:
        """Work on ``name`` failed: if this host's files switched meanwhile, their deploy
        hooks are owed here (tried again like a failed deploy)."""
        if self.host is None:
            return
        with contextlib.suppress(CertherdError, ValueError):
            now = await self.host.local.live_version(name)
            if now is not None and now != before and self._here.get(name) != now:
                self._here[name] = now
                self._owed_here.add(name)
                self._deploys_owed[name] = (
                    now,
                    time.monotonic() + self.min_sleep,
                    self.min_sleep * 2,
                )

    async def _owe_here(self, name: str, version: int) -> None:
        """The deploy of ``version`` failed on this host: this node tries it again here
        (:meth:`_retry_deploys`), so the lineage's shared state does not keep it owed
        (another node would claim it and deploy on its own host instead)."""
        state = await LineageState.load(self.manager.storage, name)
        if state.deploy_owed and state.version == version:
            await dataclasses.replace(state, deploy_owed=False).save(self.manager.storage)

    async def _retry_deploys(self) -> float | None:
        """Run again the deploy hooks that failed on this host and are due (backoff:
        ``min_sleep`` doubling to an hour); seconds until the next such try, if any."""
        now = time.monotonic()
        for name, (version, when, _) in list(self._deploys_owed.items()):
            if when <= now and name not in self.working and self._here.get(name) == version:
                await self._deploy_here(name, version)
        tries = [when for _, when, _ in self._deploys_owed.values()]
        return max(min(tries) - time.monotonic(), 0.05) if tries else None

    # -- status, notifications ------------------------------------------------------------

    def _status_from(self, rows: dict[str, ScheduleEntry]) -> None:
        """Metrics and health from the schedule (one query, not one state per lineage)."""
        self.status.states = {
            name: LineageState(
                name=name,
                version=entry.live,
                not_after=entry.not_after,
                next_check=entry.due,
                last_success=entry.obtained,
            )
            for name, entry in rows.items()
        }

    def collectors(self) -> list[Any]:
        from certherd.daemon.fleetmetrics import StorageCollector

        return [StorageCollector(self)]

    def _told(self, channel: str, lineage: str) -> None:
        """A notification: new desired state (claim now) or a live version (sync)."""
        if channel == "certherd_live":
            self._changed = True
        self._nudge.set()

    async def _listen(self) -> None:
        """LISTEN for other nodes' changes; reconnect with backoff (polling meanwhile).

        Each time listening starts (the first time and after a lost connection), the
        schedule is read again and claimed from: a change committed before the LISTEN
        took effect was not heard, and would otherwise wait for the next poll."""
        pause = RETRY_FIRST
        while True:
            ready = asyncio.Event()
            heard = asyncio.create_task(self._listening(ready), name="fleet listening")
            try:
                await self.fleet.changes(self._told, ready=ready)
            except StorageError as exc:
                log.debug("node %s: notifications unavailable: %s", self.node, exc)
            except Exception as exc:  # a notification connection must never end the node
                log.debug("node %s: notifications failed", self.node, exc_info=exc)
            finally:
                heard.cancel()
            if ready.is_set():
                pause = RETRY_FIRST  # it listened: a new loss starts the backoff again
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    async def _listening(self, ready: asyncio.Event) -> None:
        """Once ``ready`` (LISTEN took effect): as if every change had been notified."""
        await ready.wait()
        self._changed = True
        self._nudge.set()
