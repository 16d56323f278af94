"""Transport against a hostile CA: narrow, bounded retries, caps, and problem documents.

RFC 8555 §6.5 (badNonce with the error's nonce), §6.7 (problem documents), RFC 9110
§10.2.3 (Retry-After). Every wait goes through a FakeClock: nothing really sleeps.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import (
    ACME_URN,
    START,
    FakeClock,
    Hook,
    HostileAcmeServer,
    Reply,
    Seen,
    always,
    problem,
    script,
)

from certherd.acme import AcmeClient, RetryPolicy
from certherd.acme.retry import parse_retry_after
from certherd.errors import (
    BadCSRError,
    CompoundError,
    ConfigError,
    ProblemError,
    RateLimitedError,
    RejectedIdentifierError,
    RetryLimitError,
    ServerInternalError,
    TransportError,
    UnauthorizedError,
    UnsafeResponseError,
    UserActionRequiredError,
)

TEN_YEARS = 315360000


@pytest.fixture
def server() -> HostileAcmeServer:
    return HostileAcmeServer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def raising(error: type[httpx.TransportError], times: int | None = None) -> Hook:
    """A hook raising ``error`` (``times`` times, or forever), then falling through."""
    count = 0

    def hook(seen: Seen) -> None:
        nonlocal count
        count += 1
        if times is None or count <= times:
            raise error(f"simulated {error.__name__}")

    return hook


async def _revoke(server: HostileAcmeServer, client: AcmeClient) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    await client.revoke(server.ca.leaf(key.public_key(), ["example.test"]))


# -- badNonce (RFC 8555 §6.5) ---------------------------------------------------------------


async def test_bad_nonce_is_retried_with_the_nonce_from_the_error(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/new-order"] = script(problem("badNonce", "stale nonce"))
    async with server.client(clock=clock) as client:
        order = await client.new_order(["example.test"])
    assert order.url == server.url("/order/1")
    first, second = server.requests_to("/new-order", "POST")
    assert first.protected is not None
    assert second.protected is not None
    assert second.protected["nonce"] == first.reply_nonce
    assert not server.requests_to("/new-nonce"), "the error's nonce makes newNonce needless"
    assert clock.sleeps == []


async def test_first_post_takes_the_directory_nonce_without_new_nonce(
    server: HostileAcmeServer,
) -> None:
    async with server.client() as client:
        await client.new_order(["example.test"])
    (directory,) = server.requests_to("/directory")
    (post,) = server.requests_to("/new-order")
    assert post.protected is not None
    assert post.protected["nonce"] == directory.reply_nonce
    assert not server.requests_to("/new-nonce")


async def test_bad_nonce_without_a_fresh_nonce_falls_back_to_new_nonce(
    server: HostileAcmeServer,
) -> None:
    server.hooks["/new-order"] = script(problem("badNonce", headers={"Replay-Nonce": "!bad!"}))
    async with server.client() as client:
        await client.new_order(["example.test"])
    (head,) = server.requests_to("/new-nonce", "HEAD")
    second = server.requests_to("/new-order")[1]
    assert second.protected is not None
    assert second.protected["nonce"] == head.reply_nonce


@pytest.mark.parametrize("attempts", [1, 4, RetryPolicy().bad_nonce_attempts])
async def test_bad_nonce_forever_ends_in_retry_limit(
    server: HostileAcmeServer, clock: FakeClock, attempts: int
) -> None:
    server.hooks["/new-order"] = always(problem("badNonce", "never good enough"))
    retry = RetryPolicy(bad_nonce_attempts=attempts)
    async with server.client(clock=clock, retry=retry) as client:
        with pytest.raises(RetryLimitError, match="nonces in a row") as caught:
            await client.new_order(["example.test"])
    assert len(server.requests_to("/new-order")) == attempts
    assert isinstance(caught.value.__cause__, ProblemError)
    assert clock.sleeps == []


# -- Retry-After and 5xx ----------------------------------------------------------------------


async def test_503_with_retry_after_is_waited_then_succeeds(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = script(Reply(503, headers={"Retry-After": "2"}))
    async with server.client(clock=clock) as client:
        directory = await client.directory()
    assert directory.new_order == server.url("/new-order")
    assert clock.sleeps == [2.0]
    assert len(server.requests_to("/directory")) == 2


async def test_503_on_an_unsafe_post_is_retried(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    # 503 means the request was not processed, so even revocation may be re-sent.
    server.hooks["/revoke-cert"] = script(Reply(503, headers={"Retry-After": "1"}))
    async with server.client(clock=clock) as client:
        await _revoke(server, client)
    assert clock.sleeps == [1.0]
    assert len(server.requests_to("/revoke-cert")) == 2


async def test_retry_after_as_http_date(server: HostileAcmeServer, clock: FakeClock) -> None:
    when = email.utils.format_datetime(START + dt.timedelta(seconds=5), usegmt=True)
    server.hooks["/directory"] = script(Reply(503, headers={"Retry-After": when}))
    async with server.client(clock=clock) as client:
        await client.directory()
    assert clock.sleeps == [5.0]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120", START) == 120.0
    assert parse_retry_after(" 7 ", START) == 7.0
    past = email.utils.format_datetime(START - dt.timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, START) == 0.0
    assert parse_retry_after(None, START) is None
    assert parse_retry_after("soon", START) is None
    assert parse_retry_after("-5", START) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u00b3", "\u2460"])
def test_parse_retry_after_ignores_digits_that_are_not_decimal(value: str) -> None:
    # str.isdigit() is true for superscripts, which int() refuses.
    assert parse_retry_after(value, START) is None


async def test_retry_after_that_is_not_a_decimal_number_is_ignored(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    # A header value may carry obs-text (RFC 9110 §5.5); byte 0xB2 decodes to "\u00b2".
    server.hooks["/directory"] = script(httpx.Response(503, headers=[(b"Retry-After", b"\xb2")]))
    async with server.client(clock=clock) as client:
        await client.directory()
    assert len(clock.sleeps) == 1, "retried after the usual backoff"


async def test_rate_limited_for_ten_years_raises_at_once(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/new-order"] = always(
        problem(
            "rateLimited",
            "too many certificates",
            status=429,
            headers={"Retry-After": str(TEN_YEARS)},
        )
    )
    async with server.client(clock=clock) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.new_order(["example.test"])
    assert caught.value.retry_after == TEN_YEARS
    assert caught.value.retry_at == dt.timedelta(seconds=TEN_YEARS)
    assert "too many certificates" in str(caught.value)
    assert clock.sleeps == []
    assert len(server.requests_to("/new-order")) == 1


async def test_overlong_retry_after_on_503_ends_in_retry_limit(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = always(Reply(503, headers={"Retry-After": str(TEN_YEARS)}))
    async with server.client(clock=clock) as client:
        with pytest.raises(RetryLimitError, match="more than the 60s"):
            await client.directory()
    assert clock.sleeps == []


async def test_500_is_retried_for_a_safe_request(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = script(Reply(500), Reply(502))
    policy = RetryPolicy()
    async with server.client(clock=clock, retry=policy) as client:
        await client.directory()
    assert len(server.requests_to("/directory")) == 3
    assert len(clock.sleeps) == 2
    for attempt, delay in enumerate(clock.sleeps, start=1):
        ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


async def test_500_on_revocation_is_not_retried(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    # The CA may have revoked before failing: replaying an unsafe POST is not allowed.
    server.hooks["/revoke-cert"] = always(problem("serverInternal", "oops", status=500))
    async with server.client(clock=clock) as client:
        with pytest.raises(ServerInternalError):
            await _revoke(server, client)
    assert len(server.requests_to("/revoke-cert")) == 1
    assert clock.sleeps == []


async def test_500_retries_are_bounded_by_attempts(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = always(Reply(500, b"down", content_type="text/plain"))
    async with server.client(clock=clock, retry=RetryPolicy(server_error_attempts=3)) as client:
        with pytest.raises(ProblemError, match="HTTP 500"):
            await client.directory()
    assert len(server.requests_to("/directory")) == 3
    assert len(clock.sleeps) == 2


async def test_total_budget_ends_in_retry_limit(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = always(Reply(500, headers={"Retry-After": "10"}))
    retry = RetryPolicy(server_error_attempts=1000, total_budget=25)
    async with server.client(clock=clock, retry=retry) as client:
        with pytest.raises(RetryLimitError, match="within 25s"):
            await client.directory()
    assert clock.sleeps == [10.0, 10.0]
    assert clock.monotonic() <= retry.total_budget
    assert len(server.requests_to("/directory")) == 3


# -- connection errors --------------------------------------------------------------------------


async def test_connection_errors_back_off_with_a_cap_then_fail(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/directory"] = raising(httpx.ConnectError)
    retry = RetryPolicy(connection_attempts=7, backoff_base=1.0, backoff_cap=4.0)
    async with server.client(clock=clock, retry=retry) as client:
        with pytest.raises(TransportError) as caught:
            await client.directory()
    message = str(caught.value)
    assert "\n" not in message
    assert server.url("/directory") in message
    assert "7 attempt" in message
    assert len(server.requests_to("/directory")) == 7
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(clock.sleeps) == len(ceilings)
    for delay, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(clock.sleeps) <= retry.backoff_cap


async def test_connection_error_then_success(server: HostileAcmeServer, clock: FakeClock) -> None:
    server.hooks["/directory"] = raising(httpx.ConnectError, times=2)
    async with server.client(clock=clock) as client:
        await client.directory()
    assert len(clock.sleeps) == 2


def test_backoff_is_jittered_within_half_ceiling_to_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=8.0)
    rng = random.Random(7)
    for attempt in range(1, 60):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(20):
            assert ceiling / 2 <= policy.backoff(attempt, rng) <= ceiling


async def test_read_error_on_revocation_is_not_retried(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    # A read error means the request was sent: the CA may have acted on it.
    server.hooks["/revoke-cert"] = raising(httpx.ReadError)
    async with server.client(clock=clock) as client:
        with pytest.raises(TransportError, match="1 attempt"):
            await _revoke(server, client)
    assert len(server.requests_to("/revoke-cert")) == 1
    assert clock.sleeps == []


async def test_read_error_on_post_as_get_is_retried(
    server: HostileAcmeServer, clock: FakeClock
) -> None:
    server.hooks["/order/1"] = raising(httpx.ReadError, times=1)
    server.order = {
        "status": "pending",
        "identifiers": [],
        "authorizations": [],
        "finalize": server.url("/finalize/1"),
    }
    async with server.client(clock=clock) as client:
        order = await client.fetch_order(server.url("/order/1"))
    assert order.status == "pending"
    assert len(server.requests_to("/order/1")) == 2


# -- responses we refuse -------------------------------------------------------------------------


async def test_redirect_is_refused(server: HostileAcmeServer) -> None:
    server.hooks["/directory"] = always(
        Reply(302, headers={"Location": "https://elsewhere.test/directory"})
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="redirect"):
            await client.directory()
    assert [s.url for s in server.seen] == [server.url("/directory")]


async def test_body_with_oversize_content_length_is_refused(server: HostileAcmeServer) -> None:
    server.hooks["/directory"] = always(Reply(200, b"{}", {"Content-Length": str(50 << 20)}))
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="over the"):
            await client.directory()


async def test_streamed_body_over_the_cap_is_refused_early(server: HostileAcmeServer) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB in all, four times the cap
            sent += 1
            yield b" " * 65536

    server.hooks["/directory"] = lambda seen: Reply(200, endless())
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="exceeds"):
            await client.directory()
    assert sent <= 17, "reading stopped soon after the 1 MiB cap"


async def test_http_url_in_directory_is_refused(server: HostileAcmeServer) -> None:
    server.directory["newOrder"] = "http://ca.test/new-order"
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="only https"):
            await client.directory()


async def test_http_url_in_directory_is_accepted_with_allow_http(
    server: HostileAcmeServer,
) -> None:
    server.directory["newOrder"] = "http://ca.test/new-order"
    async with server.client(allow_http=True) as client:
        directory = await client.directory()
    assert directory.new_order == "http://ca.test/new-order"


def test_http_directory_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="https"):
        AcmeClient("http://ca.test/directory", ec.generate_private_key(ec.SECP256R1()))


async def test_http_location_of_a_new_order_is_refused(server: HostileAcmeServer) -> None:
    server.hooks["/new-order"] = always(
        Reply(201, {"status": "pending"}, {"Location": "http://ca.test/order/1"})
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="order URL"):
            await client.new_order(["example.test"])


async def test_non_json_body_is_refused(server: HostileAcmeServer) -> None:
    server.hooks["/directory"] = always(
        Reply(200, b"<html>It works!</html>", content_type="text/html")
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="not JSON"):
            await client.directory()


async def test_deeply_nested_json_is_refused(server: HostileAcmeServer) -> None:
    # 100 kB of "[" is far under the body cap and far over the JSON decoder's recursion limit.
    server.hooks["/directory"] = always(Reply(200, b"[" * 100_000, content_type="application/json"))
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="not JSON"):
            await client.directory()


# -- problem documents (RFC 8555 §6.7) -----------------------------------------------------------


async def test_deeply_nested_problem_document_is_still_a_problem_error(
    server: HostileAcmeServer,
) -> None:
    server.hooks["/new-order"] = always(
        Reply(400, b"[" * 100_000, content_type="application/problem+json")
    )
    async with server.client() as client:
        with pytest.raises(ProblemError, match="HTTP 400"):
            await client.new_order(["example.test"])


@pytest.mark.parametrize(
    ("problem_type", "status", "expected"),
    [
        ("badCSR", 400, BadCSRError),
        ("unauthorized", 403, UnauthorizedError),
        ("rejectedIdentifier", 400, RejectedIdentifierError),
        ("userActionRequired", 403, UserActionRequiredError),
        ("rateLimited", 403, RateLimitedError),
        (ACME_URN + "somethingNew", 400, ProblemError),
        ("urn:example:ca:custom", 403, ProblemError),
    ],
)
async def test_problem_document_becomes_its_subclass(
    server: HostileAcmeServer, problem_type: str, status: int, expected: type[ProblemError]
) -> None:
    server.hooks["/new-order"] = always(problem(problem_type, "the detail", status=status))
    async with server.client() as client:
        with pytest.raises(ProblemError) as caught:
            await client.new_order(["example.test"])
    error = caught.value
    assert type(error) is expected
    full_type = problem_type if ":" in problem_type else ACME_URN + problem_type
    assert error.type == full_type
    assert error.status == status
    assert error.url == server.url("/new-order")
    assert "the detail" in str(error)


async def test_error_without_problem_document_keeps_the_status(
    server: HostileAcmeServer,
) -> None:
    server.hooks["/new-order"] = always(Reply(403, b"Forbidden", content_type="text/html"))
    async with server.client() as client:
        with pytest.raises(ProblemError, match="HTTP 403") as caught:
            await client.new_order(["example.test"])
    assert type(caught.value) is ProblemError
    assert caught.value.type == "about:blank"


async def test_subproblems_and_identifier_are_kept(server: HostileAcmeServer) -> None:
    server.hooks["/new-order"] = always(
        problem(
            "compound",
            "two names refused",
            status=403,
            subproblems=[
                {
                    "type": ACME_URN + "rejectedIdentifier",
                    "detail": "policy forbids",
                    "identifier": {"type": "dns", "value": "forbidden.test"},
                },
                {
                    "type": ACME_URN + "caa",
                    "detail": "CAA forbids",
                    "identifier": {"type": "dns", "value": "caa.test"},
                },
            ],
        )
    )
    async with server.client() as client:
        with pytest.raises(CompoundError) as caught:
            await client.new_order(["forbidden.test", "caa.test"])
    error = caught.value
    assert [s.short_type for s in error.subproblems] == ["rejectedIdentifier", "caa"]
    assert error.subproblems[0].identifier == {"type": "dns", "value": "forbidden.test"}
    assert error.subproblems[1].identifier == {"type": "dns", "value": "caa.test"}
    text = str(error)
    assert "forbidden.test" in text
    assert "caa.test" in text
    assert "policy forbids" in text


async def test_problem_identifier_is_kept(server: HostileAcmeServer) -> None:
    server.hooks["/new-order"] = always(
        problem("rejectedIdentifier", "no", identifier={"type": "ip", "value": "10.0.0.1"})
    )
    async with server.client() as client:
        with pytest.raises(RejectedIdentifierError) as caught:
            await client.new_order(["10.0.0.1"])
    assert caught.value.identifier == {"type": "ip", "value": "10.0.0.1"}
    assert "10.0.0.1" in str(caught.value)


async def test_problem_detail_is_escaped_in_str(server: HostileAcmeServer) -> None:
    hostile = "evil\x1b[31mred\nforged log line\u202eabc"
    server.hooks["/new-order"] = always(
        problem(
            "malformed",
            hostile,
            subproblems=[{"type": ACME_URN + "dns", "detail": "sub\x1b[0m\r\nline"}],
        )
    )
    async with server.client() as client:
        with pytest.raises(ProblemError) as caught:
            await client.new_order(["example.test"])
    text = str(caught.value)
    for raw in ("\x1b", "\n", "\r", "\u202e"):
        assert raw not in text
    assert "evil\\x1b[31mred\\x0aforged log line" in text
    assert "sub\\x1b[0m" in text
    assert caught.value.detail == hostile, "the problem itself keeps the text as sent"
