"""http-01 and tls-alpn-01 answered by any node of a fleet (issue 12 item 5).

The node that places an order does not need to be the one the CA reaches: the solver
kind ``fleet`` writes each key authorization into the shared storage, and every node
run with ``--http-serve`` / ``--tls-alpn-serve`` answers from there, for every pending
order of the fleet (put those listeners behind the same load balancer as the site).

Records (keys built by :func:`certherd.storage.layout.challenge_record`)::

    challenges/http-01/<token>.json
    challenges/tls-alpn-01/<sni name>/<token>.json

each ``{"challenge", "token", "key_authorization", "identifier", "lineage",
"expires"}``. They are written and deleted under the lease of the lineage being
obtained (``fence=``): a node paused past its lease cannot publish or remove a record
of the order the next holder works on. A record left behind (a node killed between
present and cleanup) is never answered after ``expires``.

What the listeners trust: nothing from the network or the CA builds a key unchecked. A
token that is not base64url gets 404 before storage is asked; an SNI name that is not a
host name gets ``unrecognized_name``; a stored record is answered only if it is well
formed, names the token asked for, has a key authorization of the form
``token.thumbprint`` (RFC 8555 §8.1) and has not expired.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.challenges.http01 import MAX_CONNECTIONS, Http01StandaloneSolver
from certherd.challenges.tlsalpn01 import (
    TlsAlpn01Solver,
    _context_for,
    challenge_certificate,
    server_name,
)
from certherd.errors import (
    ConfigError,
    FencedError,
    NotFoundError,
    StorageError,
    UnsafeResponseError,
)
from certherd.storage.base import KeyValueStore, Lease
from certherd.storage.layout import (
    CHALLENGES_FOLDER,
    SHARED_CHALLENGES,
    challenge_folder,
    challenge_record,
)
from certherd.storage.leases import innermost_lease

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = [
    "RECORD_LIFETIME",
    "RecordSweeper",
    "SharedHttp01Server",
    "SharedSolver",
    "SharedTlsAlpn01Server",
    "shared_answer",
    "sweep",
]

log = logging.getLogger(__name__)

RECORD_LIFETIME = 24 * 3600.0
"""Seconds a stored key authorization is answered at most (a crashed node's leftovers)."""
MAX_RECORD = 4096
"""Bytes: a larger stored record is not one certherd wrote."""
_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url SHA-256 (RFC 7638)
_CONTEXTS = 256
WARN_EVERY = 60.0
"""Seconds between two warnings that storage cannot be read (a flood of requests while
the database is away logs one line a minute, not one per request)."""
_warned_at = -WARN_EVERY


def _check_key_authorization(token: str, key_authorization: object) -> str | None:
    """``key_authorization`` if it is ``token || '.' || thumbprint`` (RFC 8555 §8.1)."""
    if not isinstance(key_authorization, str):
        return None
    head, dot, thumbprint = key_authorization.partition(".")
    if not dot or head != token or not _THUMBPRINT.match(thumbprint):
        return None
    return key_authorization


def _parse_record(raw: bytes, token: str, challenge: str, now: float) -> tuple[float, str] | None:
    """(expires, key authorization) of a stored record, if it is sound and current."""
    if len(raw) > MAX_RECORD:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("challenge") != challenge:
        return None
    if data.get("token") != token:
        return None
    expires = data.get("expires")
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= now:
        return None
    answer = _check_key_authorization(token, data.get("key_authorization"))
    return None if answer is None else (float(expires), answer)


@dataclass(frozen=True)
class _Handle:
    key: str
    fence: Lease | None


class SharedSolver:
    """The ``fleet`` solver kind: publishes key authorizations in the shared storage.

    ``challenge_type`` is ``http-01`` or ``tls-alpn-01``. ``present`` writes the record
    under the lease this task holds (the lineage's: :func:`innermost_lease`), so any
    node serving challenges answers it at once; ``cleanup`` deletes it under the same
    lease. A write refused because the lease was lost raises FencedError (the order
    is left to the lineage's new holder).
    """

    def __init__(
        self,
        storage: KeyValueStore,
        challenge_type: str = "http-01",
        *,
        clock: Callable[[], float] = time.time,
        lifetime: float = RECORD_LIFETIME,
    ) -> None:
        if challenge_type not in SHARED_CHALLENGES:
            raise ConfigError(
                f"the fleet solver answers http-01 or tls-alpn-01, not {challenge_type!r}: "
                "set {fleet.challenge}",
                settings=("fleet.challenge",),
            )
        self.storage = storage
        self.challenge_type = challenge_type
        self.clock = clock
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"SharedSolver({self.challenge_type})"

    def supports(self, identifier: Identifier) -> bool:
        # RFC 8555 §7.1.3: wildcards need dns-01; RFC 8738 §7 and §6: an IP address is
        # proven by http-01 or tls-alpn-01.
        return identifier.type in ("dns", "ip") and not identifier.is_wildcard

    def _key(self, task: ChallengeTask, token: str) -> str:
        if self.challenge_type == "http-01":
            return challenge_record("http-01", token)
        return challenge_record("tls-alpn-01", token, server_name(task.identifier))

    async def present(self, task: ChallengeTask) -> object:
        token = check_token(task.challenge.token)
        if not self.supports(task.identifier):
            raise ConfigError(
                f"{self.challenge_type} cannot prove {task.identifier} (wildcards need dns-01)"
            )
        if _check_key_authorization(token, task.key_authorization) is None:
            raise ConfigError(f"{task.identifier}: the key authorization is not token.thumbprint")
        key = self._key(task, token)
        fence = innermost_lease()
        record = {
            "challenge": self.challenge_type,
            "token": token,
            "key_authorization": task.key_authorization,
            "identifier": task.identifier.value,
            "lineage": fence.name if fence is not None else "",
            "expires": round(self.clock() + self.lifetime, 3),
        }
        await self.storage.write(key, json.dumps(record).encode(), fence=fence)
        log.info("%s: %s published for the fleet's listeners", task.identifier, key)
        return _Handle(key, fence)

    async def cleanup(self, handle: object) -> None:
        if not isinstance(handle, _Handle):
            return
        try:
            await self.storage.delete(handle.key, fence=handle.fence)
        except NotFoundError:
            pass
        except FencedError:
            log.warning("%s is left to expire: this node lost the lineage's lease", handle.key)


async def shared_answer(
    storage: KeyValueStore,
    challenge: str,
    token: str = "",
    name: str = "",
    *,
    now: float | None = None,
) -> str | None:
    """The key authorization any node answers: for http-01 the one of ``token``, for
    tls-alpn-01 the newest one stored for the SNI ``name``. None for anything unsound
    (bad token or name, no record, a record not sound or expired, storage failing)."""
    moment = time.time() if now is None else now
    try:
        if challenge == "http-01":
            check_token(token)
            keys = [challenge_record("http-01", token)]
        else:
            folder = challenge_folder("tls-alpn-01", name)
            keys = sorted(await storage.list(folder + "/"))
        found: list[tuple[float, str]] = []
        for key in keys:
            token_of = key.rsplit("/", 1)[-1].removesuffix(".json")
            try:
                raw = await storage.read(key)
            except NotFoundError:
                continue
            parsed = _parse_record(raw, token_of, challenge, moment)
            if parsed is not None:
                found.append(parsed)
    except StorageError as exc:
        global _warned_at
        if time.monotonic() - _warned_at >= WARN_EVERY:
            _warned_at = time.monotonic()
            log.warning("%s: cannot read the shared key authorizations: %s", challenge, exc)
        return None
    except (ConfigError, UnsafeResponseError):  # not base64url, not a host name: never a key
        return None
    return max(found)[1] if found else None


async def sweep(storage: KeyValueStore, *, now: float | None = None) -> int:
    """Delete the stored key authorizations past their expiry (left by a node that died
    between present and cleanup); returns how many. A record that is not certherd's
    shape is left alone (and never answered)."""
    moment = time.time() if now is None else now
    removed = 0
    for key in await storage.list(f"{CHALLENGES_FOLDER}/"):
        try:
            raw = await storage.read(key)
        except NotFoundError:
            continue
        try:
            data = json.loads(raw) if len(raw) <= MAX_RECORD else None
        except ValueError:
            continue
        expires = data.get("expires") if isinstance(data, dict) else None
        if isinstance(expires, int | float) and not isinstance(expires, bool) and expires <= moment:
            # No fence: the lease that wrote it is long gone, and its token is never
            # presented again (a resumed order writes the record anew, with a new expiry).
            await storage.delete(key)
            removed += 1
    return removed


class RecordSweeper:
    """Runs :func:`sweep` when the listeners start and every ``interval`` seconds."""

    def __init__(self, storage: KeyValueStore, interval: float = 3600.0) -> None:
        self.storage = storage
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sweep key authorizations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                removed = await sweep(self.storage)
            except StorageError as exc:
                log.warning("cannot sweep expired key authorizations: %s", exc)
            else:
                if removed:
                    log.info("swept %d expired key authorization(s)", removed)
            await asyncio.sleep(self.interval)


class SharedHttp01Server(Http01StandaloneSolver):
    """``run --http-serve``: http-01 for every pending order of the fleet, from storage.

    The same bounded listener as the standalone solver (connection cap, head deadline,
    write timeout), listening from :meth:`start` to :meth:`stop`."""

    def __init__(self, storage: KeyValueStore, port: int = 80, host: str = "") -> None:
        super().__init__(port=port, host=host)
        self.storage = storage
        self.not_found = 0
        """Requests answered 404: no sound record for the token (or not a token)."""

    async def _response(self, token: str) -> str | None:
        answer = await shared_answer(self.storage, "http-01", token)
        if answer is None:
            self.not_found += 1
        return answer

    def collect(self) -> Iterator[Metric]:
        """``/metrics``: what this listener answered (a prometheus_client collector)."""
        return _families(
            "http-01",
            {"answered": self.requests_served, "unknown": self.not_found, "busy": self.refused},
        )

    async def start(self) -> None:
        async with self._lock:
            if self._server is None:
                await _bind(self._start(), "http_serve")
        if self._server is not None and self._server.sockets and not self.port:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        async with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()


class SharedTlsAlpn01Server(TlsAlpn01Solver):
    """``run --tls-alpn-serve``: tls-alpn-01 for every pending order of the fleet.

    A validation connection's SNI name selects the newest sound record stored for it;
    its certificate (RFC 8737 §3) is made once per key authorization and kept for the
    next connections."""

    max_connections = MAX_CONNECTIONS
    """Connections at once; more are closed unread (the listener is open to the internet
    for as long as the daemon runs, so idle clients must not take its descriptors)."""

    def __init__(self, storage: KeyValueStore, port: int = 443, host: str = "") -> None:
        super().__init__(port=port, host=host)
        self.storage = storage
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            self.connections_refused += 1
            writer.transport.abort()
            return
        await super()._serve(reader, writer)

    async def _context_for_name(self, name: str) -> ssl.SSLContext | None:
        answer = await shared_answer(self.storage, "tls-alpn-01", name=name)
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
        async with self._lock:
            if self._server is None:
                await _bind(self._start(), "tls_alpn_serve")
        if self._server is not None and self._server.sockets and not self.port:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

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
        "Validation requests a fleet challenge listener (--http-serve, --tls-alpn-serve) "
        "got, by result: answered with a key authorization, unknown (404 or no such "
        "name), busy or refused.",
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
