"""The directory, the nonce pool, badNonce retries, and what Pebble 2.4 lacks (ARI, profiles).

RFC 8555 §7.1.1 (directory), §7.2 and §6.5 (nonces), RFC 9773 (ARI),
draft-ietf-acme-profiles. Real Pebble only.
"""

from __future__ import annotations

import asyncio

import pytest
from acme_helpers import (
    ACME_ERROR,
    PebbleFactory,
    WireRecorder,
    count,
    free_http_port,
    http_solver,
    new_client,
    registered,
    unique_name,
)

from certherd.acme.client import AcmeClient
from certherd.acme.retry import RetryPolicy
from certherd.crypto.certs import describe_certificate
from certherd.crypto.keys import generate_key
from certherd.errors import FeatureUnsupportedError, TransportError
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nonce_rejecting_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble that refuses half of all good nonces with badNonce."""
    return pebble_factory(nonce_reject_percent=50, http_port=free_http_port())


# -- directory (RFC 8555 §7.1.1) ---------------------------------------------------


async def test_an_untrusted_ca_certificate_names_the_ca_bundle_setting(
    pebble: PebbleServer,
) -> None:
    """Pebble's HTTPS certificate is from its own test CA: without ``ca_bundle`` the
    TLS check fails, and the error names the setting (the CLI says --ca-bundle)."""
    async with AcmeClient(pebble.directory_url, generate_key()) as client:
        with pytest.raises(TransportError, match="TLS verification") as caught:
            await client.directory()
    assert caught.value.settings == ("ca_bundle",)
    assert "give the CA's root as ca_bundle if it is a private CA" in str(caught.value)


async def test_directory_lists_every_resource_and_meta(pebble: PebbleServer) -> None:
    async with new_client(pebble) as client:
        directory = await client.directory()
    base = pebble.directory_url.removesuffix("/dir")
    for url in (
        directory.new_nonce,
        directory.new_account,
        directory.new_order,
        directory.revoke_cert,
        directory.key_change,
    ):
        assert url.startswith(base + "/")
    assert len({directory.new_nonce, directory.new_account, directory.new_order}) == 3
    assert directory.meta.terms_of_service is not None
    assert directory.meta.terms_of_service.startswith("data:text/plain,")
    assert directory.meta.external_account_required is False
    # Pebble 2.4 offers no pre-authorization, no ARI and no profiles.
    assert directory.new_authz is None
    assert directory.renewal_info is None
    assert dict(directory.meta.profiles) == {}


async def test_directory_is_fetched_once_per_client(pebble: PebbleServer) -> None:
    async with new_client(pebble) as client:
        first = await client.directory()
        second = await client.directory()
        assert second is first
        assert count(client.transport.trace, "GET", "directory") == 1
        refreshed = await client.directory(refresh=True)
        assert count(client.transport.trace, "GET", "directory") == 2
    assert refreshed.new_order == first.new_order


# -- the nonce pool (RFC 8555 §6.5, §7.2) --------------------------------------------


async def test_one_new_nonce_serves_a_sequence_of_posts(pebble: PebbleServer) -> None:
    """Every response carries a Replay-Nonce, so newNonce is asked only for the first POST.

    The session Pebble refuses 5% of nonces: a badNonce answer carries a fresh nonce too,
    so even a retried POST needs no newNonce.
    """
    async with registered(pebble) as client:
        trace = client.transport.trace
        assert count(trace, "HEAD", "newNonce") == 1
        for _ in range(5):
            await client.fetch_account()
        order = await client.new_order([unique_name("nonce")])
        await client.fetch_order(order.url)
        await client.fetch_authorization(order.authorizations[0])
        await client.update_account(["mailto:nonce@certherd.test"])
        posts = sum(1 for method, _ in trace if method == "POST")
        assert posts >= 10
        assert count(trace, "HEAD", "newNonce") == 1


async def test_concurrent_posts_each_fetch_a_nonce_when_the_pool_is_empty(
    pebble: PebbleServer,
) -> None:
    """The pool holds one nonce after a POST; concurrent POSTs beyond it ask newNonce."""
    async with registered(pebble) as client:
        before = count(client.transport.trace, "HEAD", "newNonce")
        accounts = await asyncio.gather(*(client.fetch_account() for _ in range(4)))
        assert {account.url for account in accounts} == {client.account_url}
        asked = count(client.transport.trace, "HEAD", "newNonce") - before
        assert 1 <= asked <= 3


async def test_half_the_nonces_refused_still_issues(nonce_rejecting_pebble: PebbleServer) -> None:
    """badNonce is retried with the nonce from the error (RFC 8555 §6.5) through a whole order.

    At 50% a POST fails 10 times in a row (the default limit) once in 1024 tries, about
    one run in 70 for the ~15 POSTs here; 30 tries make that one in a billion.
    """
    server = nonce_rejecting_pebble
    recorder = WireRecorder()
    names = [unique_name("nonce-a"), unique_name("nonce-b"), unique_name("nonce-c")]
    async with registered(
        server,
        retry=RetryPolicy(bad_nonce_attempts=30),
        http_client=recorder.http_client(server),
    ) as client:
        issued = await obtain_certificate(client, names, [http_solver(server)])
        trace = list(client.transport.trace)

    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    posts = recorder.posts()
    bad_nonces = [p for p in posts if p.problem_type == ACME_ERROR + "badNonce"]
    assert bad_nonces, "at 50% rejection some POST must have been refused"
    assert all(p.status == 400 for p in bad_nonces)
    # Every POST on the wire is in the trace; each refused one was sent again.
    assert sum(1 for method, _ in trace if method == "POST") == len(posts)
    assert all(p.status < 400 for p in posts if p not in bad_nonces)
    retried = {p.url for p in bad_nonces}
    for url in retried:
        answers = [p.status for p in posts if p.url == url]
        assert any(status < 400 for status in answers), f"{url} was never sent again"


# -- what Pebble 2.4 does not offer ---------------------------------------------------


async def test_renewal_info_without_ari_is_unsupported(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, [unique_name("ari")], [http_solver(pebble)])
        before = len(client.transport.trace)
        with pytest.raises(FeatureUnsupportedError, match="renewalInfo"):
            await client.renewal_info(issued.chain.leaf)
        assert len(client.transport.trace) == before  # nothing was sent


async def test_replaces_is_not_sent_to_a_ca_without_ari(pebble: PebbleServer) -> None:
    recorder = WireRecorder()
    name = unique_name("replaces")
    async with registered(pebble, http_client=recorder.http_client(pebble)) as client:
        order = await client.new_order([name], replaces="aaaa.bbbb")
        new_order_url = (await client.directory()).new_order
    assert order.status == "pending"
    assert order.replaces is None
    sent = [p.payload for p in recorder.posts() if p.url == new_order_url and p.status == 201]
    assert sent == [{"identifiers": [{"type": "dns", "value": name}]}]


async def test_profile_without_profiles_is_unsupported(pebble: PebbleServer) -> None:
    async with registered(pebble) as client:
        with pytest.raises(FeatureUnsupportedError, match="offers no profiles") as caught:
            await client.new_order([unique_name("profile")], profile="x")
        assert caught.value.settings == ("profile",)
        assert "leave profile unset (it is 'x')" in str(caught.value)
        assert count(client.transport.trace, "POST", "newOrder") == 0
