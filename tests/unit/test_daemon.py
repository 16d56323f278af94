"""The daemon: how long it sleeps, what health and metrics say, and how fast it stops.

The daemon only uses ``manager.renew``, ``manager.lineages``, ``manager.storage`` and
``manager.clock``, so a small stub stands in for the Manager: its ``renew`` returns
scripted outcomes, raises, or blocks until the test lets it go. Time is a FakeClock;
the only real waits are the few milliseconds a stop takes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakes import START, FakeClock

from certherd.daemon.loop import Daemon
from certherd.errors import StorageError
from certherd.manager.lineage import LineageState
from certherd.manager.outcome import Outcome
from certherd.storage import MemoryStorage
from certherd.storage.layout import renewal_settings, state_file

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class StubManager:
    """What the Daemon needs of a Manager, and no more."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.clock = FakeClock()
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None
        self.block = False
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0
        self.cancelled = False
        self.finished = False
        self.on_renew: Callable[[], None] | None = None

    async def renew(self) -> list[Outcome]:
        self.calls += 1
        self.started.set()
        if self.on_renew is not None:
            self.on_renew()
        if self.error is not None:
            raise self.error
        if self.block:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.finished = True
        return list(self.outcomes)

    async def lineages(self) -> list[str]:
        keys = await self.storage.list("renewal")
        return [k.removeprefix("renewal/").removesuffix(".json") for k in keys]

    async def add(self, name: str, **state: Any) -> None:
        await self.storage.write(renewal_settings(name), b"{}")
        await LineageState(name=name, version=1, **state).save(self.storage)

    async def remove(self, name: str) -> None:
        await self.storage.delete(renewal_settings(name))
        await self.storage.delete(state_file(name))


@pytest.fixture
def manager() -> StubManager:
    return StubManager()


def daemon_for(manager: StubManager, **options: Any) -> Daemon:
    options.setdefault("min_sleep", 60.0)
    options.setdefault("max_sleep", 6 * 3600.0)
    return Daemon(manager, **options)  # type: ignore[arg-type]


# -- how long to sleep ----------------------------------------------------------------


async def test_nothing_known_looks_again_in_minutes(manager: StubManager) -> None:
    """No lineage known yet (or the last cycle failed): a new one from `issue` or
    certherd.toml is picked up within FAILED_CYCLE_RETRY, not after max_sleep."""
    from certherd.daemon.loop import FAILED_CYCLE_RETRY

    daemon = daemon_for(manager)
    assert daemon.next_sleep() == FAILED_CYCLE_RETRY
    await daemon.cycle()
    assert daemon.next_sleep() == FAILED_CYCLE_RETRY


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([{"next_check": START + 2 * HOUR}], 7200.0),
        ([{"next_check": START + 30 * DAY}], 6 * 3600.0),
        ([{"next_check": START - DAY}], 60.0),
        ([{"next_check": START + dt.timedelta(seconds=10)}], 60.0),
        ([{"next_check": START + 5 * HOUR, "ari_retry_at": START + HOUR}], 3600.0),
        ([{"next_check": START + 3 * HOUR}, {"next_check": START + 2 * HOUR}], 7200.0),
        ([{"next_check": START + 3 * HOUR}, {}], 3 * 3600.0),
    ],
    ids=[
        "in two hours",
        "far away",
        "overdue",
        "very soon",
        "ari retry first",
        "earliest lineage",
        "a lineage without times",
    ],
)
async def test_sleep_until_the_earliest_check_within_bounds(
    manager: StubManager, states: list[dict[str, Any]], expected: float
) -> None:
    for number, state in enumerate(states):
        await manager.add(f"l{number}.example", **state)
    daemon = daemon_for(manager)
    await daemon.cycle()
    assert daemon.next_sleep() == expected
    assert daemon.min_sleep <= daemon.next_sleep() <= daemon.max_sleep


async def test_sleep_follows_the_clock(manager: StubManager) -> None:
    await manager.add("a.example", next_check=START + 2 * HOUR)
    daemon = daemon_for(manager)
    await daemon.cycle()
    await manager.clock.sleep(3600)
    assert daemon.next_sleep() == 3600.0


async def test_sleep_uses_what_the_last_cycle_learned(manager: StubManager) -> None:
    await manager.add("a.example", next_check=START + 2 * HOUR)
    daemon = daemon_for(manager)
    await daemon.cycle()
    await manager.add("a.example", next_check=START + 4 * HOUR)
    assert daemon.next_sleep() == 7200.0, "no storage read between cycles"
    await daemon.cycle()
    assert daemon.next_sleep() == 4 * 3600.0


async def test_a_deleted_lineage_no_longer_sets_the_sleep(manager: StubManager) -> None:
    await manager.add("a.example", next_check=START + 2 * HOUR)
    await manager.add("b.example", next_check=START + 5 * HOUR)
    daemon = daemon_for(manager)
    await daemon.cycle()
    await manager.remove("a.example")
    await daemon.cycle()
    assert daemon.next_sleep() == 5 * 3600.0


# -- health and metrics ---------------------------------------------------------------


async def test_healthy_when_nothing_expired(manager: StubManager) -> None:
    await manager.add("a.example", not_after=START + DAY)
    daemon = daemon_for(manager)
    assert daemon.health() is None
    await daemon.cycle()
    assert daemon.health() is None


async def test_health_reports_expired_lineages(manager: StubManager) -> None:
    await manager.add("z.example", not_after=START - DAY)
    await manager.add("a.example", not_after=START)
    await manager.add("m.example", not_after=START + HOUR)
    await manager.add("new.example")
    daemon = daemon_for(manager)
    await daemon.cycle()
    assert daemon.health() == "expired: a.example, z.example"
    await manager.clock.sleep(2 * 3600)
    assert daemon.health() == "expired: a.example, m.example, z.example"


async def test_a_renewed_or_deleted_lineage_is_healthy_again(manager: StubManager) -> None:
    await manager.add("a.example", not_after=START - DAY)
    await manager.add("b.example", not_after=START - DAY)
    daemon = daemon_for(manager)
    await daemon.cycle()
    assert daemon.health() == "expired: a.example, b.example"
    await manager.add("a.example", not_after=START + 90 * DAY)
    await manager.remove("b.example")
    await daemon.cycle()
    assert daemon.health() is None
    assert [m.lineage for m in daemon.metrics()] == ["a.example"]


async def test_metrics_follow_the_states_and_count_failures(manager: StubManager) -> None:
    success = START - DAY
    await manager.add(
        "b.example",
        not_after=START + 60 * DAY,
        next_check=START + 30 * DAY,
        last_success=success,
    )
    await manager.add("a.example", not_after=START + DAY, ari_pick=START + HOUR)
    manager.outcomes = [Outcome("a.example", "failed", "due", error="boom")]
    daemon = daemon_for(manager)
    await daemon.cycle()
    await daemon.cycle()
    first, second = daemon.metrics()
    assert first.lineage == "a.example"
    assert first.failures == 2
    assert first.next_renewal == START + HOUR, "the ARI pick comes first"
    assert second.lineage == "b.example"
    assert second.failures == 0
    assert second.next_renewal == START + 30 * DAY
    assert second.not_after == START + 60 * DAY
    assert second.last_success == success
    assert daemon.status.cycles == 2
    assert daemon.status.last_cycle == START


async def test_a_failed_cycle_is_reported_by_health_until_one_succeeds(
    manager: StubManager,
) -> None:
    daemon = daemon_for(manager)
    manager.error = StorageError("cannot read /etc/certherd/state: the disk is gone")

    def stop_after_one_cycle() -> None:
        daemon.stop()

    manager.on_renew = stop_after_one_cycle
    await asyncio.wait_for(daemon.run(), 5)
    assert daemon.health() == "cannot read /etc/certherd/state: the disk is gone"
    manager.error = None
    await daemon.cycle()
    assert daemon.health() is None


async def test_an_unexpected_error_fails_the_cycle_not_the_daemon(manager: StubManager) -> None:
    """Issue 9.3: an exception that is not certherd's own is reported, and the daemon goes
    on to its next cycle instead of exiting."""
    daemon = daemon_for(manager, min_sleep=0.01, max_sleep=0.01)
    manager.error = RuntimeError("a bug")

    def stop_after_two_cycles() -> None:
        if manager.calls >= 2:
            daemon.stop()

    manager.on_renew = stop_after_two_cycles
    await asyncio.wait_for(daemon.run(), 5)
    assert manager.calls == 2
    assert daemon.health() == "unexpected RuntimeError: a bug"


async def test_before_cycle_and_on_outcomes_run_each_cycle(manager: StubManager) -> None:
    seen: list[str] = []
    manager.outcomes = [Outcome("a.example", "not-due", "not yet")]

    async def before() -> None:
        seen.append("before")

    daemon = daemon_for(
        manager,
        before_cycle=before,
        on_outcomes=lambda outcomes: seen.append(outcomes[0].action),
    )
    await daemon.cycle()
    assert seen == ["before", "not-due"]


# -- stopping -------------------------------------------------------------------------


async def stop_and_time(daemon: Daemon, running: asyncio.Task[None]) -> float:
    started = time.monotonic()
    daemon.stop()
    await asyncio.wait_for(running, 5)
    return time.monotonic() - started


async def test_stop_while_sleeping_returns_at_once(manager: StubManager) -> None:
    slept = asyncio.Event()
    daemon = daemon_for(manager, on_outcomes=lambda _: slept.set())
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(slept.wait(), 5)
    await asyncio.sleep(0)  # now waiting for the next cycle (six hours away)
    assert await stop_and_time(daemon, running) < 0.5
    assert manager.calls == 1


async def test_stop_during_a_stuck_renewal_returns_within_the_grace(
    manager: StubManager,
) -> None:
    manager.block = True
    daemon = daemon_for(manager, grace=0.2)
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(manager.started.wait(), 5)
    elapsed = await stop_and_time(daemon, running)
    assert 0.15 <= elapsed < 1.0
    assert manager.cancelled, "the stuck renewal is cancelled once the grace is over"
    assert not manager.finished
    assert manager.calls == 1


async def test_a_renewal_finishing_within_the_grace_completes(manager: StubManager) -> None:
    await manager.add("a.example", not_after=START + DAY)
    manager.block = True
    daemon = daemon_for(manager, grace=5.0)
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(manager.started.wait(), 5)
    daemon.stop()
    await asyncio.sleep(0.05)
    assert not running.done(), "a renewal under way gets its grace period"
    started = time.monotonic()
    manager.release.set()
    await asyncio.wait_for(running, 5)
    assert time.monotonic() - started < 0.5
    assert manager.finished
    assert not manager.cancelled
    assert daemon.status.cycles == 1
    assert set(daemon.status.states) == {"a.example"}


async def test_metrics_and_health_know_storage_before_the_first_cycle_ends(
    manager: StubManager,
) -> None:
    """A first cycle renewing many lineages takes minutes: meanwhile /metrics lists what
    storage holds and /health reports an expired certificate, rather than nothing."""
    await manager.add("expired.example", not_after=START - DAY)
    await manager.add("fine.example", not_after=START + 30 * DAY)
    manager.block = True
    daemon = daemon_for(manager, grace=0.2)
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(manager.started.wait(), 5)
    assert daemon.status.cycles == 0
    assert [m.lineage for m in daemon.metrics()] == ["expired.example", "fine.example"]
    assert daemon.health() == "expired: expired.example"
    await stop_and_time(daemon, running)


async def test_stop_before_run_does_nothing(manager: StubManager) -> None:
    daemon = daemon_for(manager)
    daemon.stop()
    assert daemon.stopping
    await asyncio.wait_for(daemon.run(), 1)
    assert manager.calls == 0


async def test_the_daemon_cycles_again_after_its_sleep(manager: StubManager) -> None:
    cycles = asyncio.Event()
    seen: list[int] = []

    def count(_: list[Outcome]) -> None:
        seen.append(1)
        if len(seen) >= 3:
            cycles.set()

    daemon = daemon_for(manager, min_sleep=0.01, max_sleep=0.01, on_outcomes=count)
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(cycles.wait(), 5)
    await stop_and_time(daemon, running)
    assert manager.calls >= 3


async def test_wake_ends_the_sleep_for_a_new_cycle(manager: StubManager) -> None:
    seen: list[float] = []
    second = asyncio.Event()

    def count(_: list[Outcome]) -> None:
        seen.append(time.monotonic())
        if len(seen) == 2:
            second.set()

    daemon = daemon_for(manager, min_sleep=3600.0, max_sleep=3600.0, on_outcomes=count)
    running = asyncio.create_task(daemon.run())
    while not seen:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(seen) == 1, "asleep for an hour"
    woken = time.monotonic()
    daemon.wake()
    await asyncio.wait_for(second.wait(), 5)
    assert seen[1] - woken < 1.0
    await asyncio.sleep(0.05)
    assert len(seen) == 2, "one wake, one cycle"
    await stop_and_time(daemon, running)


async def test_wake_during_a_cycle_runs_one_more(manager: StubManager) -> None:
    manager.block = True
    daemon = daemon_for(manager, min_sleep=3600.0, max_sleep=3600.0)
    running = asyncio.create_task(daemon.run())
    await asyncio.wait_for(manager.started.wait(), 5)
    daemon.wake()  # asked while the first cycle is still under way
    manager.block = False
    manager.release.set()
    deadline = time.monotonic() + 5
    while manager.calls < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert manager.calls == 2
    await asyncio.sleep(0.05)
    assert manager.calls == 2
    await stop_and_time(daemon, running)
