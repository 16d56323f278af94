"""Property tests over everything a CA sends (issue 9 item 6).

For directories, problem documents, orders, authorizations, ``Link`` and ``Retry-After``
headers, whole HTTP answers, PEM chains and renewalInfo bodies drawn by hypothesis, the
client (1) raises nothing but :class:`CertherdError`, (2) ends: every example runs under
a real-time guard, and the FakeClock's time stays within the documented budgets, and
(3) never hands back a certificate that an independent check refuses.

CI settings: few examples, derandomized (the same examples every run), no database, no
per-example deadline. The coverage-guided, time-bounded fuzzer is scripts/fuzz_acme.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import (
    BASE_URL,
    START,
    FakeClock,
    HostileAcmeServer,
    Reply,
    TestCA,
    always,
    order_body,
    pem_of_der,
    script,
)
from hostile_ca_data import (
    VALID_WINDOW,
    Answer,
    answers,
    authorizations,
    bodies,
    directories,
    json_values,
    link_headers,
    maybe,
    near,
    orders,
    problems,
    respond,
    retry_after_values,
    timestamps,
    urls,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from certherd.acme import PollPolicy, RetryPolicy
from certherd.acme.retry import parse_retry_after
from certherd.acme.transport import MAX_LINKS, Response
from certherd.crypto.ari import certificate_id, pick_in_window
from certherd.errors import MAX_RETRY_AFTER, CertherdError, Problem
from certherd.manager import obtain_certificate

T = TypeVar("T")

FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GUARD = 20.0  # real seconds one example may take before it counts as a hang
RETRY = RetryPolicy()
POLL = PollPolicy(timeout=120.0)
FAKE_TIME_BOUND = RETRY.total_budget + POLL.timeout + POLL.retry_after_cap + RETRY.retry_after_cap

# -- running one example ------------------------------------------------------------------------


def run(make: Callable[[], Awaitable[T]]) -> T | CertherdError:
    """Run ``make()`` to its end under the real-time guard; a CertherdError is a result."""

    async def guarded() -> T | CertherdError:
        async with asyncio.timeout(GUARD):
            try:
                return await make()
            except CertherdError as error:
                str(error)  # one line, whatever the CA sent
                return error

    result = asyncio.run(guarded())
    event(f"outcome: {type(result).__name__}")  # see --hypothesis-show-statistics
    return result


def _client(server: HostileAcmeServer, clock: FakeClock) -> Any:
    return server.client(clock=clock, retry=RETRY, poll=POLL)


# -- the properties -----------------------------------------------------------------------------


@FUZZ
@given(value=retry_after_values)
def test_retry_after_is_none_or_within_ten_years(value: str) -> None:
    seconds = parse_retry_after(value, START)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER
    if seconds is not None:
        _ = START + dt.timedelta(seconds=seconds)


@FUZZ
@given(header=link_headers)
def test_link_headers_never_raise_but_our_own(header: str) -> None:
    link = header.encode()
    response = Response(BASE_URL + "/orders/1", 200, httpx.Headers({"Link": link}), b"")
    for rel in ("next", "alternate"):
        try:
            found = response.links(rel)
        except CertherdError:
            continue
        assert len(found) <= MAX_LINKS
        assert all(isinstance(url, str) for url in found)


@FUZZ
@given(document=problems)
def test_problem_documents_are_read_whatever_they_hold(document: Any) -> None:
    problem = Problem.from_json(document)
    assert isinstance(problem.type, str)
    assert isinstance(problem.detail, str)
    assert problem.status is None or 100 <= problem.status <= 599
    assert "\x1b" not in problem.describe()


@FUZZ
@given(answer=answers(directories))
def test_directory(answer: Answer) -> None:
    server = HostileAcmeServer()
    server.hooks["/directory"] = lambda seen: respond(answer)
    clock = FakeClock()

    async def fetch() -> object:
        async with _client(server, clock) as client:
            return await client.directory()

    run(fetch)
    assert clock.elapsed <= FAKE_TIME_BOUND


@FUZZ
@given(answer=answers(problems))
def test_any_answer_to_a_signed_post(answer: Answer) -> None:
    server = HostileAcmeServer()
    server.hooks["/new-order"] = lambda seen: respond(answer)
    clock = FakeClock()

    async def order() -> object:
        async with _client(server, clock) as client:
            return await client.new_order(["example.test"])

    run(order)
    assert clock.elapsed <= FAKE_TIME_BOUND
    assert len(server.requests_to("/new-order")) <= RETRY.bad_nonce_attempts + 1


@FUZZ
@given(answers_in_turn=st.lists(answers(orders), min_size=1, max_size=4))
def test_order_polling(answers_in_turn: list[Answer]) -> None:
    server = HostileAcmeServer()
    server.hooks["/order/1"] = script(*[respond(a) for a in answers_in_turn])
    # ...and then "processing" for ever, so only the poll timeout ends it.
    server.hooks["/order/1"] = _then(
        server.hooks["/order/1"],
        Reply(body=order_body(server, "processing"), headers={"Retry-After": "7"}),
    )
    clock = FakeClock()

    async def wait() -> object:
        async with _client(server, clock) as client:
            return await client.wait_order(server.url("/order/1"))

    run(wait)
    assert clock.elapsed <= FAKE_TIME_BOUND


@FUZZ
@given(answer=answers(authorizations))
def test_authorization(answer: Answer) -> None:
    server = HostileAcmeServer()
    server.hooks["/authz/1"] = lambda seen: respond(answer)
    clock = FakeClock()

    async def wait() -> object:
        async with _client(server, clock) as client:
            return await client.wait_authorization(server.url("/authz/1"))

    run(wait)
    assert clock.elapsed <= FAKE_TIME_BOUND


@FUZZ
@given(pages=st.lists(st.tuples(bodies(json_values), link_headers), min_size=1, max_size=3))
def test_order_list_pages(pages: list[tuple[bytes, str]]) -> None:
    server = HostileAcmeServer()
    server.hooks["/orders/1"] = script(
        *[
            Reply(200, body, {"Link": link.encode(), "Content-Type": b"application/json"})
            for body, link in pages
        ]
    )
    clock = FakeClock()

    async def collect() -> list[str]:
        async with _client(server, clock) as client:
            return [url async for url in client.list_orders(server.url("/orders/1"))]

    result = run(collect)
    assert isinstance(result, CertherdError | list)
    assert len(server.requests_to("/orders/1")) <= 1001


SHARED_CA = TestCA("Fuzz")
STRANGER = TestCA("Stranger")


def _chain_parts(ca: TestCA, csr: x509.CertificateSigningRequest) -> dict[str, bytes]:
    def pem(certificate: x509.Certificate) -> bytes:
        return pem_of_der(certificate.public_bytes(serialization.Encoding.DER))

    leaf = ca.leaf(csr.public_key(), ["example.test"])
    return {
        "leaf": pem(leaf),
        "intermediate": pem(ca.intermediate),
        "root": pem(ca.root),
        "stranger": pem(STRANGER.intermediate),
        "duplicate-extension": pem_of_der(
            ca.leaf_with_duplicate_extension(csr.public_key(), ["example.test"])
        ),
        "other-name": pem(ca.leaf(csr.public_key(), ["attacker.test"])),
        "garbage": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "leaf-der": leaf.public_bytes(serialization.Encoding.DER),
    }


CHAIN_PARTS = [
    "leaf",
    "intermediate",
    "root",
    "stranger",
    "duplicate-extension",
    "other-name",
    "garbage",
    "leaf-der",
]
pem_recipes = st.tuples(
    st.one_of(
        st.just(["leaf", "intermediate"]),  # honest, until flipped or wrapped in noise
        st.just(["leaf", "intermediate", "root"]),
        st.lists(st.sampled_from(CHAIN_PARTS), max_size=5),
    ),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=3),  # byte flips
    st.binary(max_size=20),  # text around the blocks
)


@settings(FUZZ, max_examples=30)
@given(recipe=pem_recipes)
def test_pem_chains_never_yield_an_unverified_certificate(
    recipe: tuple[list[str], list[tuple[int, int]], bytes],
) -> None:
    parts, flips, noise = recipe
    server = HostileAcmeServer()
    server._ca = SHARED_CA  # one CA for every example: key generation is the slow part

    def issue(csr: x509.CertificateSigningRequest) -> bytes:
        blocks = _chain_parts(SHARED_CA, csr)
        pem = bytearray(noise + b"".join(blocks[p] for p in parts))
        for position, value in flips:
            if pem:
                pem[position % len(pem)] ^= value
        return bytes(pem)

    server.issue = issue
    clock = FakeClock()

    async def obtain() -> Any:
        async with _client(server, clock) as client:
            return await obtain_certificate(client, ["example.test"], [])

    result = run(obtain)
    if not isinstance(result, CertherdError):
        _independent_check(result.chain.certificates, result.key)


def _independent_check(chain: tuple[x509.Certificate, ...], key: Any) -> None:
    """What accepting a certificate means, checked without certherd's own code."""
    leaf = chain[0]
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # DNS names compare without case (RFC 4343).
    assert [name.lower() for name in san.get_values_for_type(x509.DNSName)] == ["example.test"]
    assert leaf.not_valid_before_utc <= START <= leaf.not_valid_after_utc
    for child, issuer in itertools.pairwise(chain):
        child.verify_directly_issued_by(issuer)


@FUZZ
@given(
    window=near(VALID_WINDOW, maybe(start=timestamps, end=timestamps)) | json_values,
    body_extra=maybe(explanationURL=urls),
    retry_after=retry_after_values,
)
def test_renewal_info(window: Any, body_extra: dict[str, Any], retry_after: str) -> None:
    server = HostileAcmeServer()
    server._ca = SHARED_CA
    server.directory["renewalInfo"] = server.url("/renewal-info")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = SHARED_CA.leaf(key.public_key(), ["example.test"])
    body = {"suggestedWindow": window, **body_extra}
    server.hooks["/renewal-info/" + certificate_id(leaf)] = always(
        Reply(body=body, headers={"Retry-After": retry_after})
    )
    clock = FakeClock()

    async def ask() -> Any:
        async with _client(server, clock) as client:
            return await client.renewal_info(leaf)

    info = run(ask)
    if isinstance(info, CertherdError):
        return
    assert info.start <= info.end
    pick = pick_in_window(info.start, info.end)
    # What the manager does with it: no overflow anywhere.
    _ = pick + dt.timedelta(days=366) - dt.timedelta(days=366 * 2)
    if info.retry_after is not None:
        assert 0 <= info.retry_after <= MAX_RETRY_AFTER
        _ = START + dt.timedelta(seconds=info.retry_after)


# -- helpers ------------------------------------------------------------------------------------


def _then(first: Callable[[Any], Any], after: Reply) -> Callable[[Any], Any]:
    def hook(seen: Any) -> Any:
        answer = first(seen)
        return after if answer is None else answer

    return hook
