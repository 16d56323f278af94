"""The fleet's schedule and work split in a real PostgreSQL (certherd.storage.pgfleet):
the schedule follows every write in its transaction, claims of several nodes at once are
disjoint and grant fenced leases, a node that settles a lineage is not handed it again
at once, one node's rate limit holds every node back from that CA, and a node that starts
listening late reads the schedule again."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.servers.postgres import PostgresServer

from certherd.errors import FencedError
from certherd.storage.base import Lease
from certherd.storage.fleet import fleet_of, node_of
from certherd.storage.leases import holding
from certherd.storage.postgresql import PostgresStorage
from certherd.testing.pebble import PebbleServer

CA = "https://ca.example/dir"


def settings(name: str, *, fallback: bool = False) -> bytes:
    document = {"names": [f"{name}.test"], "directory_url": CA, "fallback_cas": []}
    if fallback:
        document["fallback_cas"] = [{"directory_url": "https://other.example/dir"}]
    return json.dumps(document).encode()


def state(name: str, next_check: dt.datetime, *, version: int | None = 1) -> bytes:
    return json.dumps(
        {"name": name, "version": version, "next_check": next_check.isoformat()}
    ).encode()


async def test_claims_of_three_nodes_at_once_are_disjoint_and_fenced(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    url = postgres.url(database)
    nodes = [PostgresStorage(url, node=f"node{n}") for n in range(3)]
    try:
        for n in range(60):
            await nodes[0].write(f"renewal/l{n:03}.json", settings(f"l{n:03}"))

        async def claim_all(node: PostgresStorage) -> list[Lease]:
            """Claim until nothing is left (a round may get fewer than asked: rows
            another claim had locked are skipped, not waited for)."""
            leases: list[Lease] = []
            while found := await node.claim(limit=7, ttl=60):
                leases += found
            return leases

        claims = await asyncio.gather(*(claim_all(node) for node in nodes))
        names = [lease.name for leases in claims for lease in leases]
        assert len(names) == len(set(names)) == 60  # every due lineage once, none twice
        for node, leases in zip(nodes, claims, strict=True):
            assert all(node_of(lease.holder) == node.node for lease in leases)
        # Nothing is claimable while held; the leases are real: the next grant fences.
        assert await nodes[1].claim(limit=100, ttl=60) == []
        lease = claims[0][0]
        await nodes[0].write(f"state/{lease.name}.json", b"{}", fence=lease)
        await nodes[0].release(lease)
        again = await nodes[2].acquire(lease.name, ttl=60, wait=0)
        assert again.token > lease.token
        try:
            await nodes[0].write(f"state/{lease.name}.json", b"{}", fence=lease)
        except FencedError:
            pass
        else:
            raise AssertionError("a write under a lease granted again was not refused")
    finally:
        for node in nodes:
            await node.aclose()


async def test_the_schedule_follows_settings_state_and_live_writes(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    store = PostgresStorage(postgres.url(database), node="alpha")
    try:
        fleet = fleet_of(store)
        assert fleet is store
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        await store.write("renewal/a.json", settings("a"))
        entry = (await store.schedule())["a"]
        assert entry.due <= dt.datetime.now(dt.UTC)
        assert entry.ca == CA
        assert entry.live is None
        async with holding(store, "a") as lease:
            await store.write("state/a.json", state("a", later), fence=lease)
            await store.write("live/a.json", b'{"version": 1}', fence=lease)
        entry = (await store.schedule())["a"]
        assert abs((entry.due - later).total_seconds()) < 1
        assert entry.live == 1
        assert entry.obtained is not None
        assert node_of(entry.obtained_by) == "alpha"
        # A lineage with fail-over CAs is never held back as a whole.
        await store.write("renewal/b.json", settings("b", fallback=True))
        assert (await store.schedule(["b"]))["b"].ca is None
        # Settled: due at its state's moment, or at least `floor` from now.
        await store.write("renewal/a.json", settings("a") + b" ")
        assert (await store.schedule(["a"]))["a"].due <= dt.datetime.now(dt.UTC)
        settled = await store.settle("a", floor=60)
        assert settled is not None
        assert abs((settled - later).total_seconds()) < 1
        await store.write("state/c.json", state("c", dt.datetime.now(dt.UTC)))
        await store.write("renewal/c.json", settings("c"))
        soon = await store.settle("c", floor=60)
        assert soon is not None
        assert soon > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=50)
        # Settled and given back in one statement: free at once for the next holder.
        lease = await store.acquire("c", ttl=60, wait=0)
        await store.settle("c", floor=60, fence=lease, release=True)
        assert "c" not in await store.held()
        # Settled by a holder that lost the lease: the schedule stays the new holder's.
        newer = await store.acquire("c", ttl=60, wait=0)
        assert await store.settle("c", floor=3600, fence=lease, release=True) is None
        assert "c" in await store.held()
        await store.release(newer)
        await store.delete("renewal/a.json")
        assert "a" not in await store.schedule()
    finally:
        await store.aclose()


async def test_one_nodes_rate_limit_holds_every_node_back_from_that_ca(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    url = postgres.url(database)
    first, second = PostgresStorage(url, node="first"), PostgresStorage(url, node="second")
    try:
        await first.write("renewal/one.json", settings("one"))
        await first.write("renewal/two.json", settings("two", fallback=True))
        await first.hold_back(CA, seconds=3600, reason="rateLimited: too many certificates")
        held = await second.held_back()
        assert held[CA].reason.startswith("rateLimited")
        assert node_of(held[CA].by) == "first"
        claimed = await second.claim(limit=10, ttl=60)
        assert [lease.name for lease in claimed] == ["two"]  # the other CA may still serve it
        wait = await second.due_in()
        # "one" waits for its CA (an hour); "two" is claimable when its lease expires.
        assert wait is not None
        assert 50 < wait <= 60
        # A shorter backoff never shortens a longer one.
        await second.hold_back(CA, seconds=1, reason="shorter")
        assert (await first.held_back())[CA].reason.startswith("rateLimited")
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_key_outside_every_folder_is_written(postgres: PostgresServer) -> None:
    """The schedule's trigger sees every write: one of a key with no folder (index.json,
    the filesystem's renewal index) must pass through it untouched."""
    store = PostgresStorage(postgres.url(postgres.database()))
    try:
        await store.write("index.json", b"{}")
        await store.write("x", b"1")
        assert await store.read("index.json") == b"{}"
        await store.delete("x")
    finally:
        await store.aclose()


async def test_a_fleet_node_needs_a_storage_that_keeps_a_schedule(tmp_path: Path) -> None:
    from certherd.app import Certherd
    from certherd.errors import ConfigError

    async with Certherd(tmp_path / "config") as certherd:
        with pytest.raises(ConfigError, match="shared storage"):
            await certherd.run(node=True, signals=False)


class SlowListener:
    """The fleet of ``storage``, whose LISTEN takes effect only once ``go`` is set (a
    notification connection slower than the node's first round); it notes each claim."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.go = asyncio.Event()
        self.claimed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    async def changes(self, on_change: Callable[[str, str], None], **options: Any) -> None:
        await self.go.wait()
        await self.storage.changes(on_change, **options)

    async def claim(self, *, limit: int, ttl: float) -> list[Lease]:
        leases = await self.storage.claim(limit=limit, ttl=ttl)
        self.claimed += [lease.name for lease in leases]
        return leases


async def test_a_change_before_the_node_listens_is_claimed_once_it_listens(
    postgres: PostgresServer,
) -> None:
    """A lineage added after a node's first round but before its LISTEN took effect is
    not notified to it: the node reads the schedule again once listening, instead of
    sleeping until its next poll (max_sleep, 300 s here)."""
    from certherd.daemon.node import FleetNode
    from certherd.manager.service import Manager

    url = postgres.url(postgres.database())
    storage, other = PostgresStorage(url, node="slow"), PostgresStorage(url, node="other")
    fleet = SlowListener(storage)
    node = FleetNode(Manager(storage), fleet, min_sleep=60, max_sleep=300, grace=1)  # type: ignore[arg-type]
    running = asyncio.create_task(node.run())
    try:
        async with asyncio.timeout(30):
            while node.status.cycles < 1:  # its first round: an empty schedule
                await asyncio.sleep(0.02)
        await other.write("renewal/late.json", settings("late"))  # notified, not heard
        fleet.go.set()
        deadline = time.monotonic() + 15
        while "late" not in fleet.claimed:
            assert time.monotonic() < deadline, "the node never claimed what it did not hear"
            await asyncio.sleep(0.02)
    finally:
        node.stop()
        await running
        await storage.aclose()
        await other.aclose()


async def test_a_lease_that_ran_out_before_finalize_is_renewed_so_no_node_takes_over(
    pebble: PebbleServer, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose lease ran out while it stalled (renewals too late, on a starved
    machine), not granted again yet, passes the fenced write before finalize; another
    node could then take the lineage over, resume the same order and finalize it too (a
    CA that does not mark the order processing at once issues twice: Pebble does, now
    and then). The lease is renewed for its whole time right before finalize instead."""
    from certherd.acme.client import AcmeClient
    from certherd.challenges.spec import SolverSpec
    from certherd.errors import LockTimeoutError
    from certherd.manager import obtain
    from certherd.manager.service import Manager
    from certherd.settings import LineageSettings

    url = postgres.url(postgres.database())
    storage, other = PostgresStorage(url, node="a"), PostgresStorage(url, node="b")
    name = "stalled.fleet.test"
    port = pebble.options.http_port
    await LineageSettings(
        name=name,
        names=(name,),
        directory_url=pebble.directory_url,
        ca_bundle=str(pebble.ca_bundle),
        solvers=(SolverSpec("http", {"listen": f"127.0.0.1:{port}"}),),
        agree_tos=True,
    ).save(storage)
    taken: list[bool] = []
    finalize, build_csr = AcmeClient.finalize, obtain.build_csr

    async def finalize_once_taken_over(client: AcmeClient, *args: Any) -> Any:
        try:  # another node, the moment this one finalizes
            lease = await other.acquire(name, ttl=5, wait=0)
        except LockTimeoutError:
            taken.append(False)
        else:
            taken.append(True)
            await other.release(lease)
        return await finalize(client, *args)

    def stalled_build_csr(*args: Any, **options: Any) -> Any:
        time.sleep(1.5)  # right before finalize, this process stalls past its lease
        return build_csr(*args, **options)

    monkeypatch.setattr(AcmeClient, "finalize", finalize_once_taken_over)
    monkeypatch.setattr(obtain, "build_csr", stalled_build_csr)
    manager = Manager(storage)
    try:
        [lease] = await storage.claim(limit=1, ttl=1)  # granted for 1 s; renewed every 10 s
        async with holding(storage, name, ttl=30, granted=lease, release=False):
            outcome = await manager.renew_one(name)
        assert taken == [False], "another node took the lineage over during its finalize"
        assert (outcome.action, outcome.version) == ("renewed", 1), outcome
    finally:
        await manager.aclose()
        await storage.aclose()
        await other.aclose()
