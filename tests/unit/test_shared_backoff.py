"""A CA's 429 slows every request of the transport down, not only the one that got it."""

from __future__ import annotations

import asyncio

import httpx
from tests.unit.fakes import FakeClock

from certherd.acme.messages import UrlPolicy
from certherd.acme.transport import Transport

URL = "https://ca.test/renewal-info/x"


async def test_a_429_pauses_the_other_requests_too() -> None:
    clock = FakeClock()
    sent_at: list[tuple[str, float]] = []
    refused = False

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        sent_at.append((request.url.path, clock.monotonic()))
        if request.url.path.endswith("/first") and not refused:
            refused = True
            return httpx.Response(
                429,
                headers={"Retry-After": "7", "Content-Type": "application/problem+json"},
                json={"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"},
            )
        return httpx.Response(200, json={})

    transport = Transport(
        urls=UrlPolicy(),
        clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    first = asyncio.ensure_future(transport.get(URL + "/first", "first"))
    await asyncio.sleep(0.01)  # the 429 has arrived and the pause is set
    second = await transport.get(URL + "/second", "second")
    await first
    await transport.aclose()
    assert second.status == 200
    second_sent = [t for path, t in sent_at if path.endswith("/second")]
    assert second_sent == [7.0], f"the second request went out at {second_sent}, not after 7 s"
    assert [t for path, t in sent_at if path.endswith("/first")] == [0.0, 7.0]


async def test_without_a_429_nobody_waits() -> None:
    clock = FakeClock()
    transport = Transport(
        urls=UrlPolicy(),
        clock=clock,
        http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json={}))
        ),
    )
    await asyncio.gather(*(transport.get(f"{URL}/{i}", "get") for i in range(5)))
    await transport.aclose()
    assert clock.sleeps == []
