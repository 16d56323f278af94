"""Issue 9.4: an order the CA asks to be asked about much later is kept and resumed.

The hostile test server keeps an order ``processing`` with ``Retry-After: 315360000``
(ten years). The manager must stop waiting at once (not after the 300 s poll timeout),
keep the order URL and its key, say when the CA asked to be asked again, not poll before
then, and resume that same order afterwards; an order that turned invalid or expired is
dropped for a new one. Time is a FakeClock: nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from fakes import START, FakeClock, HostileAcmeServer, Reply, Seen, b64url_decode, csr_names

from certherd.acme import AcmeClient
from certherd.challenges.spec import SolverSpec
from certherd.manager.accounts import CaOptions
from certherd.manager.lineage import LineageState
from certherd.manager.service import Manager
from certherd.settings import LineageSettings
from certherd.storage import MemoryStorage
from certherd.storage.base import Storage
from certherd.storage.lineages import live_version

TEN_YEARS = 315360000
NAME = "slow.test"


class SlowCa:
    """The hostile server, scripted: finalize leaves the order processing with a ten-year
    Retry-After until ``release(status)``; certificates are valid around the clock's now."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.server = HostileAcmeServer()
        self.server.authorization_status = "valid"  # no challenges: this is about polling
        self.held = True
        self.final_status = "valid"
        self.expires: str | None = None
        self.server.hooks["/finalize/1"] = self._finalize
        self.server.hooks["/order/1"] = self._order
        self.server.issue = self._issue

    def _finalize(self, seen: Seen) -> Reply | None:
        if not self.held:
            return None  # a new order after release: the default, honest answer
        self.server.csr = x509.load_der_x509_csr(b64url_decode(seen.payload["csr"]))
        self.server.order.update(status="processing")
        return Reply(body=self.server.order, headers={"Retry-After": str(TEN_YEARS)})

    def _order(self, seen: Seen) -> Reply | None:
        if self.held:
            body: dict[str, Any] = {**self.server.order, "status": "processing"}
            if self.expires:
                body["expires"] = self.expires
            return Reply(body=body, headers={"Retry-After": str(TEN_YEARS)})
        if self.final_status == "valid":
            self.server.order.update(status="valid", certificate=self.server.url("/cert/1"))
        else:
            self.server.order.update(status=self.final_status)
        if self.expires:
            self.server.order["expires"] = self.expires
        return Reply(body=self.server.order)

    def _issue(self, csr: x509.CertificateSigningRequest) -> bytes:
        now = self.clock.now()
        leaf = self.server.ca.leaf(
            csr.public_key(),
            csr_names(csr),
            not_before=now - dt.timedelta(hours=1),
            not_after=now + dt.timedelta(days=90),
        )
        return self.server.ca.pem(leaf)

    def release(self, status: str = "valid") -> None:
        self.held = False
        self.final_status = status

    def orders_placed(self) -> int:
        return len(self.server.requests_to("/new-order", "POST"))

    def order_polls(self) -> int:
        return len(self.server.requests_to("/order/1", "POST"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ca(clock: FakeClock) -> SlowCa:
    return SlowCa(clock)


@pytest.fixture
def manager(ca: SlowCa, clock: FakeClock) -> Manager:
    clients: list[AcmeClient] = []

    async def open_client(storage: Storage, options: CaOptions) -> AcmeClient:
        client = ca.server.client(clock=clock)
        clients.append(client)
        return client

    return Manager(MemoryStorage(), clock=clock, client_factory=open_client)


def _settings(ca: SlowCa) -> LineageSettings:
    return LineageSettings(
        name=NAME,
        names=(NAME,),
        directory_url=ca.server.url("/directory"),
        # Never run: the authorizations are valid already.
        solvers=(SolverSpec("hook", {"challenge": "http-01", "command": "/bin/false"}),),
    )


async def _wait_first(manager: Manager, ca: SlowCa, clock: FakeClock) -> LineageState:
    settings = _settings(ca)
    outcome = await manager.issue(settings)
    assert outcome.action == "waiting", outcome
    assert not outcome.failed
    assert "waiting on the CA until 2035-05-30" in outcome.reason
    assert "/order/1" in outcome.reason
    assert clock.elapsed < 60, f"waited {clock.elapsed:.0f} s for a ten-year Retry-After"
    state = await LineageState.load(manager.storage, NAME)
    assert state.order_url == ca.server.url("/order/1")
    assert state.order_retry_at is not None
    assert state.order_retry_at >= START + dt.timedelta(seconds=TEN_YEARS)
    assert state.failures == 0  # waiting on the CA is not a failure
    assert state.next_check == state.order_retry_at
    assert ca.orders_placed() == 1
    return state


async def test_a_ten_year_retry_after_stops_at_once_and_is_respected(
    manager: Manager, ca: SlowCa, clock: FakeClock
) -> None:
    await _wait_first(manager, ca, clock)
    polls = ca.order_polls()

    # Before the CA's time: nothing is asked of the CA, even when forced or issued again.
    for force in (False, True):
        [outcome] = await manager.renew([NAME], force=force)
        assert outcome.action == "waiting", outcome
        assert "waiting on the CA until" in outcome.reason
    settings = _settings(ca)
    again = await manager.issue(settings)
    assert again.action == "waiting", again
    assert ca.order_polls() == polls
    assert ca.orders_placed() == 1


async def test_the_same_order_is_resumed_after_the_cas_time(
    manager: Manager, ca: SlowCa, clock: FakeClock
) -> None:
    await _wait_first(manager, ca, clock)
    clock.elapsed += TEN_YEARS + 1
    ca.release("valid")
    [outcome] = await manager.renew([NAME])
    assert outcome.action == "renewed", outcome
    assert outcome.version == 1
    assert ca.orders_placed() == 1  # the first order's certificate, no second order
    state = await LineageState.load(manager.storage, NAME)
    assert state.version == 1
    assert state.order_url is None
    assert await live_version(manager.storage, NAME) == 1


@pytest.mark.parametrize("ending", ["invalid", "expired"])
async def test_an_order_that_died_is_dropped_for_a_new_one(
    manager: Manager, ca: SlowCa, clock: FakeClock, ending: str
) -> None:
    await _wait_first(manager, ca, clock)
    clock.elapsed += TEN_YEARS + 1
    if ending == "expired":
        ca.expires = (START + dt.timedelta(days=7)).isoformat().replace("+00:00", "Z")
    else:
        ca.release("invalid")
    ca.held = False
    ca.final_status = "processing" if ending == "expired" else "invalid"
    [outcome] = await manager.renew([NAME])
    assert outcome.action == "renewed", outcome
    assert ca.orders_placed() == 2  # the dead order was not resumed
    state = await LineageState.load(manager.storage, NAME)
    assert state.order_url is None
    assert state.version == 1


async def test_a_resumed_order_that_fails_is_not_resumed_again(
    manager: Manager, ca: SlowCa, clock: FakeClock
) -> None:
    """The CA keeps the order "pending" but its authorization ended invalid: the attempt
    fails (recorded), the order is dropped, and the next attempt places a new one."""
    await _wait_first(manager, ca, clock)
    clock.elapsed += TEN_YEARS + 1
    ca.held = False
    ca.final_status = "pending"
    ca.server.authorizations["/authz/1"]["status"] = "invalid"
    [failed] = await manager.renew([NAME])
    assert failed.action == "failed", failed
    assert "invalid" in (failed.error or "")
    state = await LineageState.load(manager.storage, NAME)
    assert state.order_url is None
    assert state.failures == 1
    assert ca.orders_placed() == 1

    [outcome] = await manager.renew([NAME])
    assert outcome.action == "renewed", outcome
    assert ca.orders_placed() == 2
