"""A CA that trickles its answer cannot hold a request or a command open (issue 9 item 5).

httpx's timeouts bound each read: a CA that sends one byte a second keeps every read
short and the request open for ever. certherd bounds the whole exchange
(``request_timeout``) and, where the caller gives one, the whole command
(``client.deadline(seconds)``); both end in DeadlineExceededError, a certherd error.

The trickling server here is real time (a few tenths of a second per test): the hostile
ACME server streams through httpx.MockTransport, and one test serves it over a real
socket so that httpx's own per-read timeout is in play, and shown not to be enough.
Each test is itself bounded with ``asyncio.timeout`` so that the old code fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import FakeClock, HostileAcmeServer, Reply, always, order_body, trickle

from certherd.acme import AcmeClient, PollPolicy, SyncAcmeClient
from certherd.errors import (
    CertherdError,
    DeadlineExceededError,
    PollTimeoutError,
    RetryLimitError,
)

GUARD = 10.0  # seconds after which a test gives up: the old code would run for ever


def _trickling(server: HostileAcmeServer, path: str, interval: float = 0.05) -> None:
    server.hooks[path] = lambda seen: Reply(200, trickle(interval=interval))


# -- one request: request_timeout ----------------------------------------------------------


async def test_trickled_body_ends_at_the_request_timeout() -> None:
    server = HostileAcmeServer()
    _trickling(server, "/directory")
    async with server.client(request_timeout=0.5) as client:
        started = time.monotonic()
        async with asyncio.timeout(GUARD):
            with pytest.raises(DeadlineExceededError, match=r"no complete answer within 0\.5s"):
                await client.directory()
        took = time.monotonic() - started
    assert took < GUARD / 2
    assert len(server.requests_to("/directory")) == 1, "a stalled request is not re-sent"


async def test_trickled_post_answer_ends_at_the_request_timeout() -> None:
    server = HostileAcmeServer()
    _trickling(server, "/new-order")
    async with server.client(request_timeout=0.3) as client:
        async with asyncio.timeout(GUARD):
            with pytest.raises(DeadlineExceededError) as caught:
                await client.new_order(["example.test"])
    assert isinstance(caught.value, RetryLimitError)
    assert isinstance(caught.value, CertherdError)
    assert caught.value.seconds == 0.3


async def _serve_trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, headers_too: bool
) -> None:
    """A CA over a real socket: the status line at once (or not), then a byte at a time."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n"
    stream = (head + b"\r\n" if headers_too else b"") + b" " * 100_000
    try:
        await reader.readuntil(b"\r\n\r\n")
        if not headers_too:
            writer.write(head + b"\r\n")
        for byte in stream:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
async def test_trickle_over_a_real_socket_outlasts_httpx_timeouts_but_not_ours(
    headers_too: bool,
) -> None:
    # httpx's 1 s per-read timeout never fires (a byte comes every 50 ms); ours does.
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await _serve_trickle(reader, writer, headers_too=headers_too)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        async with AcmeClient(
            f"http://127.0.0.1:{port}/directory",
            key,
            allow_http=True,
            timeout=1.0,
            request_timeout=0.8,
        ) as client:
            started = time.monotonic()
            async with asyncio.timeout(GUARD):
                with pytest.raises(DeadlineExceededError, match=r"within 0\.8s"):
                    await client.directory()
            assert time.monotonic() - started < GUARD / 2
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def test_request_timeout_must_be_positive() -> None:
    server = HostileAcmeServer()
    with pytest.raises(CertherdError, match="positive"):
        server.client(request_timeout=0)


# -- one command: client.deadline(seconds) ----------------------------------------------------


async def test_command_deadline_cuts_a_trickled_request_short() -> None:
    # The request timeout (60 s default) is far; the command's deadline is near.
    server = HostileAcmeServer()
    _trickling(server, "/order/1")
    async with server.client(clock=FakeClock()) as client:
        async with asyncio.timeout(GUARD):
            with pytest.raises(DeadlineExceededError, match=r"0\.4s deadline given"):
                async with client.deadline(0.4):
                    await client.fetch_order(server.url("/order/1"))


async def test_command_deadline_stops_a_poll_before_a_wait_that_would_pass_it() -> None:
    server = HostileAcmeServer()
    server.hooks["/order/1"] = always(
        Reply(body=order_body(server, "processing"), headers={"Retry-After": "20"})
    )
    clock = FakeClock()
    poll = PollPolicy(retry_after_cap=30, timeout=300)
    async with server.client(clock=clock, poll=poll) as client:
        with pytest.raises(DeadlineExceededError, match="would wait 20s"):
            async with client.deadline(50):
                await client.wait_order(server.url("/order/1"))
    assert clock.sleeps == [20.0, 20.0], "no wait was begun that would end past 50 s"
    assert len(server.requests_to("/order/1")) == 3


async def test_without_a_command_deadline_the_poll_timeout_still_applies() -> None:
    # The control for the test above.
    server = HostileAcmeServer()
    server.hooks["/order/1"] = always(
        Reply(body=order_body(server, "processing"), headers={"Retry-After": "20"})
    )
    clock = FakeClock()
    async with server.client(clock=clock, poll=PollPolicy(retry_after_cap=30)) as client:
        with pytest.raises(PollTimeoutError):
            await client.wait_order(server.url("/order/1"))
    assert sum(clock.sleeps) > 50


async def test_command_deadline_stops_a_retry_after_wait_that_would_pass_it() -> None:
    server = HostileAcmeServer()
    server.hooks["/directory"] = always(Reply(503, headers={"Retry-After": "30"}))
    clock = FakeClock()
    async with server.client(clock=clock) as client:
        with pytest.raises(DeadlineExceededError, match="would wait 30s"):
            async with client.deadline(10):
                await client.directory()
    assert clock.sleeps == []


async def test_command_deadline_cancels_other_awaits_inside_it() -> None:
    # A solver or hook that hangs inside the command is cancelled at the deadline too.
    server = HostileAcmeServer()
    async with server.client() as client:
        async with asyncio.timeout(GUARD):
            with pytest.raises(DeadlineExceededError, match="did not finish in time"):
                async with client.deadline(0.2):
                    await asyncio.sleep(GUARD * 2)


async def test_nested_command_deadlines_keep_the_earliest() -> None:
    server = HostileAcmeServer()
    _trickling(server, "/order/1")
    async with server.client(clock=FakeClock()) as client:
        async with asyncio.timeout(GUARD):
            with pytest.raises(DeadlineExceededError, match=r"0\.3s deadline"):
                async with client.deadline(0.3), client.deadline(100):
                    await client.fetch_order(server.url("/order/1"))


async def test_concurrent_commands_keep_their_own_deadlines() -> None:
    server = HostileAcmeServer()
    _trickling(server, "/order/1")
    async with server.client() as client:

        async def slow() -> None:
            async with client.deadline(0.3):
                await client.fetch_order(server.url("/order/1"))

        async def quick() -> str:
            async with client.deadline(GUARD):
                await asyncio.sleep(0.6)  # outlives the other command's deadline
                return (await client.directory()).new_order

        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(slow(), quick(), return_exceptions=True)
    assert isinstance(results[0], DeadlineExceededError)
    assert results[1] == server.url("/new-order")


async def test_command_that_finishes_in_time_is_untouched() -> None:
    server = HostileAcmeServer()
    async with server.client() as client:
        async with client.deadline(0.5):
            directory = await client.directory()
        await asyncio.sleep(0.6)
        again = await client.directory(refresh=True)  # the deadline ended with its block
    assert directory.new_order == again.new_order == server.url("/new-order")


def test_sync_client_deadline_bounds_every_call_inside() -> None:
    server = HostileAcmeServer()
    _trickling(server, "/directory")
    with SyncAcmeClient(
        server.url("/directory"),
        ec.generate_private_key(ec.SECP256R1()),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    ) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError), client.deadline(0.3):
            client.directory()
        assert time.monotonic() - started < GUARD
