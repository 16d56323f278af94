"""The listeners of ``run --http-serve`` and ``--tls-alpn-serve``: http-01 and tls-alpn-01
answered for every pending order of the fleet, from the key authorizations the ``fleet``
solver stored (:mod:`certherd.challenges.shared`, which says what is trusted and how).

Each listener announces itself in the shared storage while it runs
(``challenges/listeners/<challenge>/<id>.json``, every :data:`HEARTBEAT` seconds), so the
solver can refuse to present while nobody would answer, and counts what it answered for
``/metrics`` (``certherd_fleet_challenge_requests_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from certherd.acme.messages import Identifier
from certherd.challenges.http01 import MAX_CONNECTIONS, Http01StandaloneSolver
from certherd.challenges.shared import HEARTBEAT, HEARTBEAT_LIFETIME
from certherd.challenges.tlsalpn01 import TlsAlpn01Solver, _context_for, challenge_certificate
from certherd.challenges.view import ChallengeView
from certherd.errors import ConfigError, StorageError
from certherd.storage.base import KeyValueStore
from certherd.storage.layout import challenge_listener

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["SharedHttp01Server", "SharedTlsAlpn01Server"]

log = logging.getLogger(__name__)

_CONTEXTS = 256


class _Announcer:
    """Writes a listener's heartbeat every :data:`HEARTBEAT` seconds while it runs."""

    def __init__(self, storage: KeyValueStore, challenge: str, where: Callable[[], str]) -> None:
        import secrets
        import socket

        self.storage = storage
        self.where = where
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:80] or "host"
        self.key = challenge_listener(challenge, f"{host}-{secrets.token_hex(6)}")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Before start() returns (orders may follow at once); a storage that is down now
        # does not keep the daemon from starting: the next heartbeats try again.
        await self._try()
        self._task = asyncio.create_task(self._run(), name=f"announce {self.key}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(StorageError):
            await self.storage.delete(self.key)

    async def _announce(self) -> None:
        record = {"where": self.where(), "expires": round(time.time() + HEARTBEAT_LIFETIME, 3)}
        await self.storage.write(self.key, json.dumps(record).encode())

    async def _try(self) -> None:
        try:
            await self._announce()
        except StorageError as exc:
            log.warning("cannot announce %s in the shared storage: %s", self.key, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            await self._try()


class SharedHttp01Server(Http01StandaloneSolver):
    """``run --http-serve``: http-01 for every pending order of the fleet, from storage.

    The same bounded listener as the standalone solver (connection cap, head deadline,
    write timeout), listening from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        storage: KeyValueStore,
        port: int = 80,
        host: str = "",
        *,
        view: ChallengeView | None = None,
    ) -> None:
        super().__init__(port=port, host=host)
        self.storage = storage
        self.view = view if view is not None else ChallengeView(storage)
        """Where the fleet's key authorizations are looked up: memory, never storage."""
        self._announcer = _Announcer(storage, "http-01", lambda: f"{self.host or '*'}:{self.port}")
        self.not_found = 0
        """Requests answered 404: no sound record for the token (or not a token)."""

    async def _response(self, token: str) -> str | None:
        # First what this process presents itself (a lineage whose solver is ``http`` on
        # this listener's port: the pool hands it this listener), then the fleet's.
        answer = self._responses.get(token) or await self.view.http01(token)
        if answer is None:
            self.not_found += 1
        return answer

    async def cleanup(self, handle: object) -> None:
        """Forget what :meth:`present` added; the listener runs on until :meth:`stop`."""
        token = getattr(handle, "token", None)
        async with self._lock:
            self._responses.pop(token or "", None)

    def collect(self) -> Iterator[Metric]:
        """``/metrics``: what this listener answered (a prometheus_client collector)."""
        return _families(
            "http-01",
            {"answered": self.requests_served, "unknown": self.not_found, "busy": self.refused},
        )

    async def start(self) -> None:
        await self.view.start()
        try:
            async with self._lock:
                if self._server is None:
                    await _bind(self._start(), "http_serve")
        except BaseException:
            await self.view.stop()
            raise
        if self._server is not None and self._server.sockets and not self.port:
            self.port = self._server.sockets[0].getsockname()[1]
        await self._announcer.start()

    async def stop(self) -> None:
        await self._announcer.stop()
        async with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.view.stop()


class SharedTlsAlpn01Server(TlsAlpn01Solver):
    """``run --tls-alpn-serve``: tls-alpn-01 for every pending order of the fleet.

    A validation connection's SNI name selects the newest sound record stored for it;
    its certificate (RFC 8737 §3) is made once per key authorization and kept for the
    next connections."""

    max_connections = MAX_CONNECTIONS
    """Connections at once; more are closed unread (the listener is open to the internet
    for as long as the daemon runs, so idle clients must not take its descriptors)."""

    def __init__(
        self,
        storage: KeyValueStore,
        port: int = 443,
        host: str = "",
        *,
        view: ChallengeView | None = None,
    ) -> None:
        super().__init__(port=port, host=host)
        self.storage = storage
        self.view = view if view is not None else ChallengeView(storage)
        """Where the fleet's key authorizations are looked up: memory, never storage."""
        self._announcer = _Announcer(
            storage, "tls-alpn-01", lambda: f"{self.host or '*'}:{self.port}"
        )
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            self.connections_refused += 1
            writer.transport.abort()
            return
        await super()._serve(reader, writer)

    async def cleanup(self, handle: object) -> None:
        """Forget what :meth:`present` added; the listener runs on until :meth:`stop`."""
        async with self._lock:
            for name, handles in list(self._presented.items()):
                if handle in handles:
                    handles.remove(handle)
                if not handles:
                    self._presented.pop(name, None)

    async def _context_for_name(self, name: str) -> ssl.SSLContext | None:
        local = await super()._context_for_name(name)  # presented by this process
        if local is not None:
            return local
        answer = await self.view.tls_alpn01(name)
        if answer is None:
            return None
        cached = self._contexts.get((name, answer))
        if cached is not None:
            return cached
        from cryptography.hazmat.primitives.asymmetric import ec

        if self._key is None:
            self._key = ec.generate_private_key(ec.SECP256R1())
        identifier = _identifier_of(name)
        certificate = challenge_certificate(identifier, answer, self._key)
        context = _context_for(certificate, self._key)
        if len(self._contexts) >= _CONTEXTS:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[(name, answer)] = context
        return context

    async def start(self) -> None:
        await self.view.start()
        try:
            async with self._lock:
                if self._server is None:
                    await _bind(self._start(), "tls_alpn_serve")
        except BaseException:
            await self.view.stop()
            raise
        if self._server is not None and self._server.sockets and not self.port:
            self.port = self._server.sockets[0].getsockname()[1]
        await self._announcer.start()

    async def stop(self) -> None:
        await self._announcer.stop()
        async with self._lock:
            await self._stop()
        await self.view.stop()

    def collect(self) -> Iterator[Metric]:
        """``/metrics``: what this listener answered (a prometheus_client collector)."""
        return _families(
            "tls-alpn-01",
            {"answered": self.handshakes_completed, "refused": self.connections_refused},
        )


def _families(challenge: str, counts: dict[str, int]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(
        "certherd_fleet_challenge_requests",
        "Validation requests this node's fleet challenge listeners got, by result: "
        "answered with a key authorization, unknown (404 or no such name), busy or "
        "refused.",
        labels=["challenge", "result"],
    )
    for result, count in counts.items():
        family.add_metric([challenge, result], float(count))
    yield family


async def _bind(starting: Coroutine[Any, Any, None], setting: str) -> None:
    """Start a listener; a port that cannot be bound names the flag that chose it."""
    try:
        await starting
    except ConfigError as exc:
        reason = str(exc).split(";", 1)[0]
        if setting == "http_serve":
            raise ConfigError(
                f"{reason}; free the port or choose another as {{http_serve}}",
                settings=("http_serve",),
            ) from None
        raise ConfigError(
            f"{reason}; free the port or choose another as {{tls_alpn_serve}}",
            settings=("tls_alpn_serve",),
        ) from None


def _identifier_of(name: str) -> Identifier:
    """The identifier an SNI name stands for (RFC 8738 §6: a reverse-mapping name is an
    IP address)."""
    for suffix, size, base in ((".in-addr.arpa", 4, 10), (".ip6.arpa", 32, 16)):
        if name.endswith(suffix):
            parts = name.removesuffix(suffix).split(".")
            if len(parts) == size:
                try:
                    if base == 10:
                        address = ".".join(reversed(parts))
                    else:
                        nibbles = "".join(reversed(parts))
                        address = ":".join(nibbles[i : i + 4] for i in range(0, 32, 4))
                    return Identifier.ip(address)
                except ValueError:
                    pass
    return Identifier.dns(name)
