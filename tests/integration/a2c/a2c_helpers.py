"""Shared helpers for driving certherd's AcmeClient against acme2certifier (no mocks).

- :func:`new_client` and :func:`registered` open an :class:`AcmeClient` on a server.
- :func:`issue` runs one order over http-01 where the validator connects (127.0.0.1:80).
- :class:`PostRecorder` records the JWS of every POST through an httpx event hook, for what
  the client's own ``trace`` (method and label only) does not show.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from tests.servers.acme2certifier import Acme2CertifierServer

from certherd.acme.client import AcmeClient
from certherd.challenges.http01 import Http01StandaloneSolver
from certherd.crypto.keys import KeyType, PrivateKey, generate_key
from certherd.manager.obtain import IssuedCertificate, obtain_certificate

CONTACT = "mailto:tests@certherd.test"
ACME_ERROR = "urn:ietf:params:acme:error:"


def unique_name(prefix: str = "host") -> str:
    """A DNS name no other test orders (acme2certifier's DNS answers 127.0.0.1 for all)."""
    return f"{prefix}-{secrets.token_hex(4)}.a2c.certherd.test"


def http_solver() -> Http01StandaloneSolver:
    """The standalone solver where acme2certifier's validator connects: 127.0.0.1:80."""
    return Http01StandaloneSolver(port=80, host="127.0.0.1")


def b64url_json(encoded: str) -> Any:
    """Decode one base64url JWS part (unpadded, RFC 7515 §2) as JSON."""
    return json.loads(b64url_bytes(encoded))


def b64url_bytes(encoded: str) -> bytes:
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


@dataclass(frozen=True)
class SentPost:
    """One signed POST as it left the client: URL, protected header, decoded payload."""

    url: str
    protected: dict[str, Any]
    payload: Any
    """The decoded payload; None for a POST-as-GET (RFC 8555 §6.3)."""


@dataclass
class PostRecorder:
    """Records the JWS of every POST an ``AcmeClient(http_client=...)`` sends."""

    posts: list[SentPost] = field(default_factory=list)

    def http_client(self, server: Acme2CertifierServer) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=server.ssl_context(),
            timeout=30.0,
            trust_env=False,
            event_hooks={"request": [self._on_request]},
        )

    async def _on_request(self, request: httpx.Request) -> None:
        if request.method != "POST":
            return
        body = json.loads(request.content)
        payload = b64url_json(body["payload"]) if body["payload"] else None
        self.posts.append(SentPost(str(request.url), b64url_json(body["protected"]), payload))

    def to(self, url: str) -> list[SentPost]:
        """The POSTs sent to ``url``, in order."""
        return [post for post in self.posts if post.url == url]


def new_client(
    server: Acme2CertifierServer,
    key: PrivateKey | None = None,
    recorder: PostRecorder | None = None,
) -> AcmeClient:
    """An AcmeClient for ``server``, trusting its TLS test CA only; not registered yet."""
    account_key = key if key is not None else generate_key(KeyType.EC256)
    if recorder is not None:
        return AcmeClient(
            server.directory_url, account_key, http_client=recorder.http_client(server)
        )
    return AcmeClient(server.directory_url, account_key, ca_bundle=str(server.ca_bundle))


@contextlib.asynccontextmanager
async def registered(
    server: Acme2CertifierServer, recorder: PostRecorder | None = None
) -> AsyncIterator[AcmeClient]:
    """``async with registered(acme2certifier) as client:``: a client with a new account."""
    client = new_client(server, recorder=recorder)
    try:
        async with client:
            await client.register(contact=[CONTACT], agree_tos=True)
            yield client
    finally:
        if recorder is not None:  # certherd never closes a caller's http_client
            await client.transport._http.aclose()


async def issue(
    client: AcmeClient, names: Sequence[str], **options: Any
) -> tuple[IssuedCertificate, Http01StandaloneSolver]:
    """Run one order over http-01 on 127.0.0.1:80; return the certificate and the solver."""
    solver = http_solver()
    issued = await obtain_certificate(client, names, [solver], **options)
    return issued, solver


def issuing_ca(server: Acme2CertifierServer) -> x509.Certificate:
    """The CA certificate acme2certifier signs with."""
    return x509.load_pem_x509_certificate(server.issuing_ca_pem.read_bytes())


def san_values(certificate: x509.Certificate) -> set[str]:
    """The subjectAltName entries of ``certificate`` as text (DNS names and IP addresses)."""
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns_names = {str(value) for value in san.get_values_for_type(x509.DNSName)}
    addresses = {str(value) for value in san.get_values_for_type(x509.IPAddress)}
    return dns_names | addresses
