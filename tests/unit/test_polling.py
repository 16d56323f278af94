"""Polling orders and authorizations (RFC 8555 §7.4, §7.5.1) against a CA that stalls.

Every wait goes through a FakeClock, so a five-minute timeout runs in milliseconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fakes import (
    ACME_URN,
    START,
    FakeClock,
    HostileAcmeServer,
    Reply,
    always,
    order_body,
    script,
)

from certherd.acme import PollPolicy
from certherd.acme.messages import Status
from certherd.crypto.csr import build_csr
from certherd.crypto.keys import generate_key
from certherd.errors import OrderFailedError, PollDeferredError, PollTimeoutError


@pytest.fixture
def server() -> HostileAcmeServer:
    return HostileAcmeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def order_reply(server: HostileAcmeServer, status: str, **headers: str) -> Reply:
    return Reply(body=order_body(server, status), headers=headers)


def authorization_reply(
    server: HostileAcmeServer, status: str, error: dict[str, Any] | None = None
) -> Reply:
    challenge: dict[str, Any] = {
        "type": "http-01",
        "url": server.url("/chall/1"),
        "status": "invalid" if error else status,
        "token": "DGyRejmCefe7v4NfDGDKfA",
    }
    if error:
        challenge["error"] = error
    return Reply(
        body={
            "identifier": {"type": "dns", "value": "example.test"},
            "status": status,
            "challenges": [challenge],
        }
    )


async def test_order_processing_forever_ends_in_poll_timeout(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/order/1"] = lambda seen: order_reply(server, "processing")
    policy = PollPolicy()
    async with server.client(clock=clock) as client:
        with pytest.raises(PollTimeoutError, match="still processing"):
            await client.wait_order(server.url("/order/1"))
    assert policy.timeout - policy.max_interval < clock.monotonic() <= policy.timeout
    assert sum(clock.sleeps) == pytest.approx(clock.monotonic())
    assert len(server.requests_to("/order/1")) == len(clock.sleeps) + 1


async def test_poll_intervals_double_up_to_the_maximum(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/order/1"] = lambda seen: order_reply(server, "processing")
    policy = PollPolicy(first_interval=1.0, max_interval=8.0, timeout=60.0)
    async with server.client(clock=clock, poll=policy) as client:
        with pytest.raises(PollTimeoutError):
            await client.wait_order(server.url("/order/1"))
    # 1+2+4+8*6 = 55; one more 8 s wait would pass the 60 s timeout.
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]


async def test_default_poll_schedule_then_valid(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    replies = [order_reply(server, "processing") for _ in range(8)]
    server.hooks["/order/1"] = script(*replies, order_reply(server, "valid"))
    async with server.client(clock=clock) as client:
        order = await client.wait_order(server.url("/order/1"))
    assert order.status is Status.VALID
    assert clock.sleeps == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0])


async def test_ready_order_is_not_waited_for(server: HostileAcmeServer, clock: FakeClock) -> None:
    server.hooks["/order/1"] = always(order_reply(server, "valid"))
    async with server.client(clock=clock) as client:
        await client.wait_order(server.url("/order/1"))
    assert clock.sleeps == []


async def test_retry_after_replaces_the_interval_and_is_capped(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/order/1"] = script(
        order_reply(server, "processing", **{"Retry-After": "7"}),
        order_reply(server, "processing", **{"Retry-After": "100"}),
        order_reply(server, "processing"),
        order_reply(server, "valid"),
    )
    policy = PollPolicy(retry_after_cap=30.0)
    async with server.client(clock=clock, poll=policy) as client:
        await client.wait_order(server.url("/order/1"))
    assert clock.sleeps == pytest.approx([7.0, 30.0, policy.interval(3, None)])


async def test_a_retry_after_past_the_time_left_ends_the_wait_at_once(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    """Issue 9.4: the CA asks to be asked again in ten years; waiting out the 300 s poll
    timeout first helps nobody. The error says when, and carries it for a later run."""
    server.hooks["/order/1"] = script(
        order_reply(server, "processing", **{"Retry-After": "5"}),
        order_reply(server, "processing", **{"Retry-After": "315360000"}),
    )
    async with server.client(clock=clock, poll=PollPolicy(timeout=300.0)) as client:
        with pytest.raises(PollDeferredError) as caught:
            await client.wait_order(server.url("/order/1"))
    assert clock.sleeps == [5.0]
    assert caught.value.url == server.url("/order/1")
    assert caught.value.retry_at == START + dt.timedelta(seconds=5 + 315360000)
    assert "asked to be asked again at 2035-05-30 12:00:05 UTC" in str(caught.value)


async def test_authorization_turning_invalid_carries_the_challenge_problem(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    error = {
        "type": ACME_URN + "incorrectResponse",
        "detail": "key authorization mismatch",
        "status": 403,
    }
    server.hooks["/authz/1"] = script(
        authorization_reply(server, "pending"),
        authorization_reply(server, "pending"),
        authorization_reply(server, "invalid", error),
    )
    async with server.client(clock=clock) as client:
        with pytest.raises(OrderFailedError, match="key authorization mismatch") as caught:
            await client.wait_authorization(server.url("/authz/1"))
    problem = caught.value.problem
    assert problem is not None
    assert problem.type == ACME_URN + "incorrectResponse"
    assert problem.detail == "key authorization mismatch"
    assert problem.status == 403
    assert len(clock.sleeps) == 2


async def test_authorization_pending_forever_ends_in_poll_timeout(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/authz/1"] = lambda seen: authorization_reply(server, "pending")
    policy = PollPolicy(timeout=20.0)
    async with server.client(clock=clock, poll=policy) as client:
        with pytest.raises(PollTimeoutError, match="still pending"):
            await client.wait_authorization(server.url("/authz/1"))
    assert clock.monotonic() <= policy.timeout


async def test_order_turning_invalid_after_finalize_carries_its_problem(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    error = {"type": ACME_URN + "badCSR", "detail": "key too weak"}
    server.hooks["/finalize/1"] = always(order_reply(server, "processing"))
    server.hooks["/order/1"] = script(
        order_reply(server, "processing"),
        Reply(body=order_body(server, "invalid", error=error)),
    )
    async with server.client(clock=clock) as client:
        order = await client.fetch_order(server.url("/order/1"))
        csr = build_csr(generate_key(), dns_names=["example.test"])
        with pytest.raises(OrderFailedError, match="key too weak") as caught:
            await client.finalize(order, csr)
    assert caught.value.problem is not None
    assert caught.value.problem.short_type == "badCSR"
