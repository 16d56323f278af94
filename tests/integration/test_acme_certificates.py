"""Finalize, download, verify and choose chains against a real Pebble.

RFC 8555 §7.4 (finalize), §7.4.2 (download, ``Link: rel="alternate"`` chains). The
chain is checked against Pebble's own roots from its management API.
"""

from __future__ import annotations

import pytest
from acme_helpers import (
    ACME_ERROR,
    PebbleFactory,
    WireRecorder,
    free_http_port,
    http_solver,
    registered,
    unique_name,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from certherd.acme.messages import Identifier, Status
from certherd.acme.retry import PollPolicy
from certherd.challenges.base import ChallengeTask
from certherd.crypto.certs import describe_certificate, load_pem_chain
from certherd.crypto.csr import build_csr
from certherd.crypto.keys import KeyType, generate_key, public_key_equal
from certherd.errors import CertificateMismatchError, OrderNotReadyError
from certherd.manager.obtain import obtain_certificate, select_chain
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def alternate_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble offering two alternate chains besides the default one."""
    return pebble_factory(alternate_roots=2, http_port=free_http_port())


def _root(server: PebbleServer, index: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate(server.roots_pem(index))


def _common_name(name: x509.Name) -> str:
    value = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


# -- finalize and download (RFC 8555 §7.4, §7.4.2) ----------------------------------


async def test_finalize_step_by_step_and_download(pebble: PebbleServer) -> None:
    names = [unique_name("final-a"), unique_name("final-b")]
    solver = http_solver(pebble)
    key = generate_key(KeyType.EC384)
    async with registered(pebble) as client:
        order = await client.new_order(names)
        csr = build_csr(key, names)
        for url in order.authorizations:
            authorization = await client.fetch_authorization(url)
            challenge = authorization.challenge("http-01")
            assert challenge is not None
            assert challenge.token is not None
            task = ChallengeTask(
                authorization.identifier, challenge, client.key_authorization(challenge.token)
            )
            handle = await solver.present(task)
            try:
                await client.respond_challenge(challenge)
                await client.wait_authorization(url)
            finally:
                await solver.cleanup(handle)
        ready = await client.fetch_order(order.url)
        valid = await client.finalize(order, csr)
        assert valid.certificate is not None
        chain = await client.download_certificate(valid.certificate)
        client.verify_chain(chain, key.public_key(), valid.identifiers)
    assert ready.status is Status.READY
    assert valid.status is Status.VALID
    assert public_key_equal(chain.leaf.public_key(), key.public_key())
    assert sorted(describe_certificate(chain.leaf).dns_names) == sorted(names)
    # Leaf and intermediate; the intermediate is signed by Pebble's root 0.
    assert len(chain.certificates) == 2
    chain.leaf.verify_directly_issued_by(chain.certificates[1])
    chain.certificates[1].verify_directly_issued_by(_root(pebble, 0))
    assert chain.pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert load_pem_chain(chain.leaf_pem + chain.issuers_pem) == list(chain.certificates)


async def test_finalize_before_the_authorizations_are_valid(pebble: PebbleServer) -> None:
    """RFC 8555 §7.4: Pebble answers orderNotReady; the client waits briefly for "ready"
    and, as the order stays pending, gives the CA's orderNotReady back (not a long hang)."""
    name = unique_name("early")
    recorder = WireRecorder()
    async with registered(
        pebble, poll=PollPolicy(timeout=0.5), http_client=recorder.http_client(pebble)
    ) as client:
        order = await client.new_order([name])
        with pytest.raises(OrderNotReadyError):
            await client.finalize(order, build_csr(generate_key(), [name]))
        order = await client.fetch_order(order.url)
    finalizes = [e for e in recorder.posts() if e.url == order.finalize]
    refusals = {e.problem_type for e in finalizes} - {ACME_ERROR + "badNonce"}
    assert refusals == {ACME_ERROR + "orderNotReady"}
    assert all(e.status == 403 for e in finalizes if e.problem_type in refusals)
    assert order.status is Status.PENDING


async def test_obtain_returns_a_verified_certificate(pebble: PebbleServer) -> None:
    names = [unique_name("verified"), "127.0.0.1"]
    async with registered(pebble) as client:
        issued = await obtain_certificate(
            client, names, [http_solver(pebble)], key_type=KeyType.RSA2048
        )
    info = describe_certificate(issued.chain.leaf)
    assert info.dns_names == (names[0],)
    assert info.ip_addresses == ("127.0.0.1",)
    assert public_key_equal(issued.chain.leaf.public_key(), issued.key.public_key())
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    assert issued.key.key_size == 2048
    assert issued.chains == (issued.chain,)
    assert issued.order.status is Status.VALID
    issued.chain.certificates[-1].verify_directly_issued_by(_root(pebble, 0))


async def test_verify_chain_refuses_a_wrong_key_or_wrong_names(pebble: PebbleServer) -> None:
    name = unique_name("mismatch")
    async with registered(pebble) as client:
        issued = await obtain_certificate(client, [name], [http_solver(pebble)])
        chain, key = issued.chain, issued.key.public_key()
        client.verify_chain(chain, key, [Identifier.dns(name)])  # the right answer passes
        with pytest.raises(CertificateMismatchError, match="different public key"):
            client.verify_chain(chain, generate_key().public_key(), [Identifier.dns(name)])
        with pytest.raises(CertificateMismatchError, match="missing"):
            client.verify_chain(
                chain, key, [Identifier.dns(name), Identifier.dns(unique_name("extra"))]
            )
        with pytest.raises(CertificateMismatchError, match="unexpected"):
            client.verify_chain(chain, key, [Identifier.dns(unique_name("other"))])
        with pytest.raises(CertificateMismatchError, match="unexpected"):
            client.verify_chain(chain, key, [])
        with pytest.raises(CertificateMismatchError, match=r"missing ip:127\.0\.0\.1"):
            client.verify_chain(chain, key, [Identifier.dns(name), Identifier.ip("127.0.0.1")])


# -- alternate chains (RFC 8555 §7.4.2) -----------------------------------------------


async def test_download_chains_returns_every_alternate(alternate_pebble: PebbleServer) -> None:
    async with registered(alternate_pebble) as client:
        issued = await obtain_certificate(
            client, [unique_name("alt")], [http_solver(alternate_pebble)]
        )
        chains = await client.download_chains(issued.order)
    assert len(chains) == 3
    assert len(chains[0].alternates) == 2
    assert [c.url for c in chains[1:]] == list(chains[0].alternates)
    roots = [_root(alternate_pebble, index) for index in range(3)]
    root_names = [_common_name(root.subject) for root in roots]
    assert len(set(root_names)) == 3
    # One leaf, one issuing key; each chain ends under a different root.
    for chain in chains:
        assert chain.leaf == issued.chain.leaf
        assert chain.issuer_names()[-1] in root_names
    tops = {chain.issuer_names()[-1] for chain in chains}
    assert tops == set(root_names)
    assert chains[0].issuer_names()[-1] == root_names[0]
    for chain in chains:
        root = roots[root_names.index(chain.issuer_names()[-1])]
        chain.certificates[-1].verify_directly_issued_by(root)


async def test_select_chain_by_root_name(alternate_pebble: PebbleServer) -> None:
    wanted = _common_name(_root(alternate_pebble, 1).subject)
    async with registered(alternate_pebble) as client:
        issued = await obtain_certificate(
            client, [unique_name("select")], [http_solver(alternate_pebble)]
        )
        chains = await client.download_chains(issued.order)
    chosen = select_chain(chains, wanted)
    assert chosen is not chains[0]
    assert chosen.issuer_names()[-1] == wanted
    assert select_chain(chains, wanted.upper()) is chosen  # names compare case-insensitively
    assert select_chain(chains, "No Such Root") is chains[0]
    assert select_chain(chains, None) is chains[0]


async def test_obtain_with_preferred_chain(alternate_pebble: PebbleServer) -> None:
    root = _root(alternate_pebble, 1)
    wanted = _common_name(root.subject)
    async with registered(alternate_pebble) as client:
        issued = await obtain_certificate(
            client,
            [unique_name("preferred")],
            [http_solver(alternate_pebble)],
            preferred_chain=wanted,
        )
    assert len(issued.chains) == 3
    assert issued.chain is not issued.chains[0]
    assert issued.chain.issuer_names()[-1] == wanted
    issued.chain.certificates[-1].verify_directly_issued_by(root)
