"""The blocking facade can be interrupted, bounded and closed cleanly (issue 11 item 7).

Ctrl-C is a real SIGINT sent to the main thread while it waits in a sync call; the
hostile test server keeps the authorization pending for ever, so only a cancelled
coroutine stops polling it.
"""

from __future__ import annotations

import gc
import inspect
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import HostileAcmeServer

from certherd.acme import AcmeClient, PollPolicy, SyncAcmeClient
from certherd.errors import DeadlineExceededError

GUARD = 10.0  # seconds after which a test gives up: the old code would poll for ever
AUTHZ = "/authz/1"


def _pending_server() -> HostileAcmeServer:
    server = HostileAcmeServer()
    server.authorizations[AUTHZ] = {
        "identifier": {"type": "dns", "value": "example.test"},
        "status": "pending",
        "challenges": [],
    }
    return server


def _client(server: HostileAcmeServer, http: httpx.AsyncClient) -> SyncAcmeClient:
    return SyncAcmeClient(
        server.url("/directory"),
        ec.generate_private_key(ec.SECP256R1()),
        account_url=server.url("/acct/1"),
        poll=PollPolicy(first_interval=0.01, max_interval=0.02, timeout=60),
        http_client=http,
    )


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in a plain Python program."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_after(seconds: float) -> threading.Timer:
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


def _polls(server: HostileAcmeServer) -> int:
    return len(server.requests_to(AUTHZ))


def test_ctrl_c_in_wait_authorization_stops_the_polling(
    sigint_raises: None, caplog: pytest.LogCaptureFixture
) -> None:
    server = _pending_server()
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    client = _client(server, http)
    timer = _ctrl_c_after(0.3)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.wait_authorization(server.url(AUTHZ))
    timer.join()
    assert time.monotonic() - started < GUARD
    at_interrupt = _polls(server)
    time.sleep(0.3)  # fifteen poll intervals: the old code went on polling
    after = _polls(server)
    client.close()
    del client
    gc.collect()
    assert "Task was destroyed" not in caplog.text
    assert at_interrupt > 1  # it was polling when Ctrl-C came
    assert after == at_interrupt
    assert not http.is_closed  # the caller's client is the caller's to close


def test_close_while_a_call_waits_ends_it_and_leaves_no_pending_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = _pending_server()
    client = _client(server, httpx.AsyncClient(transport=httpx.MockTransport(server)))
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.wait_authorization(server.url(AUTHZ))
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while _polls(server) < 2:
        time.sleep(0.01)
    client.close()
    waiter.join(timeout=GUARD)
    polls = _polls(server)
    time.sleep(0.1)
    gc.collect()
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert _polls(server) == polls
    assert "Task was destroyed" not in caplog.text


def test_each_blocking_call_takes_a_timeout() -> None:
    server = _pending_server()
    with _client(server, httpx.AsyncClient(transport=httpx.MockTransport(server))) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            client.wait_authorization(server.url(AUTHZ), timeout=0.2)
        assert time.monotonic() - started < GUARD
        polls = _polls(server)
        assert client.directory(timeout=5).new_order == server.url("/new-order")
        with pytest.raises(ValueError, match="positive"):
            client.fetch_order(server.url("/order/1"), timeout=0)
        time.sleep(0.1)
    assert _polls(server) == polls


def test_constructor_takes_exactly_the_async_clients_keywords() -> None:
    ours = inspect.signature(SyncAcmeClient.__init__).parameters
    theirs = inspect.signature(AcmeClient.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    threads = threading.active_count()
    with pytest.raises(TypeError, match="ca_bundel"):
        SyncAcmeClient(
            "https://ca.test/directory", ec.generate_private_key(ec.SECP256R1()), ca_bundel="x"
        )  # type: ignore[call-arg]
    assert threading.active_count() == threads  # refused before any thread started


def test_a_closed_client_refuses_calls() -> None:
    server = _pending_server()
    client = _client(server, httpx.AsyncClient(transport=httpx.MockTransport(server)))
    client.close()
    client.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.directory()
