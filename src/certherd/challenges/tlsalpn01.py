"""tls-alpn-01 standalone (RFC 8737, and RFC 8738 §6 for IP addresses): a small TLS server.

For every identifier now presented it holds a self-signed certificate whose only
subjectAltName is that identifier and which carries the critical acmeIdentifier
extension. A connection gets it only if its ClientHello names the identifier by SNI and
offers ALPN ``acme-tls/1``; any other connection is refused with a fatal TLS alert. The
listener starts with the first presented identifier and stops when the last one is
cleaned up, so one solver object (one port) serves any number of concurrent orders.

How a connection is answered:

1. The ClientHello is read and parsed before TLS starts. Python's ``ssl`` does not fail
   a handshake whose ALPN offer has no protocol in common with ours (it goes on without
   ALPN, against RFC 7301 §3.2), and a certificate must never be sent outside
   ``acme-tls/1`` (RFC 8737 §4: the protocol "MUST only be used for validating ACME
   tls-alpn-01 challenges"). So a hello without ``acme-tls/1`` gets the fatal
   ``no_application_protocol`` alert, and one without a presented SNI name the fatal
   ``unrecognized_name`` alert, before any certificate leaves.
2. The bytes read are then fed to an :class:`ssl.SSLObject` over memory BIOs. Its
   context's ``sni_callback`` swaps in the per-name context holding that name's
   certificate (the newest, if two orders present the same name at once).
3. Once the handshake is done the connection is closed: RFC 8737 §4, "Once the handshake
   is completed, the client MUST NOT exchange any further data with the server".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certherd.acme.messages import Identifier
from certherd.addresses import bind_failure
from certherd.challenges.base import ChallengeTask, check_token
from certherd.errors import ConfigError

__all__ = [
    "ACME_TLS_PROTOCOL",
    "ID_PE_ACME_IDENTIFIER",
    "TlsAlpn01Solver",
    "acme_identifier_value",
    "challenge_certificate",
    "server_name",
]

ACME_TLS_PROTOCOL = "acme-tls/1"
"""RFC 8737 §6.2: the ALPN protocol ID of a validation connection."""

ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""RFC 8737 §6.1: ``id-pe-acmeIdentifier OBJECT IDENTIFIER ::= { id-pe 31 }``."""

CONNECTION_TIMEOUT = 10.0
"""Seconds one validation connection may take, from accept to the end of the handshake."""
CERTIFICATE_LIFETIME = dt.timedelta(days=7)

_MAX_HELLO = 1 << 16  # a ClientHello larger than this is not a validator's
_RECORD_HANDSHAKE = 22
_RECORD_ALERT = 21
_HANDSHAKE_CLIENT_HELLO = 1
_EXTENSION_SERVER_NAME = 0
_EXTENSION_ALPN = 16
_ALERT_DECODE_ERROR = 50
_ALERT_UNRECOGNIZED_NAME = 112
_ALERT_NO_APPLICATION_PROTOCOL = 120


def server_name(identifier: Identifier) -> str:
    """The SNI name a validator sends for ``identifier``.

    RFC 8737 §3: the domain name being validated. RFC 8738 §6: for an IP address, "the
    IN-ADDR.ARPA or IP6.ARPA reverse mapping of the IP address" (``4.3.2.1.in-addr.arpa``
    or the nibble form), without the trailing dot, as TLS carries it.
    """
    if identifier.type == "ip":
        return ipaddress.ip_address(identifier.value).reverse_pointer
    return identifier.value.rstrip(".").lower()


def acme_identifier_value(key_authorization: str) -> bytes:
    """The extnValue of the acmeIdentifier extension: DER ``OCTET STRING`` of the digest.

    RFC 8737 §3: "The extnValue of the id-pe-acmeIdentifier extension is the ASN.1 DER
    encoding of the Authorization structure, which contains the SHA-256 digest of the
    key authorization"; ``Authorization ::= OCTET STRING (SIZE (32))``.
    """
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return bytes((0x04, len(digest))) + digest


def challenge_certificate(
    identifier: Identifier,
    key_authorization: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The self-signed validation certificate for ``identifier`` (RFC 8737 §3).

    Its subjectAltName holds exactly the identifier: one dNSName, or for an IP address
    one iPAddress (RFC 8738 §6). The acmeIdentifier extension "MUST be critical". The
    subject is empty, so the subjectAltName is critical too (RFC 5280 §4.2.1.6).
    """
    if identifier.type == "ip":
        name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(identifier.value))
    elif identifier.type == "dns":
        name = x509.DNSName(server_name(identifier))
    else:
        raise ConfigError(f"tls-alpn-01 cannot prove a {identifier.type!r} identifier")
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=1)
    extension = x509.UnrecognizedExtension(
        ID_PE_ACME_IDENTIFIER, acme_identifier_value(key_authorization)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([name]), critical=True)
        .add_extension(extension, critical=True)
        .sign(key, hashes.SHA256())
    )


def _server_context() -> ssl.SSLContext:
    """A TLS server context that speaks only ``acme-tls/1`` over TLS 1.2 or newer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # RFC 8737 §4: "ACME servers that implement "acme-tls/1" MUST only negotiate TLS 1.2
    # or higher"; we hold ourselves to the same.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_PROTOCOL])
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0  # nothing is sent after the handshake
    return context


def _context_for(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> ssl.SSLContext:
    """A server context holding ``certificate``; ``ssl`` loads keys from files only."""
    context = _server_context()
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor, path = tempfile.mkstemp(prefix="certherd-tls-alpn-", suffix=".pem")  # 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


@dataclass(frozen=True, eq=False)
class _Handle:
    """One presented identifier; compared by identity, so cleanup removes exactly it."""

    server_name: str
    token: str
    context: ssl.SSLContext = field(repr=False)


class _RefusedError(Exception):
    """Refuse this connection with the fatal TLS alert ``alert``."""

    def __init__(self, alert: int) -> None:
        super().__init__(alert)
        self.alert = alert


@dataclass(frozen=True)
class _ClientHello:
    server_name: str | None
    protocols: tuple[bytes, ...]


class _Cursor:
    """Reads the big-endian integers and length-prefixed vectors of TLS (RFC 8446 §3)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    @property
    def done(self) -> bool:
        return self.offset >= len(self.data)

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise ValueError("truncated")
        chunk, self.offset = self.data[self.offset : end], end
        return chunk

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.integer(length_size))


def _parse_client_hello(body: bytes) -> _ClientHello:
    """SNI (RFC 6066 §3) and ALPN (RFC 7301 §3.1) of a ClientHello body (RFC 8446 §4.1.2)."""
    hello = _Cursor(body)
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    name: str | None = None
    protocols: list[bytes] = []
    extensions = _Cursor(hello.vector(2) if not hello.done else b"")
    while not extensions.done:
        kind, data = extensions.integer(2), _Cursor(extensions.vector(2))
        if kind == _EXTENSION_SERVER_NAME:
            names = _Cursor(data.vector(2))
            while not names.done:
                name_type, value = names.integer(1), names.vector(2)
                if name_type == 0:  # host_name
                    name = value.decode("ascii")
        elif kind == _EXTENSION_ALPN:
            offered = _Cursor(data.vector(2))
            while not offered.done:
                protocols.append(offered.vector(1))
    return _ClientHello(name, tuple(protocols))


async def _read_client_hello(reader: asyncio.StreamReader) -> tuple[bytes, _ClientHello]:
    """The raw records carrying the first ClientHello, and what it asks for."""
    raw = bytearray()
    handshake = bytearray()
    while True:
        header = await reader.readexactly(5)
        length = int.from_bytes(header[3:5], "big")
        if header[0] != _RECORD_HANDSHAKE or not 0 < length <= 1 << 14:
            raise _RefusedError(_ALERT_DECODE_ERROR)
        body = await reader.readexactly(length)
        raw += header + body
        handshake += body
        if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
            raise _RefusedError(_ALERT_DECODE_ERROR)
        if len(handshake) < 4:
            continue
        size = 4 + int.from_bytes(handshake[1:4], "big")
        if size > _MAX_HELLO:
            raise _RefusedError(_ALERT_DECODE_ERROR)
        if len(handshake) >= size:
            try:
                return bytes(raw), _parse_client_hello(bytes(handshake[4:size]))
            except (ValueError, UnicodeDecodeError):
                raise _RefusedError(_ALERT_DECODE_ERROR) from None


def _normalize(name: str | None) -> str:
    return (name or "").rstrip(".").lower()


class TlsAlpn01Solver:
    """tls-alpn-01 through a built-in TLS listener on ``host:port`` (IPv4 or IPv6).

    ``present`` makes a certificate for the identifier (one EC P-256 key, made once per
    solver, signs them all) and starts the listener if it is not running; ``cleanup``
    forgets that certificate and stops the listener after the last one. A port that
    cannot be bound raises :class:`ConfigError` from ``present``.
    """

    challenge_type = "tls-alpn-01"

    def __init__(self, port: int = 443, host: str = "") -> None:
        self.host = host
        self.port = port
        self.handshakes_completed = 0
        """Validation handshakes finished with a challenge certificate (for the curious)."""
        self.connections_refused = 0
        """Connections refused with an alert: no ``acme-tls/1``, unknown name, bad hello."""
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._presented: dict[str, list[_Handle]] = {}
        self._server: asyncio.Server | None = None
        self._dispatch: ssl.SSLContext | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    @property
    def server_names(self) -> tuple[str, ...]:
        """The SNI names answered now."""
        return tuple(self._presented)

    def supports(self, identifier: Identifier) -> bool:
        # RFC 8737 §3 (dns) and RFC 8738 §6 (ip). The certificate names exactly the
        # identifier validated, and SNI cannot carry a wildcard: CAs offer only dns-01
        # for those (RFC 8555 §7.1.3).
        if identifier.type == "ip":
            return True
        return identifier.type == "dns" and not identifier.is_wildcard

    async def present(self, task: ChallengeTask) -> object:
        token = check_token(task.challenge.token)
        if not self.supports(task.identifier):
            raise ConfigError(f"tls-alpn-01 cannot prove {task.identifier} (wildcards need dns-01)")
        if self._key is None:
            self._key = ec.generate_private_key(ec.SECP256R1())
        certificate = challenge_certificate(task.identifier, task.key_authorization, self._key)
        handle = _Handle(server_name(task.identifier), token, _context_for(certificate, self._key))
        async with self._lock:
            if self._server is None:
                await self._start()
            self._presented.setdefault(handle.server_name, []).append(handle)
        return handle

    async def cleanup(self, handle: object) -> None:
        if not isinstance(handle, _Handle):
            return
        async with self._lock:
            handles = self._presented.get(handle.server_name, [])
            if handle in handles:
                handles.remove(handle)
            if not handles:
                self._presented.pop(handle.server_name, None)
            if not self._presented and self._server is not None:
                await self._stop()

    async def _start(self) -> None:
        dispatch = _server_context()
        dispatch.sni_callback = self._choose_context
        hosts = [self.host] if self.host else None
        try:
            self._server = await asyncio.start_server(
                self._serve, host=hosts, port=self.port, reuse_address=True
            )
        except OSError as exc:
            where = f"{self.host or '*'}:{self.port}"
            hint = "free the port or choose another, or use http-01 or dns-01"
            raise ConfigError(
                f"cannot listen for tls-alpn-01 on {where}: {bind_failure(exc)}; {hint}"
            ) from None
        self._dispatch = dispatch

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
        self._dispatch = None

    async def _context_for_name(self, name: str) -> ssl.SSLContext | None:
        """The context answering a validation of ``name`` (None: unrecognized_name)."""
        if name not in self._presented:
            return None
        return self._dispatch

    def _choose_context(
        self, tls: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> int | None:
        """``sni_callback``: swap in the context of the newest handle for ``name``."""
        handles = self._presented.get(_normalize(name))
        if not handles:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        tls.context = handles[-1].context
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # tracked until done, so cleanup can cancel it
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            async with asyncio.timeout(CONNECTION_TIMEOUT):
                await self._answer(reader, writer)
        except _RefusedError as refused:
            self.connections_refused += 1
            # RFC 8446 §6: a fatal alert record (level 2); legacy version 0x0303.
            with contextlib.suppress(ConnectionError):
                writer.write(bytes((_RECORD_ALERT, 3, 3, 0, 2, 2, refused.alert)))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, hello = await _read_client_hello(reader)
        if ACME_TLS_PROTOCOL.encode("ascii") not in hello.protocols:
            raise _RefusedError(_ALERT_NO_APPLICATION_PROTOCOL)
        context = await self._context_for_name(_normalize(hello.server_name))
        if context is None:
            raise _RefusedError(_ALERT_UNRECOGNIZED_NAME)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(first)
        failed = False
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                done = failed = True  # OpenSSL refused it; its alert is in ``outgoing``
            if pending := outgoing.read():
                writer.write(pending)
                await writer.drain()
            if done:
                break
            data = await reader.read(1 << 14)
            if not data:
                return
            incoming.write(data)
        if failed or tls.selected_alpn_protocol() != ACME_TLS_PROTOCOL:
            self.connections_refused += 1
            return
        self.handshakes_completed += 1
        with contextlib.suppress(ssl.SSLError):
            tls.unwrap()  # close_notify; the validator closes without an answer
        if pending := outgoing.read():
            writer.write(pending)
            await writer.drain()
