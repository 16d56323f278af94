"""Orders and authorizations against a real Pebble.

RFC 8555 §7.4 (newOrder, notBefore/notAfter), §7.1.2.1 (orders list), §7.5 and §7.5.2
(authorizations, deactivation), RFC 8738 (IP identifiers), §7.1.3 and §8.4 (wildcards
over dns-01).
"""

from __future__ import annotations

import datetime as dt

import pytest
from acme_helpers import (
    CHALLENGE_POST,
    Dns01ChalltestsrvSolver,
    PebbleFactory,
    count,
    dns01_value,
    free_http_port,
    http_solver,
    registered,
    txt_records,
    unique_name,
)

from certherd.acme.messages import Identifier, Status
from certherd.challenges.base import ChallengeTask
from certherd.challenges.http01 import Http01StandaloneSolver
from certherd.crypto.certs import describe_certificate
from certherd.crypto.csr import build_csr
from certherd.crypto.keys import generate_key
from certherd.errors import CertificateMismatchError, ConfigError, MalformedError
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def paging_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble listing two orders per page (no badNonce, so the trace counts requests)."""
    return pebble_factory(orders_per_page=2, nonce_reject_percent=0)


@pytest.fixture(scope="module")
def reusing_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble that always reuses an account's valid authorizations (and no badNonce)."""
    return pebble_factory(
        authz_reuse_percent=100, nonce_reject_percent=0, http_port=free_http_port()
    )


# -- newOrder and fetch (RFC 8555 §7.4) ------------------------------------------------


async def test_new_order_for_dns_names(pebble: PebbleServer) -> None:
    names = [unique_name("order-a"), unique_name("order-b")]
    async with registered(pebble) as client:
        order = await client.new_order(names)
        fetched = await client.fetch_order(order.url)
    assert order.status is Status.PENDING
    # Pebble lists identifiers and authorizations in an order of its choosing, each time.
    assert set(order.identifiers) == {Identifier.dns(name) for name in names}
    assert len(order.authorizations) == 2
    assert order.certificate is None
    assert order.expires is not None
    assert order.expires > dt.datetime.now(dt.UTC)
    assert fetched.url == order.url
    assert fetched.status is Status.PENDING
    assert set(fetched.identifiers) == set(order.identifiers)
    assert set(fetched.authorizations) == set(order.authorizations)
    assert fetched.finalize == order.finalize


async def test_new_order_mixes_dns_and_ip_identifiers(pebble: PebbleServer) -> None:
    name = unique_name("mixed")
    async with registered(pebble) as client:
        order = await client.new_order([name, "127.0.0.1"])
    assert set(order.identifiers) == {Identifier("dns", name), Identifier("ip", "127.0.0.1")}
    assert len(order.authorizations) == 2


async def test_new_order_refusals(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        with pytest.raises(MalformedError, match="illegal character"):
            await client.new_order(["bad_name.certherd.test"])
        sent = count(client.transport.trace, "POST", "newOrder")
        with pytest.raises(ConfigError, match="at least one name") as caught:
            await client.new_order([])
        assert caught.value.settings == ("identifiers",)  # not the CLI's "-d NAME"
        assert count(client.transport.trace, "POST", "newOrder") == sent  # nothing sent


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
async def test_ip_identifier_over_http01(pebble: PebbleServer, address: str) -> None:
    """RFC 8738: Pebble validates http-01 for an IP by connecting to that very address."""
    solver = Http01StandaloneSolver(port=pebble.options.http_port, host=address)
    async with registered(pebble) as client:
        order = await client.new_order([address])
        authorization = await client.fetch_authorization(order.authorizations[0])
        issued = await obtain_certificate(client, [address], [solver])
    assert authorization.identifier == Identifier("ip", address)
    # RFC 8738 §7: no dns-01 for an IP address.
    assert {c.type for c in authorization.challenges} == {"http-01", "tls-alpn-01"}
    info = describe_certificate(issued.chain.leaf)
    assert info.ip_addresses == (address,)
    assert info.dns_names == ()
    assert solver.requests_served >= 1


async def test_wildcard_and_base_name_over_dns01(pebble: PebbleServer) -> None:
    base = unique_name("wild")
    names = [f"*.{base}", base]
    solver = Dns01ChalltestsrvSolver(pebble)
    host = f"_acme-challenge.{base}."
    async with registered(pebble) as client:
        order = await client.new_order(names)
        authorizations = [await client.fetch_authorization(u) for u in order.authorizations]
        issued = await obtain_certificate(client, names, [solver])
    wildcard = next(a for a in authorizations if a.wildcard)
    # RFC 8555 §7.1.4: the wildcard's authorization names the base domain, flagged.
    assert wildcard.identifier == Identifier.dns(base)
    assert wildcard.full_identifier == Identifier.dns(f"*.{base}")
    assert [c.type for c in wildcard.challenges] == ["dns-01"]
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    # Both answers went to one TXT name, with two different values; both were removed.
    assert [h for h, _ in solver.presented] == [host, host]
    assert len({v for _, v in solver.presented}) == 2
    assert sorted(solver.cleaned) == sorted(solver.presented)
    assert txt_records(pebble, host) == []


async def test_mixed_solvers_each_take_what_they_support(pebble: PebbleServer) -> None:
    """The base name goes to http-01 (first in the list), the wildcard to dns-01."""
    base = unique_name("mixed-solvers")
    http, dns = http_solver(pebble), Dns01ChalltestsrvSolver(pebble)
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, [base, f"*.{base}"], [http, dns])
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted([base, f"*.{base}"])
    assert http.requests_served >= 1
    assert len(dns.presented) == 1
    assert dns.cleaned == dns.presented


async def test_wildcard_without_a_dns01_solver_is_a_config_error(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        with pytest.raises(ConfigError, match="wildcards need dns-01"):
            await obtain_certificate(client, [f"*.{unique_name('wild')}"], [http_solver(pebble)])


async def test_dns01_for_a_plain_name(pebble: PebbleServer) -> None:
    name = unique_name("dns01")
    solver = Dns01ChalltestsrvSolver(pebble)
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, [name], [solver])
        authorization = await client.fetch_authorization(issued.order.authorizations[0])
        challenge = authorization.challenge("dns-01")
        assert challenge is not None
        assert challenge.token is not None
        expected = dns01_value(client.key_authorization(challenge.token))
    assert authorization.status is Status.VALID
    assert challenge.status is Status.VALID
    assert describe_certificate(issued.chain.leaf).dns_names == (name,)
    assert solver.presented == [(f"_acme-challenge.{name}.", expected)]
    assert txt_records(pebble, f"_acme-challenge.{name}.") == []


# -- notBefore / notAfter (RFC 8555 §7.4) ----------------------------------------------


async def test_not_before_and_not_after_are_accepted_and_echoed(pebble: PebbleServer) -> None:
    """Pebble 2.4 accepts both fields, echoes them in the order and puts them in the leaf."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before, not_after = now + dt.timedelta(hours=5), now + dt.timedelta(days=2)
    name = unique_name("window")
    solver = http_solver(pebble)
    async with registered(pebble) as client:
        order = await client.new_order([name], not_before=not_before, not_after=not_after)
        assert order.not_before == not_before
        assert order.not_after == not_after
        authorization = await client.fetch_authorization(order.authorizations[0])
        challenge = authorization.challenge("http-01")
        assert challenge is not None
        assert challenge.token is not None
        task = ChallengeTask(
            authorization.identifier, challenge, client.key_authorization(challenge.token)
        )
        handle = await solver.present(task)
        try:
            await client.respond_challenge(challenge)
            await client.wait_authorization(authorization.url)
        finally:
            await solver.cleanup(handle)
        key = generate_key()
        order = await client.finalize(order, build_csr(key, [name]))
        assert order.certificate is not None
        chain = await client.download_certificate(order.certificate)
        # The leaf is not valid yet: the client's own check says so.
        with pytest.raises(CertificateMismatchError, match="not valid yet"):
            client.verify_chain(chain, key.public_key(), order.identifiers)
    assert chain.leaf.not_valid_before_utc == not_before
    assert chain.leaf.not_valid_after_utc == not_after


async def test_obtain_with_not_after_shortens_the_certificate(pebble: PebbleServer) -> None:
    not_after = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    async with registered(pebble) as client:
        issued = await obtain_certificate(
            client, [unique_name("short")], [http_solver(pebble)], not_after=not_after
        )
    assert issued.order.not_after == not_after
    assert issued.chain.leaf.not_valid_after_utc == not_after
    assert issued.chain.leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC)


# -- the account's orders list (RFC 8555 §7.1.2.1) -----------------------------------


async def test_list_orders_follows_every_page(paging_pebble: PebbleServer) -> None:
    async with registered(paging_pebble) as client:
        created = [(await client.new_order([unique_name(f"page{i}")])).url for i in range(5)]
        pages_before = count(client.transport.trace, "POST", "orders list")
        listed = [url async for url in client.list_orders()]
        pages = count(client.transport.trace, "POST", "orders list") - pages_before
    assert sorted(listed) == sorted(created)
    assert len(listed) == len(set(listed)) == 5
    assert pages == 3  # 2 + 2 + 1


async def test_list_orders_of_a_new_account_is_empty(paging_pebble: PebbleServer) -> None:
    async with registered(paging_pebble) as client:
        assert [url async for url in client.list_orders()] == []


# -- authorizations (RFC 8555 §7.5) ----------------------------------------------------


async def test_fetch_authorization(pebble: PebbleServer) -> None:
    name = unique_name("authz")
    async with registered(pebble) as client:
        order = await client.new_order([name])
        authorization = await client.fetch_authorization(order.authorizations[0])
        key_authorization = client.key_authorization("token")
    assert authorization.url == order.authorizations[0]
    assert authorization.identifier == Identifier.dns(name)
    assert authorization.status is Status.PENDING
    assert authorization.wildcard is False
    assert authorization.expires is not None
    assert {c.type for c in authorization.challenges} == {"http-01", "dns-01", "tls-alpn-01"}
    for challenge in authorization.challenges:
        assert challenge.status is Status.PENDING
        assert challenge.token is not None
        assert len(challenge.token) >= 22
        assert challenge.url.startswith(pebble.directory_url.removesuffix("/dir"))
    assert key_authorization.startswith("token.")


async def test_deactivate_authorization(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        order = await client.new_order([unique_name("deactivate")])
        url = order.authorizations[0]
        deactivated = await client.deactivate_authorization(url)
        fetched = await client.fetch_authorization(url)
        order = await client.fetch_order(order.url)
    assert deactivated.status is Status.DEACTIVATED
    assert fetched.status is Status.DEACTIVATED
    # RFC 8555 §7.1.6 would make the order invalid; Pebble 2.4 reports it deactivated.
    assert order.status is Status.DEACTIVATED


async def test_valid_authorizations_are_reused(reusing_pebble: PebbleServer) -> None:
    names = [unique_name("reuse-a"), unique_name("reuse-b")]
    solver = http_solver(reusing_pebble)
    async with registered(reusing_pebble) as client:
        first = await obtain_certificate(client, names, [solver])
        challenges_first = count(client.transport.trace, *CHALLENGE_POST)
        mark = len(client.transport.trace)
        second = await obtain_certificate(client, names, [solver])
        after = list(client.transport.trace)[mark:]
    assert first.reused_authorizations == 0
    assert challenges_first == 2
    assert second.reused_authorizations == len(names)
    assert count(after, *CHALLENGE_POST) == 0
    assert second.order.url != first.order.url
    assert second.chain.leaf.serial_number != first.chain.leaf.serial_number
    assert set(second.order.authorizations) == set(first.order.authorizations)
