"""tls-alpn-01 against a real Pebble (RFC 8737; RFC 8738 §6 for IP addresses).

Pebble's validator connects to its ``tlsPort`` on the address its mock DNS gives for
every name (127.0.0.1), with SNI set to the name (or, for an IP address, its
``in-addr.arpa`` name) and ALPN ``acme-tls/1``. What Pebble 2.4 was seen to do:

- it offers tls-alpn-01 for IP identifiers too (with http-01; dns-01 is not offered);
- it validates each challenge with 3 concurrent connections (``concurrentValidations``
  in its ``va/va.go``), so a challenge costs the solver 3 handshakes;
- it checks the acmeIdentifier value as a DER OCTET STRING (``asn1.Unmarshal``).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from acme_helpers import PebbleFactory, registered, unique_name

from certherd.acme.messages import Identifier
from certherd.challenges.tlsalpn01 import TlsAlpn01Solver
from certherd.crypto.certs import describe_certificate
from certherd.manager.obtain import obtain_certificate
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
VALIDATIONS_PER_CHALLENGE = 3  # Pebble's va.go: concurrentValidations = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def tls_pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble whose validator connects to a free port for tls-alpn-01; no authz reuse."""
    return pebble_factory(tls_port=free_port(), authz_reuse_percent=0)


def tls_solver(server: PebbleServer) -> TlsAlpn01Solver:
    return TlsAlpn01Solver(port=server.options.tls_port, host=LOOPBACK)


async def handshakes_reach(solver: TlsAlpn01Solver, expected: int) -> int:
    """The solver's count once it stops moving: the server side ends after the client."""
    async with asyncio.timeout(5):
        while solver.handshakes_completed < expected:
            await asyncio.sleep(0.01)
    return solver.handshakes_completed


def assert_listener_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2).close()


async def test_pebble_offers_tls_alpn_01_for_an_ip_address(tls_pebble: PebbleServer) -> None:
    async with registered(tls_pebble) as client:
        order = await client.new_order([Identifier.ip(LOOPBACK)])
        (url,) = order.authorizations
        authorization = await client.fetch_authorization(url)
    offered = {challenge.type for challenge in authorization.challenges}
    assert offered == {"http-01", "tls-alpn-01"}  # RFC 8738 §7: no dns-01 for IPs


async def test_two_names_in_one_order(tls_pebble: PebbleServer) -> None:
    solver = tls_solver(tls_pebble)
    names = [unique_name("alpn-a"), unique_name("alpn-b")]
    async with registered(tls_pebble) as client:
        issued = await obtain_certificate(client, names, [solver])
    assert sorted(describe_certificate(issued.chain.leaf).dns_names) == sorted(names)
    expected = len(names) * VALIDATIONS_PER_CHALLENGE
    assert await handshakes_reach(solver, expected) == expected
    assert solver.connections_refused == 0
    assert solver.server_names == ()
    assert_listener_closed(tls_pebble.options.tls_port)


async def test_ip_address_identifier(tls_pebble: PebbleServer) -> None:
    solver = tls_solver(tls_pebble)
    async with registered(tls_pebble) as client:
        issued = await obtain_certificate(client, [LOOPBACK], [solver])
    info = describe_certificate(issued.chain.leaf)
    assert info.ip_addresses == (LOOPBACK,)
    assert info.dns_names == ()
    # Answered only under SNI 1.0.0.127.in-addr.arpa: any other name would be refused.
    assert await handshakes_reach(solver, VALIDATIONS_PER_CHALLENGE) == 3
    assert solver.connections_refused == 0
    assert_listener_closed(tls_pebble.options.tls_port)


async def test_concurrent_orders_share_one_listener(tls_pebble: PebbleServer) -> None:
    solver = tls_solver(tls_pebble)
    first = [unique_name("alpn-c"), LOOPBACK]
    second = [unique_name("alpn-d")]
    async with registered(tls_pebble) as one, registered(tls_pebble) as two:
        issued = await asyncio.gather(
            obtain_certificate(one, first, [solver]),
            obtain_certificate(two, second, [solver]),
        )
    assert describe_certificate(issued[0].chain.leaf).dns_names == (first[0],)
    assert describe_certificate(issued[0].chain.leaf).ip_addresses == (LOOPBACK,)
    assert describe_certificate(issued[1].chain.leaf).dns_names == (second[0],)
    expected = 3 * VALIDATIONS_PER_CHALLENGE
    assert await handshakes_reach(solver, expected) == expected
    assert_listener_closed(tls_pebble.options.tls_port)
