"""Hostile numbers, headers and certificates end in certherd's own errors (issue 9 item 3).

Each value here once escaped as an exception of Python or of a library (OverflowError,
ValueError, cryptography's DuplicateExtension) and would have ended ``renew`` for every
lineage. Every number from a CA is clamped; every parse failure is an AcmeError.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import subprocess
import sys
import textwrap

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import (
    START,
    FakeClock,
    HostileAcmeServer,
    Reply,
    always,
    csr_names,
    order_body,
    pem_of_der,
    problem,
)

from certherd.acme.messages import UrlPolicy
from certherd.acme.retry import PollPolicy, parse_retry_after
from certherd.acme.transport import Response
from certherd.crypto.ari import certificate_id
from certherd.crypto.certs import load_pem_chain
from certherd.errors import (
    CryptoError,
    MalformedError,
    PollTimeoutError,
    Problem,
    ProblemError,
    RateLimitedError,
    RetryLimitError,
    UnsafeResponseError,
)
from certherd.manager import obtain_certificate

LATEST_DATETIME = dt.datetime.max.replace(tzinfo=dt.UTC)
MAX_RETRY_AFTER = 10 * 365 * 86400.0  # certherd.errors.MAX_RETRY_AFTER: ten years

# -- Retry-After (RFC 9110 §10.2.3) -------------------------------------------------------

HOSTILE_RETRY_AFTER = {
    "20-digits": ("9" * 20, MAX_RETRY_AFTER),  # timedelta(seconds=1e20) overflows
    "309-digits": ("9" * 309, MAX_RETRY_AFTER),  # float(int(...)) overflows
    "5000-digits": ("9" * 5000, MAX_RETRY_AFTER),  # int() refuses over 4300 digits
    "leading-zeros": ("0" * 400 + "7", MAX_RETRY_AFTER),
    "year-9999-west": ("Fri, 31 Dec 9999 23:59:59 -2359", MAX_RETRY_AFTER),
    "year-9999-gmt": ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    "year-of-20-digits": ("Fri, 31 Dec 99999999999999999999 23:59:59 GMT", None),
    "year-100": ("Mon, 01 Jan 0100 00:00:00 +2359", 0.0),
    "past": ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
    "negative": ("-5", None),
    "fraction": ("1.5", None),
    "exponent": ("1e9", None),
    "garbage": ("soon, please", None),
    "overlong-date": ("Fri, 31 Dec 2025 23:59:59 GMT" + " " * 100 + "x", None),
}


@pytest.mark.parametrize(
    ("value", "expected"), HOSTILE_RETRY_AFTER.values(), ids=HOSTILE_RETRY_AFTER.keys()
)
def test_parse_retry_after_is_clamped_and_never_raises(value: str, expected: float | None) -> None:
    seconds = parse_retry_after(value, START)
    assert seconds == expected
    if seconds is not None:
        # What every caller does with it: no OverflowError either way.
        assert START + dt.timedelta(seconds=seconds) <= LATEST_DATETIME


@pytest.mark.parametrize("digits", [20, 309, 5000])
async def test_huge_retry_after_on_503_is_a_retry_limit_error(digits: int) -> None:
    server = HostileAcmeServer()
    server.hooks["/directory"] = always(Reply(503, headers={"Retry-After": "9" * digits}))
    clock = FakeClock()
    async with server.client(clock=clock) as client:
        with pytest.raises(RetryLimitError, match="more than the 60s"):
            await client.directory()
    assert clock.sleeps == []


@pytest.mark.parametrize("digits", [20, 309, 5000])
async def test_huge_retry_after_of_rate_limited_is_clamped(digits: int) -> None:
    server = HostileAcmeServer()
    server.hooks["/new-order"] = always(
        problem("rateLimited", "slow down", status=429, headers={"Retry-After": "9" * digits})
    )
    async with server.client() as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.new_order(["example.test"])
    assert caught.value.retry_after == MAX_RETRY_AFTER
    assert caught.value.retry_at == dt.timedelta(seconds=MAX_RETRY_AFTER)


@pytest.mark.parametrize("value", ["9" * 20, "9" * 309, "Fri, 31 Dec 9999 23:59:59 -2359"])
async def test_huge_retry_after_of_renewal_info_is_clamped(value: str) -> None:
    # RFC 9773 §4.3: the client re-asks after Retry-After; the manager adds it to now.
    server = HostileAcmeServer()
    server.directory["renewalInfo"] = server.url("/renewal-info")
    window = {"start": "2025-07-01T00:00:00Z", "end": "2025-07-02T00:00:00Z"}
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = server.ca.leaf(key.public_key(), ["example.test"])
    server.hooks["/renewal-info/" + certificate_id(leaf)] = always(
        Reply(body={"suggestedWindow": window}, headers={"Retry-After": value})
    )
    async with server.client() as client:
        info = await client.renewal_info(leaf)
    assert info.retry_after == MAX_RETRY_AFTER
    assert START + dt.timedelta(seconds=info.retry_after) <= LATEST_DATETIME


async def test_huge_retry_after_while_processing_ends_the_poll_with_the_order_url() -> None:
    # What the manager needs to resume the order later: its URL and the CA's (clamped) ask.
    server = HostileAcmeServer()
    server.hooks["/order/1"] = always(
        Reply(body=order_body(server, "processing"), headers={"Retry-After": "9" * 309})
    )
    clock = FakeClock()
    async with server.client(clock=clock, poll=PollPolicy(timeout=60)) as client:
        with pytest.raises(PollTimeoutError) as caught:
            await client.wait_order(server.url("/order/1"))
    assert caught.value.url == server.url("/order/1")
    assert caught.value.retry_after == MAX_RETRY_AFTER


# -- numbers in headers and bodies --------------------------------------------------------


async def test_content_length_of_5000_digits_is_refused() -> None:
    server = HostileAcmeServer()
    server.hooks["/directory"] = always(Reply(200, b"{}", {"Content-Length": "9" * 5000}))
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="over the"):
            await client.directory()


@pytest.mark.parametrize(
    "status",
    [True, 10**300, -1, 99, 600, 1.5, "400", [400], None],
    ids=["bool", "huge", "negative", "99", "600", "float", "string", "list", "null"],
)
async def test_problem_status_that_is_not_an_http_status_is_dropped(status: object) -> None:
    server = HostileAcmeServer()
    body = json.dumps(
        {"type": "urn:ietf:params:acme:error:malformed", "detail": "no", "status": status}
    )
    server.hooks["/new-order"] = always(
        Reply(400, body.encode(), content_type="application/problem+json")
    )
    async with server.client() as client:
        with pytest.raises(MalformedError) as caught:
            await client.new_order(["example.test"])
    assert caught.value.status is None


WRONG_TYPES = {
    "type-list": {"type": ["urn:ietf:params:acme:error:malformed"], "detail": "x"},
    "detail-object": {"type": "urn:ietf:params:acme:error:malformed", "detail": {"a": [1]}},
    "subproblems-object": {"type": "about:blank", "subproblems": {"a": 1}},
    "subproblems-of-strings": {"type": "about:blank", "subproblems": ["x", 3, None]},
    "identifier-list": {"type": "about:blank", "identifier": ["dns", "x"]},
    "identifier-values-objects": {"type": "about:blank", "identifier": {"type": [], "value": {}}},
    "algorithms-nested": {"type": "about:blank", "algorithms": [[["ES256"]]]},
}


@pytest.mark.parametrize("body", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
async def test_problem_document_with_wrong_types_is_a_problem_error(body: object) -> None:
    server = HostileAcmeServer()
    server.hooks["/new-order"] = always(Reply(400, body, content_type="application/problem+json"))
    async with server.client() as client:
        with pytest.raises(ProblemError) as caught:
            await client.new_order(["example.test"])
    assert isinstance(caught.value.problem.type, str)
    assert isinstance(caught.value.problem.detail, str)
    str(caught.value)


def test_problem_subproblems_nested_without_end_are_read_one_level_deep() -> None:
    # RFC 8555 §6.7.1 defines one level; a CA nesting 450 levels made from_json recurse
    # past Python's limit (RecursionError) when called from deep in a stack.
    document: dict[str, object] = {"type": "about:blank", "detail": "leaf"}
    for level in range(450):
        document = {"type": "about:blank", "detail": f"level {level}", "subproblems": [document]}
    decoded = json.loads(json.dumps(document))

    def deep(depth: int) -> Problem:
        return deep(depth - 1) if depth else Problem.from_json(decoded)

    found = deep(sys.getrecursionlimit() - 450)
    assert len(found.subproblems) == 1
    assert found.subproblems[0].subproblems == ()
    assert "level 448" in found.describe()


def test_problem_with_thousands_of_subproblems_keeps_a_hundred() -> None:
    document = {
        "type": "urn:ietf:params:acme:error:compound",
        "subproblems": [{"type": "about:blank", "detail": str(i)} for i in range(10_000)],
    }
    assert len(Problem.from_json(document).subproblems) == 100


# -- URLs in Location and Link headers ----------------------------------------------------

BAD_URLS = ["https://[::1/order", "https://[zz]/x", "https://[::1]:99999999999999/x"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_url_policy_refuses_unreadable_urls(url: str) -> None:
    with pytest.raises(UnsafeResponseError):
        UrlPolicy().check(url, "order URL")


@pytest.mark.parametrize("url", BAD_URLS)
async def test_unreadable_location_of_a_new_order_is_refused(url: str) -> None:
    server = HostileAcmeServer()
    server.hooks["/new-order"] = always(
        Reply(201, order_body(server, "pending"), {"Location": url})
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError):
            await client.new_order(["example.test"])


def test_unreadable_location_resolved_against_an_unreadable_base_is_refused() -> None:
    response = Response("https://[::1/", 201, httpx.Headers({"Location": "/order/1"}), b"")
    with pytest.raises(UnsafeResponseError):
        _ = response.location


async def test_unreadable_link_target_is_refused() -> None:
    server = HostileAcmeServer()
    server.hooks["/orders/1"] = always(
        Reply(body={"orders": []}, headers={"Link": '<https://[::1/orders/2>;rel="next"'})
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError):
            _ = [url async for url in client.list_orders(server.url("/orders/1"))]


async def test_url_that_httpx_cannot_send_to_is_refused() -> None:
    # Passes urlsplit, but IDNA refuses the host: httpx raises InvalidURL, not HTTPError.
    server = HostileAcmeServer()
    server.directory["newOrder"] = "https://xn--/new-order"
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError):
            await client.new_order(["example.test"])


def test_link_header_of_a_megabyte_of_angle_brackets_is_read_in_linear_time() -> None:
    # The old pattern backtracked from every "<": quadratic, hours for a megabyte.
    # Run in a child process so a hang is a failure with a clear message, not a stall.
    code = textwrap.dedent(
        """
        import httpx
        from certherd.acme.transport import Response
        for header in ["<" * 1_000_000, "<>" + ";" * 1_000_000, '<a>; rel' + " " * 1_000_000]:
            Response("https://ca.test/", 200, httpx.Headers({"Link": header}), b"").links("next")
        """
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading one Link header took over a minute: the pattern backtracks")


def test_links_are_capped() -> None:
    header = ", ".join(f'<https://ca.test/alt/{i}>;rel="alternate"' for i in range(5000))
    response = Response("https://ca.test/", 200, httpx.Headers({"Link": header}), b"")
    assert len(response.links("alternate")) == 100


# -- certificates (RFC 5280) ----------------------------------------------------------------


async def test_certificate_with_a_duplicate_extension_is_refused() -> None:
    server = HostileAcmeServer()

    def duplicate(csr: x509.CertificateSigningRequest) -> bytes:
        leaf = server.ca.leaf_with_duplicate_extension(csr.public_key(), csr_names(csr))
        return pem_of_der(leaf) + server.ca.pem(server.ca.intermediate, server.ca.root)

    server.issue = duplicate
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="Duplicate"):
            await obtain_certificate(client, ["example.test"], [])
    assert server.requests_to("/cert/1")


def test_load_pem_chain_refuses_a_duplicate_extension() -> None:
    server = HostileAcmeServer()
    key = ec.generate_private_key(ec.SECP256R1())
    der = server.ca.leaf_with_duplicate_extension(key.public_key(), ["example.test"])
    with pytest.raises(CryptoError, match="certificate 1 of the chain cannot be read"):
        load_pem_chain(pem_of_der(der))


async def test_chain_of_a_hundred_certificates_is_refused() -> None:
    server = HostileAcmeServer()
    server.issue = lambda csr: server.ca.pem(
        server.ca.leaf(csr.public_key(), csr_names(csr)), *[server.ca.intermediate] * 99
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match="chain of 100 certificates"):
            await obtain_certificate(client, ["example.test"], [])


async def test_only_ten_alternate_chains_are_downloaded() -> None:
    server = HostileAcmeServer()
    links = ", ".join(f'<{server.url("/cert/1")}?alt={i}>;rel="alternate"' for i in range(50))
    server.hooks["/cert/1"] = lambda seen: (
        Reply(
            body=server.issue(server.csr),
            content_type="application/pem-certificate-chain",
            headers={"Link": links},
        )
        if server.csr is not None
        else None
    )
    async with server.client() as client:
        issued = await obtain_certificate(client, ["example.test"], [])
        chains = await client.download_chains(issued.order)
    assert len(issued.chain.alternates) == 10
    assert len(chains) == 11
    assert len(server.requests_to("/cert/1")) == 12


# -- renewalInfo windows (RFC 9773 §4.2) ----------------------------------------------------

ABSURD_WINDOWS = {
    "start-after-end": ("2025-07-02T00:00:00Z", "2025-07-01T00:00:00Z"),
    "go-zero-time": ("0001-01-01T00:00:00Z", "2025-07-01T00:00:00Z"),
    "year-9999": ("2025-07-01T00:00:00Z", "9999-12-31T23:59:59Z"),
    "past-max-with-offset": ("2025-07-01T00:00:00Z", "9999-12-31T23:59:59-23:59"),
    "before-min-with-offset": ("0001-01-01T00:00:00+01:00", "2025-07-01T00:00:00Z"),
    "not-a-time": ("2025-07-01T00:00:00Z", "tomorrow"),
    "a-number": (1751328000, "2025-07-02T00:00:00Z"),
    "overlong": ("2025-07-01T00:00:00" + "0" * 10_000 + "Z", "2025-07-02T00:00:00Z"),
}


@pytest.mark.parametrize(("start", "end"), ABSURD_WINDOWS.values(), ids=ABSURD_WINDOWS.keys())
async def test_absurd_renewal_window_is_refused(start: object, end: object) -> None:
    server = HostileAcmeServer()
    server.directory["renewalInfo"] = server.url("/renewal-info")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = server.ca.leaf(key.public_key(), ["example.test"])
    server.hooks["/renewal-info/" + certificate_id(leaf)] = always(
        Reply(body={"suggestedWindow": {"start": start, "end": end}})
    )
    async with server.client() as client:
        with pytest.raises(UnsafeResponseError, match=r"suggestedWindow|timestamp"):
            await client.renewal_info(leaf)


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"], ids=["go-zero", "year-9999"]
)
async def test_order_timestamps_at_the_ends_of_time_are_clamped(value: str) -> None:
    server = HostileAcmeServer()
    server.hooks["/order/1"] = always(
        Reply(body=order_body(server, "pending", expires=value, notAfter=value))
    )
    async with server.client() as client:
        order = await client.fetch_order(server.url("/order/1"))
    assert order.expires is not None
    assert order.expires + dt.timedelta(days=3650) <= LATEST_DATETIME
    assert order.expires - dt.timedelta(days=3650) > dt.datetime.min.replace(tzinfo=dt.UTC)


def test_http_date_helper_is_not_hostile() -> None:
    # The control for the Retry-After table: an honest HTTP-date in the future.
    when = email.utils.format_datetime(START + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, START) == 90.0
