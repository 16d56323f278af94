"""Shared helpers for the ACME integration tests against a real Pebble (no mocks).

- :func:`registered` opens an :class:`AcmeClient` on a Pebble with a fresh account;
  :func:`unique_name` gives each test its own names (no accidental authorization reuse).
- :func:`forget_authorizations` makes the next orders of an account answer their
  challenges again (Pebble reuses a valid authorization now and then even when told not to).
- :func:`free_http_port` gives an extra Pebble its own validator port (not 5002).
- :class:`Dns01ChalltestsrvSolver` answers dns-01 through the launcher's challtestsrv.
- :class:`SilentHttp01Solver`, :class:`WrongKeyHttp01Solver` and
  :class:`SlowHttp01Solver` make validation fail or lag, on purpose.
- :class:`WireRecorder` watches the real HTTP exchanges through httpx event hooks, for
  what the client's own ``trace`` does not show (status codes, JWS payloads).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import httpx
from tests.servers.net import free_http_port as free_http_port
from tests.servers.net import port_is_free as port_is_free

from certherd.acme.client import AcmeClient
from certherd.acme.messages import Identifier, Status
from certherd.challenges.base import ChallengeTask, check_token
from certherd.challenges.http01 import Http01StandaloneSolver
from certherd.crypto.encoding import b64url
from certherd.crypto.keys import KeyType, PrivateKey, generate_key
from certherd.testing.pebble import PebbleServer

PebbleFactory = Callable[..., PebbleServer]

ACME_ERROR = "urn:ietf:params:acme:error:"
CHALLENGE_POST = ("POST", "challenge http-01")


def unique_name(prefix: str = "host") -> str:
    """A DNS name no other test uses, so no authorization is shared by accident."""
    return f"{prefix}-{secrets.token_hex(4)}.certherd.test"


def new_client(server: PebbleServer, key: PrivateKey | None = None, **options: Any) -> AcmeClient:
    """An AcmeClient for ``server`` (trusting its listener CA), not yet registered.

    With ``http_client=`` that client's own trust applies (and the caller closes it).
    """
    if "http_client" not in options:
        options["ca_bundle"] = str(server.ca_bundle)
    return AcmeClient(
        server.directory_url, key if key is not None else generate_key(KeyType.EC256), **options
    )


@contextlib.asynccontextmanager
async def registered(
    server: PebbleServer, key: PrivateKey | None = None, **options: Any
) -> AsyncIterator[AcmeClient]:
    """``async with registered(pebble) as client:``: a client with a new account."""
    http_client: httpx.AsyncClient | None = options.get("http_client")
    try:
        async with new_client(server, key, **options) as client:
            await client.register(contact=["mailto:tests@certherd.test"], agree_tos=True)
            yield client
    finally:
        if http_client is not None:  # certherd never closes a caller's client
            await http_client.aclose()


def http_solver(server: PebbleServer) -> Http01StandaloneSolver:
    """The standalone http-01 solver where this Pebble's validator connects."""
    return Http01StandaloneSolver(port=server.options.http_port, host="127.0.0.1")


async def forget_authorizations(client: AcmeClient) -> int:
    """Deactivate every valid authorization of ``client``'s account (RFC 8555 §7.5.2), so
    the next order for those names must answer its challenges; how many there were.

    ``authz_reuse_percent=0`` is not enough for that: Pebble makes a new authorization
    only when ``rand.Intn(100) > percent`` (wfe.go, makeAuthorizations), so it reuses a
    valid one in about 1 order in 100 (measured: 6 of 500 orders).
    """
    forgotten = 0
    async for order_url in client.list_orders():
        for url in (await client.fetch_order(order_url)).authorizations:
            if (await client.fetch_authorization(url)).status is Status.VALID:
                await client.deactivate_authorization(url)
                forgotten += 1
    return forgotten


def count(trace: Iterable[tuple[str, str]], method: str, label: str) -> int:
    """How many requests of ``method`` with ``label`` the client's trace holds."""
    return sum(1 for entry in trace if entry == (method, label))


def dns01_value(key_authorization: str) -> str:
    """RFC 8555 §8.4: the TXT value is base64url(SHA-256(key authorization))."""
    return b64url(hashlib.sha256(key_authorization.encode("ascii")).digest())


def dns01_host(identifier: Identifier) -> str:
    """RFC 8555 §8.4: ``_acme-challenge.`` before the name, the wildcard label removed."""
    return f"_acme-challenge.{identifier.value.removeprefix('*.')}."


def txt_records(server: PebbleServer, host: str) -> list[str]:
    """The TXT values challtestsrv's DNS serves for ``host`` now (as Pebble would see them)."""
    address, port = server.dns_address
    query = dns.message.make_query(host, dns.rdatatype.TXT)
    response = dns.query.udp(query, address, port=port, timeout=2.0)
    return sorted(b"".join(rdata.strings).decode() for rrset in response.answer for rdata in rrset)


@dataclass(frozen=True)
class _TxtHandle:
    host: str
    value: str


class Dns01ChalltestsrvSolver:
    """dns-01 through the Pebble launcher's challtestsrv (test-only Solver).

    challtestsrv can only clear all values of a host, so a host is cleared when the last
    handle for it is cleaned up (a wildcard and its base name share one host).
    """

    challenge_type = "dns-01"

    def __init__(self, server: PebbleServer) -> None:
        self.server = server
        self.presented: list[tuple[str, str]] = []
        self.cleaned: list[tuple[str, str]] = []
        self._live: dict[str, int] = {}

    def supports(self, identifier: Identifier) -> bool:
        return identifier.type == "dns"

    async def present(self, task: ChallengeTask) -> object:
        check_token(task.challenge.token)  # the Solver contract: refuse a bad token
        handle = _TxtHandle(dns01_host(task.identifier), dns01_value(task.key_authorization))
        self.server.set_txt(handle.host, handle.value)
        self._live[handle.host] = self._live.get(handle.host, 0) + 1
        self.presented.append((handle.host, handle.value))
        return handle

    async def cleanup(self, handle: object) -> None:
        if not isinstance(handle, _TxtHandle) or handle.host not in self._live:
            return
        self._live[handle.host] -= 1
        if self._live[handle.host] == 0:
            del self._live[handle.host]
            self.server.clear_txt(handle.host)
        self.cleaned.append((handle.host, handle.value))


class SilentHttp01Solver:
    """Claims http-01 but serves nothing: the validator finds no listener."""

    challenge_type = "http-01"

    def __init__(self) -> None:
        self.presented: list[str] = []
        self.cleaned: list[str] = []

    def supports(self, identifier: Identifier) -> bool:
        return not identifier.is_wildcard

    async def present(self, task: ChallengeTask) -> object:
        self.presented.append(task.token)
        return task.token

    async def cleanup(self, handle: object) -> None:
        self.cleaned.append(str(handle))


class WrongKeyHttp01Solver:
    """Serves a wrong key authorization through the real standalone solver.

    With ``only``, just those names get the wrong answer; the others the right one.
    """

    challenge_type = "http-01"

    def __init__(self, server: PebbleServer, only: Iterable[str] | None = None) -> None:
        self.inner = http_solver(server)
        self.only = None if only is None else set(only)
        self.presented: list[object] = []
        self.cleaned: list[object] = []

    def supports(self, identifier: Identifier) -> bool:
        return self.inner.supports(identifier)

    async def present(self, task: ChallengeTask) -> object:
        if self.only is None or task.identifier.value in self.only:
            wrong = f"{task.token}.not-the-thumbprint"
            task = ChallengeTask(task.identifier, task.challenge, wrong)
        handle = await self.inner.present(task)
        self.presented.append(handle)
        return handle

    async def cleanup(self, handle: object) -> None:
        await self.inner.cleanup(handle)
        self.cleaned.append(handle)


class SlowHttp01Solver:
    """A minimal http-01 responder that answers some names late and others wrongly.

    Its listener runs from the first ``present`` to the last ``cleanup``; cleanup also
    ends the answers still being delayed, so nothing of it outlives the order.
    """

    challenge_type = "http-01"

    def __init__(
        self, server: PebbleServer, *, slow: Iterable[str] = (), wrong: Iterable[str] = ()
    ) -> None:
        self.port = server.options.http_port
        self.delay = 1.0
        self.slow, self.wrong = set(slow), set(wrong)
        self.cleaned: list[str] = []
        self._answers: dict[str, tuple[str, str]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._lock = asyncio.Lock()

    def supports(self, identifier: Identifier) -> bool:
        return not identifier.is_wildcard

    async def present(self, task: ChallengeTask) -> object:
        token = check_token(task.challenge.token)
        async with self._lock:
            self._answers[token] = (task.identifier.value, task.key_authorization)
            if self._server is None:
                self._server = await asyncio.start_server(
                    self._serve, "127.0.0.1", self.port, reuse_address=True
                )
        return token

    async def cleanup(self, handle: object) -> None:
        async with self._lock:
            self._answers.pop(str(handle), None)
            self.cleaned.append(str(handle))
            if self._answers or self._server is None:
                return
            server, self._server = self._server, None
            server.close()
            self._closing.set()  # ends the delayed answers at once
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()
            self._closing.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._handlers.add(current)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            token = head.split(b" ")[1].decode("latin-1").rsplit("/", 1)[-1]
            name, key_authorization = self._answers.get(token, ("", "unknown token"))
            if name in self.slow:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.delay)
                if self._closing.is_set():
                    return
            body = (f"{token}.wrong" if name in self.wrong else key_authorization).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(current)
            writer.close()


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange as seen on the wire."""

    method: str
    url: str
    status: int
    payload: Any
    """The decoded JWS payload of a POST (None for POST-as-GET and for GET/HEAD)."""
    problem_type: str | None
    location: str | None


def _jws_payload(content: bytes) -> Any:
    if not content:
        return None
    encoded = json.loads(content).get("payload", "")
    if not encoded:
        return None
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


@dataclass
class WireRecorder:
    """Records every exchange of an httpx client handed to ``AcmeClient(http_client=...)``."""

    exchanges: list[Exchange] = field(default_factory=list)

    def http_client(self, server: PebbleServer) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(server.ca_bundle)),
            timeout=30.0,
            trust_env=False,
            event_hooks={"response": [self._on_response]},
        )

    async def _on_response(self, response: httpx.Response) -> None:
        request = response.request
        problem_type = None
        if response.status_code >= 400:
            await response.aread()
            with contextlib.suppress(ValueError):
                problem_type = response.json().get("type")
        payload = _jws_payload(request.content) if request.method == "POST" else None
        location = response.headers.get("location")
        self.exchanges.append(
            Exchange(
                request.method,
                str(request.url),
                response.status_code,
                payload,
                problem_type,
                None if location is None else str(response.url.join(location)),
            )
        )

    def posts(self) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.method == "POST"]

    def created(self, url: str) -> list[str]:
        """The Location of every 201 Created answer to a POST to ``url`` (newOrder...)."""
        return [
            e.location
            for e in self.posts()
            if e.url == url and e.status == 201 and e.location is not None
        ]
