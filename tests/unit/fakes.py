"""Test doubles for the unit tests: a fake clock and a scripted, hostile ACME server.

``trickle()`` is a body that a CA sends one byte at a time, slowly, for ever: each read
is quick, so only an overall deadline on the request ends it (issue 9 item 5).

``FakeClock`` is a :class:`certherd.clock.Clock` whose time moves only when the
code under test sleeps, so retry and poll schedules run in microseconds and every wait
is recorded.

``HostileAcmeServer`` is a handler for ``httpx.MockTransport``. It exists only to send
broken or hostile answers: each test scripts misbehaviour per endpoint through
``hooks``; the default answers are the smallest happy path that lets a test reach the
step it breaks. It checks nothing cryptographic: it parses the JWS protected header of
every POST and asserts that ``url`` is the request URL (RFC 8555 §6.4) and ``nonce`` is
one it issued and not yet used (§6.5). Every response carries a fresh Replay-Nonce
unless the script set one. Happy-path behaviour belongs to the Pebble integration tests.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, ObjectIdentifier

from certherd.acme import AcmeClient, PollPolicy, RetryPolicy
from certherd.crypto.keys import PrivateKey, PublicKey

START = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
"""The wall-clock time a FakeClock starts at and the TestCA issues around."""

BASE_URL = "https://ca.test"
ACME_URN = "urn:ietf:params:acme:error:"
PEM_CHAIN = "application/pem-certificate-chain"


class FakeClock:
    """A Clock whose ``now`` and ``monotonic`` advance only by ``sleep``; sleeps are recorded."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += max(0.0, seconds)
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_part(text: str) -> Any:
    """A base64url JSON part of a JWS, decoded."""
    return json.loads(b64url_decode(text))


# -- scripted answers --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer; built into a fresh ``httpx.Response`` each time it is sent.

    ``body`` is JSON-encoded unless it is bytes or an async iterable of bytes (streamed,
    without Content-Length); None sends an empty body.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def build(self) -> httpx.Response:
        headers = dict(self.headers)
        body = self.body
        if body is None:
            content: Any = b""
        elif isinstance(body, bytes | AsyncIterable):
            content = body
        else:
            content = json.dumps(body).encode()
            headers.setdefault("Content-Type", self.content_type or "application/json")
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return httpx.Response(self.status, headers=headers, content=content)


def problem(
    kind: str,
    detail: str = "",
    *,
    status: int = 400,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Reply:
    """An RFC 7807 problem document; a bare ``kind`` gets the ACME URN prefix."""
    problem_type = kind if ":" in kind else ACME_URN + kind
    body = {"type": problem_type, "detail": detail, "status": status, **extra}
    return Reply(status, body, headers or {}, "application/problem+json")


@dataclass
class Seen:
    """One request as the server saw it, with the decoded JWS parts of a POST."""

    method: str
    url: str
    path: str
    headers: httpx.Headers
    jws: dict[str, str] | None = None
    protected: dict[str, Any] | None = None
    payload: Any = None
    post_as_get: bool = False
    reply_nonce: str | None = None


Hook = Callable[[Seen], "Reply | httpx.Response | None"]
"""Answer one request to a path; None falls through to the default answer; may raise
``httpx.TransportError`` subclasses to simulate network failures."""


def script(*replies: Reply | httpx.Response | None) -> Hook:
    """Answer with ``replies`` in turn, then fall through to the default answers."""
    queue = list(replies)

    def hook(seen: Seen) -> Reply | httpx.Response | None:
        return queue.pop(0) if queue else None

    return hook


def always(reply: Reply) -> Hook:
    """Answer every request with ``reply``."""
    return lambda seen: reply


async def trickle(
    data: bytes = b'{"newNonce": "', interval: float = 0.05, forever: bytes = b" "
) -> AsyncIterator[bytes]:
    """A streamed body: ``data`` one byte every ``interval`` real seconds, then ``forever``
    repeated at the same pace, never ending."""
    for byte in data:
        await asyncio.sleep(interval)
        yield bytes([byte])
    while True:
        await asyncio.sleep(interval)
        yield forever


# -- a test CA ----------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TestCA:
    """A root and an intermediate built with cryptography, issuing leaves around ``START``."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "Hostile Test") -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._certificate(
            _name(f"{name} Root"), self.root_key.public_key(), _name(f"{name} Root"), self.root_key
        )
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._certificate(
            _name(f"{name} Intermediate"),
            self.intermediate_key.public_key(),
            self.root.subject,
            self.root_key,
        )

    @staticmethod
    def _certificate(
        subject: x509.Name,
        public_key: PublicKey,
        issuer: x509.Name,
        issuer_key: PrivateKey,
        *,
        names: Sequence[str] = (),
        not_before: dt.datetime = START - dt.timedelta(days=1),
        not_after: dt.datetime = START + dt.timedelta(days=90),
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=not names, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            ).add_extension(  # RFC 9773 §4.1: the ARI certificate id needs the AKI
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def leaf(
        self,
        public_key: PublicKey,
        names: Sequence[str],
        *,
        not_before: dt.datetime = START - dt.timedelta(hours=1),
        not_after: dt.datetime = START + dt.timedelta(days=90),
        signer: PrivateKey | None = None,
    ) -> x509.Certificate:
        """A leaf for ``names``, signed by the intermediate (or by ``signer``)."""
        return self._certificate(
            _name(names[0]),
            public_key,
            self.intermediate.subject,
            signer or self.intermediate_key,
            names=names,
            not_before=not_before,
            not_after=not_after,
        )

    def pem(self, *certificates: x509.Certificate) -> bytes:
        """A PEM chain of ``certificates``; the intermediate is appended when not given."""
        chain = list(certificates)
        if len(chain) == 1:
            chain.append(self.intermediate)
        return b"".join(c.public_bytes(Encoding.PEM) for c in chain)

    def leaf_with_duplicate_extension(self, public_key: PublicKey, names: Sequence[str]) -> bytes:
        """The DER of a leaf carrying two subjectAltName extensions, validly signed.

        RFC 5280 §4.2 forbids it and cryptography's builder refuses it, so the builder
        makes a leaf with an unrecognised extension 2.5.29.99 holding the same value,
        the OID is rewritten to 2.5.29.17 (same length) and the TBS is signed again.
        """
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(START - dt.timedelta(hours=1))
            .not_valid_after(START + dt.timedelta(days=90))
            .add_extension(san, critical=False)
            .add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.99"), san.public_bytes()),
                critical=False,
            )
        )
        leaf = builder.sign(self.intermediate_key, hashes.SHA256())
        unknown, subject_alt_name = bytes.fromhex("0603551d63"), bytes.fromhex("0603551d11")
        tbs = leaf.tbs_certificate_bytes
        assert tbs.count(unknown) == 1
        tbs = tbs.replace(unknown, subject_alt_name)
        signature = self.intermediate_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        ecdsa_with_sha256 = bytes.fromhex("300a06082a8648ce3d040302")
        return _der(0x30, tbs + ecdsa_with_sha256 + _der(0x03, b"\x00" + signature))

    def issue(self, csr: x509.CertificateSigningRequest) -> bytes:
        """What an honest CA returns: a leaf for the CSR's key and names, then the intermediate."""
        return self.pem(self.leaf(csr.public_key(), csr_names(csr)))


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (X.690 §8.1): tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def pem_of_der(der: bytes) -> bytes:
    """One PEM CERTIFICATE block around ``der``."""
    text = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    ).encode()


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


# -- the server ---------------------------------------------------------------------------


class HostileAcmeServer:
    """A scripted ACME server for ``httpx.MockTransport`` (see the module docstring).

    ``hooks`` maps a URL path to a :data:`Hook`; ``seen`` lists every request;
    ``authorization_status`` is the status new authorizations start in ("valid" lets an
    order skip the challenges); ``challenge_token(index)`` is the token of the http-01
    challenge of authorization ``index``; ``issue`` turns the finalize CSR into the PEM
    the certificate URL returns.
    """

    def __init__(self, base_url: str = BASE_URL) -> None:
        self.base_url = base_url
        self.directory: dict[str, Any] = {
            "newNonce": self.url("/new-nonce"),
            "newAccount": self.url("/new-account"),
            "newOrder": self.url("/new-order"),
            "revokeCert": self.url("/revoke-cert"),
            "keyChange": self.url("/key-change"),
            "meta": {"termsOfService": self.url("/terms")},
        }
        self.hooks: dict[str, Hook] = {}
        self.seen: list[Seen] = []
        self.authorization_status = "valid"
        self.challenge_token: Callable[[int], str] = lambda index: f"token{index:02d}" + "A" * 20
        self.order: dict[str, Any] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.csr: x509.CertificateSigningRequest | None = None
        self._ca: TestCA | None = None
        self.issue: Callable[[x509.CertificateSigningRequest], bytes] = lambda csr: self.ca.issue(
            csr
        )
        self._nonce_counter = 0
        self._issued: set[str] = set()
        self._used: set[str] = set()

    @property
    def ca(self) -> TestCA:
        if self._ca is None:
            self._ca = TestCA()
        return self._ca

    def url(self, path: str) -> str:
        return self.base_url + path

    def new_nonce(self) -> str:
        self._nonce_counter += 1
        nonce = f"nonce-{self._nonce_counter:05d}"
        self._issued.add(nonce)
        return nonce

    def client(
        self,
        *,
        clock: FakeClock | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        account_key: PrivateKey | None = None,
        allow_http: bool = False,
        account_url: str | None = "/acct/1",
        **options: Any,
    ) -> AcmeClient:
        """An AcmeClient talking to this server; by default it already has an account.

        ``options`` go to AcmeClient as they are (``request_timeout=``...).
        """
        return AcmeClient(
            self.url("/directory"),
            account_key or ec.generate_private_key(ec.SECP256R1()),
            account_url=self.url(account_url) if account_url else None,
            allow_http=allow_http,
            **options,
            retry=retry,
            poll=poll,
            clock=clock or FakeClock(),
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self)),
        )

    def requests_to(self, path: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == path and method in (None, s.method)]

    # -- the MockTransport handler ---------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        seen = self._parse(request)
        self.seen.append(seen)
        hook = self.hooks.get(seen.path)
        answer = hook(seen) if hook is not None else None
        if answer is None:
            answer = self._default(seen)
        response = answer.build() if isinstance(answer, Reply) else answer
        if "replay-nonce" not in response.headers:
            response.headers["Replay-Nonce"] = self.new_nonce()
        seen.reply_nonce = response.headers["replay-nonce"]
        return response

    def _parse(self, request: httpx.Request) -> Seen:
        seen = Seen(request.method, str(request.url), request.url.path, request.headers)
        if request.method != "POST":
            return seen
        assert request.headers.get("content-type") == "application/jose+json"
        body = json.loads(request.content)
        assert set(body) == {"protected", "payload", "signature"}, body
        protected = decode_part(body["protected"])
        assert protected.get("url") == seen.url, (protected.get("url"), seen.url)
        nonce = protected.get("nonce")
        assert nonce in self._issued, f"nonce {nonce!r} was never issued"
        assert nonce not in self._used, f"nonce {nonce!r} was used twice"
        self._used.add(nonce)
        assert ("jwk" in protected) != ("kid" in protected), protected
        seen.jws = body
        seen.protected = protected
        seen.post_as_get = body["payload"] == ""
        seen.payload = None if seen.post_as_get else decode_part(body["payload"])
        return seen

    # -- default answers: the smallest happy path ------------------------------------------

    def _default(self, seen: Seen) -> Reply:
        path = seen.path
        if path == "/directory":
            return Reply(body=self.directory)
        if path == "/new-nonce":
            return Reply(200 if seen.method == "HEAD" else 204)
        if path == "/new-account":
            return Reply(201, {"status": "valid"}, {"Location": self.url("/acct/1")})
        if path == "/acct/1":
            return Reply(body={"status": "valid", "orders": self.url("/acct/1/orders")})
        if path in ("/key-change", "/revoke-cert"):
            return Reply(200)
        if path == "/new-order":
            return self._new_order(seen.payload)
        if path == "/order/1":
            return Reply(body=self.order)
        if path in self.authorizations:
            return Reply(body=self.authorizations[path])
        if path.startswith("/chall/") and f"/authz/{path[7:]}" in self.authorizations:
            # RFC 8555 §7.5.1: the challenge was answered; here it passes at once.
            authorization = self.authorizations[f"/authz/{path[7:]}"]
            authorization["status"] = "valid"
            challenge = authorization["challenges"][0]
            challenge["status"] = "valid"
            if all(a["status"] == "valid" for a in self.authorizations.values()):
                self.order["status"] = "ready"
            return Reply(body=challenge)
        if path == "/finalize/1":
            self.csr = x509.load_der_x509_csr(b64url_decode(seen.payload["csr"]))
            self.order.update(status="valid", certificate=self.url("/cert/1"))
            return Reply(body=self.order)
        if path == "/cert/1" and self.csr is not None:
            return Reply(body=self.issue(self.csr), content_type=PEM_CHAIN)
        return problem("malformed", f"no such resource {path}", status=404)

    def _new_order(self, payload: Any) -> Reply:
        identifiers = payload["identifiers"]
        self.authorizations = {}
        for index, identifier in enumerate(identifiers, start=1):
            self.authorizations[f"/authz/{index}"] = {
                "identifier": identifier,
                "status": self.authorization_status,
                "challenges": [
                    {
                        "type": "http-01",
                        "url": self.url(f"/chall/{index}"),
                        "status": self.authorization_status,
                        "token": self.challenge_token(index),
                    }
                ],
            }
        ready = self.authorization_status == "valid"
        self.order = {
            "status": "ready" if ready else "pending",
            "identifiers": identifiers,
            "authorizations": [self.url(path) for path in self.authorizations],
            "finalize": self.url("/finalize/1"),
        }
        return Reply(201, self.order, {"Location": self.url("/order/1")})


def order_body(server: HostileAcmeServer, status: str, **extra: Any) -> dict[str, Any]:
    """An order object at ``server`` in ``status``."""
    return {
        "status": status,
        "identifiers": [{"type": "dns", "value": "example.test"}],
        "authorizations": [server.url("/authz/1")],
        "finalize": server.url("/finalize/1"),
        **extra,
    }
