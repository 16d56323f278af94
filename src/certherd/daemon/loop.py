"""The renewal daemon: sleep until the next lineage is due, renew, repeat.

Each cycle runs ``renew`` over every lineage (which re-checks ARI when the CA's
Retry-After has passed), then sleeps until the earliest ``next_check`` of any lineage,
bounded by ``min_sleep`` and ``max_sleep``. Metrics (expiry, next renewal, failures per
lineage) and health are served from what the last cycle learned, never by reading
storage during a scrape. ``stop()`` (SIGTERM) ends the sleep at once; a renewal under
way gets ``grace`` seconds to finish before it is cancelled. ``wake()`` (SIGHUP) ends
the sleep too, for a new cycle at once: the config file is read again and what it
changed is applied now rather than at the next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from certherd.daemon.metrics import LineageMetrics
from certherd.errors import CertherdError, StorageError
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import describe_failure
from certherd.manager.service import Manager, Outcome

__all__ = ["Daemon", "DaemonStatus", "raise_open_file_limit"]

FAILED_CYCLE_RETRY = 300.0
STORAGE_RETRY_FIRST = 1.0
STORAGE_RETRY_MAX = 60.0
"""Seconds between two tries while the storage does not answer: 1 doubling to 60."""
OPEN_FILE_LIMIT = 65536
"""The most descriptors the daemon asks for (when the hard limit allows it)."""


def raise_open_file_limit(cap: int = OPEN_FILE_LIMIT) -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (at most ``cap``); (before, after).

    A service gets a soft limit of 1024 by default (systemd, most shells), which a burst
    of connections to the metrics port, a fleet's CA connections and hooks can use up;
    systemd.exec(5) asks programs that need more to raise it themselves. asyncio waits
    with epoll, so descriptors above 1024 are fine here. Never lowers the limit; a
    refusal (a hard limit set lower meanwhile) leaves it as it was.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


log = logging.getLogger(__name__)


@dataclass
class DaemonStatus:
    """What the daemon knows now: per-lineage state and counters, for metrics/health."""

    states: dict[str, LineageState] = field(default_factory=dict)
    failures_total: dict[str, int] = field(default_factory=dict)
    cycles: int = 0
    last_cycle: dt.datetime | None = None
    last_error: str | None = None


class Daemon:
    """Runs renewal cycles until stopped. One per process."""

    def __init__(
        self,
        manager: Manager,
        *,
        min_sleep: float = 60.0,
        max_sleep: float = 6 * 3600.0,
        grace: float = 30.0,
        before_cycle: Callable[[], object] | None = None,
        on_outcomes: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.manager = manager
        self.min_sleep = min_sleep
        self.max_sleep = max_sleep
        self.grace = grace
        self.status = DaemonStatus()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._before_cycle = before_cycle
        self._on_outcomes = on_outcomes
        self.storage_up: bool | None = None
        """Whether the last cycle reached the storage (None: no cycle yet)."""
        self.storage_errors = 0
        """Cycles that could not reach the storage, since start."""
        self.storage_ok_at: float | None = None
        """When a cycle last reached the storage (``time.time()``)."""
        self._storage_retry = STORAGE_RETRY_FIRST

    def stop(self) -> None:
        """Ask the daemon to stop (safe from a signal handler on the loop)."""
        self._stop.set()

    def wake(self) -> None:
        """Start a cycle now (after the one under way, if any); safe from a signal handler."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def metrics(self) -> Iterable[LineageMetrics]:
        for name, state in sorted(self.status.states.items()):
            yield LineageMetrics(
                lineage=name,
                not_after=state.not_after,
                next_renewal=state.ari_pick or state.next_check,
                failures=self.status.failures_total.get(name, 0),
                last_success=state.last_success,
            )

    def collectors(self) -> list[Any]:
        """More ``prometheus_client`` collectors for ``/metrics``: on a shared database,
        whether it is reached (``certherd_storage_up``); none on a config dir."""
        from certherd.storage.fleet import fleet_of

        if fleet_of(self.manager.storage) is None:
            return []
        from certherd.daemon.fleetmetrics import StorageCollector

        return [StorageCollector(self)]

    def _storage_failed(self, error: StorageError) -> float:
        """A cycle could not reach the storage: say so once, count it; seconds until
        the next try (1 s doubling to a minute)."""
        self.storage_errors += 1
        if self.storage_up is not False:
            log.error(
                "the storage is unavailable; serving what is on disk, trying again with "
                "backoff: %s",
                error,
            )
        self.storage_up = False
        wait = self._storage_retry
        self._storage_retry = min(wait * 2, STORAGE_RETRY_MAX)
        return wait

    def _storage_answered(self) -> None:
        if self.storage_up is False:
            log.warning("the storage is available again")
        self.storage_up = True
        self.storage_ok_at = time.time()
        self._storage_retry = STORAGE_RETRY_FIRST

    def health(self) -> str | None:
        """None when healthy; else why not (a lineage expired, or the last cycle failed)."""
        now = self.manager.clock.now()
        expired = [n for n, s in self.status.states.items() if s.not_after and s.not_after <= now]
        if expired:
            return f"expired: {', '.join(sorted(expired))}"
        return self.status.last_error

    async def refresh_status(self) -> None:
        """Read every lineage's state from storage into the status (metrics, health)."""
        # A fresh map: a deleted lineage must stop counting for health, metrics and sleep.
        states: dict[str, LineageState] = {}
        for name in await self.manager.lineages():
            try:
                states[name] = await LineageState.load(self.manager.storage, name)
            except CertherdError:
                continue  # a damaged state file: renew reports it; the rest still count
        self.status.states = states

    async def cycle(self) -> list[Outcome]:
        """One pass: renew what is due, then refresh the status."""
        if self._before_cycle is not None:
            result = self._before_cycle()
            if asyncio.iscoroutine(result):
                await result
        outcomes = await self.manager.renew()
        for outcome in outcomes:
            if outcome.failed:
                self.status.failures_total[outcome.lineage] = (
                    self.status.failures_total.get(outcome.lineage, 0) + 1
                )
        await self.refresh_status()
        self.status.cycles += 1
        self.status.last_cycle = self.manager.clock.now()
        self.status.last_error = None
        if self._on_outcomes is not None:
            self._on_outcomes(outcomes)
        return outcomes

    def next_sleep(self) -> float:
        """Seconds until the earliest next check, within [min_sleep, max_sleep]."""
        now = self.manager.clock.now()
        moments = [
            moment
            for state in self.status.states.values()
            for moment in (state.next_check, state.ari_retry_at)
            if moment is not None
        ]
        if not moments:
            # Nothing known (or the last cycle failed): look again soon, not in hours.
            return min(self.max_sleep, max(self.min_sleep, FAILED_CYCLE_RETRY))
        seconds = (min(moments) - now).total_seconds()
        return min(max(seconds, self.min_sleep), self.max_sleep)

    async def run(self) -> None:
        """Cycle until :meth:`stop`."""
        # What storage holds is served from the start: a first cycle renewing many
        # lineages takes minutes, and meanwhile /metrics and /health must not be empty
        # (an expired certificate is unhealthy before any cycle ends).
        retry: float | None = None
        try:
            await self.refresh_status()
        except StorageError as exc:
            retry = self._storage_failed(exc)
        except CertherdError as exc:
            log.error("cannot read the lineages: %s", exc)
        if retry is not None:
            await self._sleep(retry)
        while not self._stop.is_set():
            retry = None
            self._wake.clear()  # a wake() from now on asks for one more cycle
            work = asyncio.ensure_future(self.cycle())
            stopper = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # Stopping during a renewal: let it finish within the grace period.
                await asyncio.wait({work}, timeout=self.grace)
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            if work.done() and not work.cancelled():
                error = work.exception()
                if error is not None:
                    # Any exception (issue 9.3): the cycle failed, the daemon goes on and
                    # health says why; the next cycle comes after FAILED_CYCLE_RETRY.
                    self.status.last_error = describe_failure(error, 300)
                    if isinstance(error, StorageError):
                        retry = self._storage_failed(error)
                    else:
                        log.error("renewal cycle failed: %s", self.status.last_error)
                    if not isinstance(error, CertherdError):
                        log.debug("the cycle's traceback", exc_info=error)
                else:
                    self._storage_answered()
            if self._stop.is_set():
                break
            sleep = self.next_sleep()
            await self._sleep(sleep if retry is None else min(sleep, retry))

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`stop` or :meth:`wake` is called."""
        waiters = [
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
