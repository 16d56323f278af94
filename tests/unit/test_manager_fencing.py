"""The manager's writes of a lineage carry its lease: a run paused past its lease (its
renewals stopped, as under SIGSTOP) cannot overwrite what the next holder wrote.

In process, on memory storage and the hand-written ACME server: the paused run waits
inside its work (opening the CA client) with renewals held back until its lease
expired; another holder is granted the lineage and saves its state; the paused run then
resumes, gets its certificate, and every write it tries is refused.
"""

from __future__ import annotations

import asyncio

import pytest
from fakes import FakeClock, HostileAcmeServer

from certherd.acme import AcmeClient
from certherd.challenges.spec import SolverSpec
from certherd.errors import CertherdError, FencedError
from certherd.manager import hygiene
from certherd.manager.accounts import CaOptions
from certherd.manager.lineage import LineageState
from certherd.manager.service import Manager
from certherd.settings import LineageSettings
from certherd.storage import Lease, MemoryStorage
from certherd.storage.base import Storage
from certherd.storage.lineages import archive_keys, live_version

NAME = "paused.test"


class PausedRenewals(MemoryStorage):
    """Memory storage whose lease renewals wait while ``paused`` is clear: the holder's
    process is stopped, so its background renewal never reaches the store."""

    def __init__(self) -> None:
        super().__init__()
        self.running = asyncio.Event()
        self.running.set()

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        await self.running.wait()
        return await super().renew(lease, ttl=ttl)


async def test_a_run_paused_past_its_lease_cannot_overwrite_the_next_holder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hygiene, "LEASE_TTL", 0.3)
    clock = FakeClock()
    server = HostileAcmeServer()
    storage = PausedRenewals()
    inside = asyncio.Event()
    resume = asyncio.Event()

    async def open_client(store: Storage, options: CaOptions) -> AcmeClient:
        inside.set()  # under the lineage's lease, before anything is ordered
        await resume.wait()
        return server.client(clock=clock)

    manager = Manager(storage, clock=clock, client_factory=open_client)
    settings = LineageSettings(
        name=NAME,
        names=(NAME,),
        directory_url=server.url("/directory"),
        solvers=(SolverSpec("hook", {"challenge": "http-01", "command": "/bin/false"}),),
    )
    work = asyncio.create_task(manager.issue(settings))
    await asyncio.wait_for(inside.wait(), 10)
    storage.running.clear()  # paused: no renewal from now on
    await asyncio.sleep(0.5)  # past its ttl
    taken_over = await storage.acquire(NAME, ttl=30, wait=0)
    theirs = LineageState(name=NAME, failures=7, last_error="the next holder's state")
    await theirs.save(storage, fence=taken_over)
    storage.running.set()
    resume.set()  # the paused run wakes up and carries on

    with pytest.raises(CertherdError) as raised:
        await asyncio.wait_for(work, 30)
    assert isinstance(raised.value, FencedError), raised.value
    assert await LineageState.load(storage, NAME) == theirs
    assert await archive_keys(storage, NAME) == []  # no version of the paused run
    assert await live_version(storage, NAME) is None
    assert await storage.list("renewal") == []  # nor its settings
    await storage.release(taken_over)
    await manager.aclose()
