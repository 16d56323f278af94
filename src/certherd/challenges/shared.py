"""http-01 and tls-alpn-01 answered by any node of a fleet (issue 12 item 5).

The node that places an order does not need to be the one the CA reaches: the solver
kind ``fleet`` writes each key authorization into the shared storage, and every node
run with ``--http-serve`` / ``--tls-alpn-serve`` answers from there, for every pending
order of the fleet (put those listeners behind the same load balancer as the site;
they live in :mod:`certherd.challenges.listeners` and announce themselves in the storage:
while none does, the solver refuses to present, before the CA is asked to validate).

Records (keys built by :func:`certherd.storage.layout.challenge_record`)::

    challenges/http-01/<token>.json
    challenges/tls-alpn-01/<sni name>/<token>.json

each ``{"challenge", "token", "key_authorization", "identifier", "lineage",
"expires"}``. They are written and deleted under the lease of the lineage being
obtained (``fence=``): a node paused past its lease cannot publish or remove a record
of the order the next holder works on. A record left behind (a node killed between
present and cleanup) is never answered after ``expires``.

What the listeners trust: nothing from the network or the CA builds a key. They answer
from memory (:class:`certherd.challenges.view.ChallengeView`, which follows the storage
by notification or polling), never by a storage call per request: a token that is not
base64url, or that nobody presented, gets 404, an SNI name nobody presented gets
``unrecognized_name``; a stored record is answered only if it is well formed, names the
token asked for, has a key authorization of the form ``token.thumbprint`` (RFC 8555
§8.1) and has not expired. (:func:`shared_answer` reads the storage at each call: for a
one-off question, never a listener's way.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from certherd.acme.messages import Identifier
from certherd.challenges.base import ChallengeTask, check_token
from certherd.challenges.tlsalpn01 import server_name
from certherd.errors import (
    ConfigError,
    FencedError,
    NotFoundError,
    SolverError,
    StorageError,
    UnsafeResponseError,
)
from certherd.storage.base import KeyValueStore, Lease
from certherd.storage.layout import (
    CHALLENGES_FOLDER,
    SHARED_CHALLENGES,
    challenge_folder,
    challenge_listener,
    challenge_record,
)
from certherd.storage.leases import innermost_lease

__all__ = [
    "RECORD_LIFETIME",
    "RecordSweeper",
    "SharedSolver",
    "listening",
    "parse_record",
    "shared_answer",
    "sweep",
]

log = logging.getLogger(__name__)

RECORD_LIFETIME = 24 * 3600.0
"""Seconds a stored key authorization is answered at most (a crashed node's leftovers)."""
MAX_RECORD = 4096
"""Bytes: a larger stored record is not one certherd wrote."""
_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url SHA-256 (RFC 7638)
HEARTBEAT = 30.0
"""Seconds between two announcements of a running listener in the shared storage."""
HEARTBEAT_LIFETIME = 120.0
"""Seconds an announcement counts: a listener not heard of for this long is gone."""
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


def parse_record(raw: bytes, token: str, challenge: str, now: float) -> tuple[float, str] | None:
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
    is left to the lineage's new holder). While no node's listener for the challenge
    announced itself in the storage lately, ``present`` raises SolverError instead, before
    the CA is told to validate (a validation that cannot succeed counts against the
    account's failed-validation limits).
    """

    def __init__(
        self,
        storage: KeyValueStore,
        challenge_type: str = "http-01",
        *,
        clock: Callable[[], float] = time.time,
        lifetime: float = RECORD_LIFETIME,
        require_listener: bool = True,
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
        self.require_listener = require_listener
        """Refuse to present (SolverError) while no listener announces itself."""

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
        if self.require_listener and not await listening(self.storage, self.challenge_type):
            # Told before the CA is: the authorization stays pending, no failed
            # validation counts against the account at the CA.
            gone = (
                f"no node of the fleet answers {self.challenge_type} now (none announced "
                f"itself in the shared storage within {HEARTBEAT_LIFETIME:g} s): run "
                "`certherd run` with "
            )
            where = " on the hosts the name points to"
            if self.challenge_type == "http-01":
                raise SolverError(gone + "{http_serve}" + where, settings=("http_serve",))
            raise SolverError(gone + "{tls_alpn_serve}" + where, settings=("tls_alpn_serve",))
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
            parsed = parse_record(raw, token_of, challenge, moment)
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


async def listening(storage: KeyValueStore, challenge: str, *, now: float | None = None) -> bool:
    """Whether some node's listener for ``challenge`` announced itself lately."""
    moment = time.time() if now is None else now
    for key in await storage.list(challenge_listener(challenge) + "/"):
        try:
            data = json.loads(await storage.read(key))
        except (NotFoundError, ValueError):
            continue
        expires = data.get("expires") if isinstance(data, dict) else None
        if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > moment:
            return True
    return False


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
