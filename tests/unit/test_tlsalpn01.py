"""tls-alpn-01 standalone solver (RFC 8737; RFC 8738 §6 for IP addresses).

The certificate is checked byte by byte, and the listener is driven by Python's own
``ssl`` client over loopback: offering ``acme-tls/1`` gets the certificate, anything else
(only ``http/1.1``, no ALPN, an unknown or missing SNI name) fails the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask, Solver
from certherd.challenges.tlsalpn01 import (
    ACME_TLS_PROTOCOL,
    ID_PE_ACME_IDENTIFIER,
    TlsAlpn01Solver,
    acme_identifier_value,
    challenge_certificate,
    server_name,
)
from certherd.errors import ConfigError, UnsafeResponseError

LOOPBACK = "127.0.0.1"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555 §8.3
KEY_AUTHORIZATION = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
# OpenSSL 3.0 prints the alert as "tlsv1 alert no application protocol" (no reason code).
NO_APPLICATION_PROTOCOL = r"(?i)no.application.protocol"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def make_task(
    identifier: Identifier, key_authorization: str = KEY_AUTHORIZATION, token: str = TOKEN
) -> ChallengeTask:
    challenge = Challenge(
        url="https://ca.test/chall/1", type="tls-alpn-01", status=Status.PENDING, token=token
    )
    return ChallengeTask(identifier, challenge, key_authorization)


def expected_extension_value(key_authorization: str) -> bytes:
    """RFC 8737 §3 by hand: DER OCTET STRING (tag 0x04, length 0x20) of SHA-256."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode()).digest()


def handshake(
    port: int, sni: str | None, protocols: list[str] | None = None
) -> tuple[x509.Certificate, str | None]:
    """Connect like a validator; return the certificate served and the ALPN chosen."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed challenge certificate
    if protocols is not None:
        context.set_alpn_protocols(protocols)
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol()


async def validate(
    port: int, sni: str | None, protocols: list[str] | None = None
) -> tuple[x509.Certificate, str | None]:
    return await asyncio.to_thread(handshake, port, sni, protocols)


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for the server side to catch up: with TLS 1.3 the client is done first."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


def accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
        return True
    return False


@pytest.fixture
async def solver() -> AsyncIterator[TlsAlpn01Solver]:
    solver = TlsAlpn01Solver(port=free_port(), host=LOOPBACK)
    yield solver
    for handles in list(solver._presented.values()):
        for handle in list(handles):
            await solver.cleanup(handle)


# -- the certificate (RFC 8737 §3) ---------------------------------------------------------


def test_acme_identifier_value_is_the_der_octet_string_of_the_digest() -> None:
    value = acme_identifier_value(KEY_AUTHORIZATION)
    assert value == expected_extension_value(KEY_AUTHORIZATION)
    assert len(value) == 34
    assert value[:2] == bytes([0x04, 0x20])


def test_certificate_for_a_dns_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = challenge_certificate(Identifier.dns("Www.Example.TEST"), KEY_AUTHORIZATION, key)
    extension = certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    assert extension.value.value == expected_extension_value(KEY_AUTHORIZATION)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(names.value) == [x509.DNSName("www.example.test")]
    assert certificate.issuer == certificate.subject  # self-signed
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert public_key.public_numbers() == key.public_key().public_numbers()
    assert str(ID_PE_ACME_IDENTIFIER.dotted_string) == "1.3.6.1.5.5.7.1.31"


def test_certificate_for_an_ip_address_names_it_as_ip_address() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = challenge_certificate(Identifier.ip("192.0.2.7"), KEY_AUTHORIZATION, key)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(names.value) == [x509.IPAddress(ipaddress.IPv4Address("192.0.2.7"))]


def test_server_names_reverse_map_ip_addresses() -> None:
    # RFC 8738 §6: the SNI name is the IN-ADDR.ARPA / IP6.ARPA reverse mapping.
    assert server_name(Identifier.ip("192.0.2.7")) == "7.2.0.192.in-addr.arpa"
    v6 = server_name(Identifier.ip("2001:db8::1"))
    assert v6 == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa"
    assert server_name(Identifier.dns("WWW.Example.test.")) == "www.example.test"


def test_supports_dns_and_ip_but_not_wildcards() -> None:
    solver = TlsAlpn01Solver()
    assert isinstance(solver, Solver)
    assert solver.supports(Identifier.dns("example.test"))
    assert solver.supports(Identifier.ip("2001:db8::1"))
    assert not solver.supports(Identifier.dns("*.example.test"))
    assert not solver.supports(Identifier("email", "someone@example.test"))


# -- the listener ----------------------------------------------------------------------------


async def test_acme_tls_1_gets_the_challenge_certificate(solver: TlsAlpn01Solver) -> None:
    await solver.present(make_task(Identifier.dns("alpn.example.test")))
    certificate, protocol = await validate(solver.port, "alpn.example.test", [ACME_TLS_PROTOCOL])
    assert protocol == ACME_TLS_PROTOCOL
    extension = certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    assert extension.value.value == expected_extension_value(KEY_AUTHORIZATION)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(names.value) == [x509.DNSName("alpn.example.test")]
    await eventually(lambda: solver.handshakes_completed == 1)


async def test_acme_tls_1_among_other_protocols_is_chosen(solver: TlsAlpn01Solver) -> None:
    await solver.present(make_task(Identifier.dns("alpn.example.test")))
    offered = ["h2", ACME_TLS_PROTOCOL, "http/1.1"]
    _, protocol = await validate(solver.port, "alpn.example.test", offered)
    assert protocol == ACME_TLS_PROTOCOL


async def test_only_http11_fails_the_handshake(solver: TlsAlpn01Solver) -> None:
    await solver.present(make_task(Identifier.dns("alpn.example.test")))
    with pytest.raises(ssl.SSLError, match=NO_APPLICATION_PROTOCOL):
        await validate(solver.port, "alpn.example.test", ["http/1.1"])
    with pytest.raises(ssl.SSLError, match=NO_APPLICATION_PROTOCOL):
        await validate(solver.port, "alpn.example.test", None)  # no ALPN at all
    assert solver.connections_refused == 2
    assert solver.handshakes_completed == 0


async def test_unknown_or_missing_server_name_fails_the_handshake(
    solver: TlsAlpn01Solver,
) -> None:
    await solver.present(make_task(Identifier.dns("alpn.example.test")))
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await validate(solver.port, "other.example.test", [ACME_TLS_PROTOCOL])
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await validate(solver.port, None, [ACME_TLS_PROTOCOL])
    assert solver.connections_refused == 2


async def test_ipv4_identifier_is_answered_by_its_reverse_name(solver: TlsAlpn01Solver) -> None:
    await solver.present(make_task(Identifier.ip("127.0.0.1")))
    assert solver.server_names == ("1.0.0.127.in-addr.arpa",)
    certificate, protocol = await validate(
        solver.port, "1.0.0.127.in-addr.arpa", [ACME_TLS_PROTOCOL]
    )
    assert protocol == ACME_TLS_PROTOCOL
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(names.value) == [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    # the address itself is not a name it answers
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await validate(solver.port, "127.0.0.1.example.test", [ACME_TLS_PROTOCOL])


async def test_several_names_at_once_share_one_key(solver: TlsAlpn01Solver) -> None:
    first = await solver.present(make_task(Identifier.dns("a.example.test"), "a." + "x" * 43))
    await solver.present(make_task(Identifier.dns("b.example.test"), "b." + "y" * 43))
    cert_a, _ = await validate(solver.port, "A.example.test", [ACME_TLS_PROTOCOL])
    cert_b, _ = await validate(solver.port, "b.example.test", [ACME_TLS_PROTOCOL])
    for certificate, name, key_authorization in (
        (cert_a, "a.example.test", "a." + "x" * 43),
        (cert_b, "b.example.test", "b." + "y" * 43),
    ):
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert list(names.value) == [x509.DNSName(name)]
        extension = certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
        assert isinstance(extension.value, x509.UnrecognizedExtension)
        assert extension.value.value == expected_extension_value(key_authorization)
    key_a, key_b = cert_a.public_key(), cert_b.public_key()
    assert isinstance(key_a, ec.EllipticCurvePublicKey)
    assert isinstance(key_b, ec.EllipticCurvePublicKey)
    assert key_a.public_numbers() == key_b.public_numbers()

    await solver.cleanup(first)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await validate(solver.port, "a.example.test", [ACME_TLS_PROTOCOL])
    await validate(solver.port, "b.example.test", [ACME_TLS_PROTOCOL])  # still served


async def test_same_name_twice_serves_the_newest_and_cleans_up_exactly(
    solver: TlsAlpn01Solver,
) -> None:
    name = Identifier.dns("twice.example.test")
    older = await solver.present(make_task(name, "older." + "o" * 43))
    newer = await solver.present(make_task(name, "newer." + "n" * 43))

    async def served_digest() -> bytes:
        certificate, _ = await validate(solver.port, name.value, [ACME_TLS_PROTOCOL])
        extension = certificate.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
        assert isinstance(extension.value, x509.UnrecognizedExtension)
        return extension.value.value

    assert await served_digest() == expected_extension_value("newer." + "n" * 43)
    await solver.cleanup(newer)
    assert await served_digest() == expected_extension_value("older." + "o" * 43)
    await solver.cleanup(older)
    await solver.cleanup(older)  # a second cleanup is harmless
    await solver.cleanup(object())  # so is a foreign handle
    assert not accepts_connections(solver.port)


async def test_listener_lives_from_first_present_to_last_cleanup() -> None:
    port = free_port()
    solver = TlsAlpn01Solver(port=port, host=LOOPBACK)
    assert not accepts_connections(port)
    one = await solver.present(make_task(Identifier.dns("one.example.test")))
    two = await solver.present(make_task(Identifier.dns("two.example.test")))
    assert accepts_connections(port)
    await solver.cleanup(one)
    assert accepts_connections(port)
    await solver.cleanup(two)
    assert not accepts_connections(port)
    # and it starts again for the next order
    three = await solver.present(make_task(Identifier.dns("three.example.test")))
    await validate(port, "three.example.test", [ACME_TLS_PROTOCOL])
    await solver.cleanup(three)
    assert not accepts_connections(port)


async def test_cleanup_closes_a_connection_in_the_middle_of_a_hello() -> None:
    port = free_port()
    solver = TlsAlpn01Solver(port=port, host=LOOPBACK)
    handle = await solver.present(make_task(Identifier.dns("slow.example.test")))
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"\x16\x03\x01\x01\x00")  # a record header, and then nothing
    await writer.drain()
    await asyncio.sleep(0.05)
    assert len(solver._connections) == 1
    await solver.cleanup(handle)
    assert solver._connections == set()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await writer.wait_closed()


async def test_garbage_gets_a_decode_error_alert(solver: TlsAlpn01Solver) -> None:
    await solver.present(make_task(Identifier.dns("alpn.example.test")))
    reader, writer = await asyncio.open_connection(LOOPBACK, solver.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: alpn.example.test\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert answer == bytes([21, 3, 3, 0, 2, 2, 50])  # fatal decode_error
    await validate(solver.port, "alpn.example.test", [ACME_TLS_PROTOCOL])  # still serving


async def test_port_in_use_is_a_one_line_config_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        solver = TlsAlpn01Solver(port=port, host=LOOPBACK)
        with pytest.raises(ConfigError) as caught:
            await solver.present(make_task(Identifier.dns("busy.example.test")))
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot listen for tls-alpn-01 on {LOOPBACK}:{port}" in message
    assert "free the port" in message
    assert solver.server_names == ()


async def test_hostile_token_is_refused_before_anything_is_served() -> None:
    solver = TlsAlpn01Solver(port=free_port(), host=LOOPBACK)
    with pytest.raises(UnsafeResponseError):
        await solver.present(make_task(Identifier.dns("x.example.test"), token="../" * 8))
    assert solver.server_names == ()
    assert not accepts_connections(solver.port)


async def test_wildcard_is_refused_by_present() -> None:
    solver = TlsAlpn01Solver(port=free_port(), host=LOOPBACK)
    with pytest.raises(ConfigError, match="dns-01"):
        await solver.present(make_task(Identifier.dns("*.example.test")))
