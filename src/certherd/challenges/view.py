"""The fleet's pending key authorizations, kept in memory for the challenge listeners.

``run --http-serve`` and ``--tls-alpn-serve`` sit on the public load balancer: anyone may
ask them for any token, as often as they like. If each request read the shared storage,
a flood of made-up tokens would become load on the database of the whole fleet. So a
listener never reads storage for a request: it answers from a :class:`ChallengeView`,
a copy of every record under ``challenges/http-01/`` and ``challenges/tls-alpn-01/``
(:mod:`certherd.challenges.shared`) that follows the storage by itself:

- On PostgreSQL, by ``LISTEN certherd_challenges``: every write or delete of such a
  record notifies the key when it commits (schema version 5), and the view reads that one
  record (one query per key authorization written, none per request). A full look
  (one listing of the folder, then a read of each record that changed) when listening
  starts, and every :data:`RECHECK` seconds as a safety net.
- Where there are no notifications (another storage, or the notification connection
  lost), by polling: a full look every :data:`POLL` seconds, a fraction of a second, so a
  key authorization is answered well before the CA (told right after it is written)
  comes to validate.

A request whose token the view lacks waits for it, without a storage call: while polling,
until the next look that starts after the request came is done; while notified, at most
:data:`MISS_WAIT` seconds (the CA comes to validate milliseconds after the key
authorization is written, and its notification may still be on the way). So an
authorization written before the CA was asked is found, and a made-up token costs a
quarter of a second of one connection, never the database. At most :data:`MAX_WAITING`
requests wait at once; the others of a flood are answered at once, so made-up tokens
cannot hold every connection of the listener (its cap, 256) and turn the CA away. A
token that is not base64url (16 to 512 characters) is 404 at once. While the storage is
away the view keeps answering what it holds (the orders under way keep validating).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from certherd.challenges.shared import MAX_RECORD, parse_record
from certherd.errors import NotFoundError, StorageError
from certherd.storage.base import KeyValueStore, stat_below
from certherd.storage.layout import CHALLENGES_FOLDER

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["CHANNEL", "MAX_WAITING", "MISS_WAIT", "POLL", "RECHECK", "ChallengeView"]

log = logging.getLogger(__name__)

CHANNEL = "certherd_challenges"
"""The PostgreSQL notification channel: payload the key of a record written or deleted."""
POLL = 0.25
"""Seconds between two full looks while no notifications arrive."""
RECHECK = 30.0
"""Seconds between two full looks while notifications arrive (a safety net)."""
MISS_WAIT = 0.25
"""Seconds a request for a token the view lacks waits at most for it to arrive."""
MAX_WAITING = 32
"""Requests waiting so at once; more are answered (404) at once."""
_RETRY_FIRST, _RETRY_MAX = 1.0, 30.0
_WARN_EVERY = 60.0
_MAX_PENDING = 10_000
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,512}")
_FOLDERS = {
    "http-01": f"{CHALLENGES_FOLDER}/http-01/",
    "tls-alpn-01": f"{CHALLENGES_FOLDER}/tls-alpn-01/",
}

Answer = tuple[float, str]
"""(expires, key authorization) of one sound record."""


def _where(key: str) -> tuple[str, str, str] | None:
    """(challenge, SNI name or "", token) of a record's key; None for any other key."""
    for challenge, folder in _FOLDERS.items():
        if not key.startswith(folder) or not key.endswith(".json"):
            continue
        parts = key[len(folder) : -len(".json")].split("/")
        if challenge == "http-01" and len(parts) == 1 and _TOKEN.fullmatch(parts[0]):
            return challenge, "", parts[0]
        if challenge == "tls-alpn-01" and len(parts) == 2 and _TOKEN.fullmatch(parts[1]):
            return challenge, parts[0], parts[1]
    return None


class ChallengeView:
    """An in-memory copy of the stored key authorizations (see the module's text).

    :meth:`start` and :meth:`stop` may be called by several listeners sharing one view:
    it runs from the first start to the last stop. ``clock``: seconds since the epoch
    (a record is answered until its ``expires``).
    """

    def __init__(
        self,
        storage: KeyValueStore,
        *,
        poll: float = POLL,
        recheck: float = RECHECK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.poll = poll
        self.recheck = recheck
        self.clock = clock
        self.storage_calls = 0
        """Calls this view made to the storage (listings and reads), for ``/metrics``."""
        self.notified = False
        """Whether notifications arrive now (else the view polls)."""
        self.turned_away = 0
        """Misses answered at once because :data:`MAX_WAITING` requests waited already."""
        self._waiting = 0
        self._records: dict[str, tuple[str | None, Answer | None]] = {}
        self._http: dict[str, Answer] = {}
        self._names: dict[str, dict[str, Answer]] = {}
        self._pending: set[str] = set()
        self._full = True
        self._wake = asyncio.Event()
        self._looks = asyncio.Condition()
        self._looking = asyncio.Lock()
        self._started = 0  # looks begun
        self._done = 0  # looks finished (well or not)
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._warned = -_WARN_EVERY

    # -- answers ---------------------------------------------------------------------

    async def http01(self, token: str) -> str | None:
        """The key authorization to answer for an http-01 ``token`` (None: 404)."""
        if not _TOKEN.fullmatch(token):
            return None
        return await self._find(lambda: self._http01(token))

    async def tls_alpn01(self, name: str) -> str | None:
        """The newest key authorization stored for the SNI ``name`` (None: none)."""
        return await self._find(lambda: self._tls_alpn01(name))

    def _http01(self, token: str) -> str | None:
        answer = self._http.get(token)
        return answer[1] if answer is not None and answer[0] > self.clock() else None

    def _tls_alpn01(self, name: str) -> str | None:
        now = self.clock()
        found = [answer for answer in self._names.get(name, {}).values() if answer[0] > now]
        return max(found)[1] if found else None

    async def _find(self, lookup: Callable[[], str | None]) -> str | None:
        """``lookup()`` now, or once the view caught up with what was written before this
        request came: while polling, the next poll; while notified, a notification may
        still be on its way (the CA validates milliseconds after the write), so up to
        :data:`MISS_WAIT` seconds. Never a storage call of its own."""
        found = lookup()
        if found is not None or self._task is None:
            return found
        if self._waiting >= MAX_WAITING:
            # A flood of made-up tokens: the rest are answered at once, so they cannot
            # fill the listener's connections (the CA's few requests still get through).
            self.turned_away += 1
            return None
        begun = self._started  # looks begun before this request came
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MISS_WAIT
        self._waiting += 1
        try:
            async with self._looks:
                while True:
                    found = lookup()
                    if found is not None or (not self.notified and self._done > begun):
                        return found
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    try:
                        await asyncio.wait_for(self._looks.wait(), remaining)
                    except TimeoutError:
                        return lookup()
        finally:
            self._waiting -= 1

    # -- following the storage ---------------------------------------------------------

    async def start(self) -> None:
        """Begin following the storage (a first full look before it returns)."""
        self._users += 1
        if self._task is not None:
            return
        await self._look()
        self._task = asyncio.create_task(self._run(), name="follow key authorizations")

    async def stop(self) -> None:
        self._users = max(self._users - 1, 0)
        if self._users or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def told(self, channel: str, key: str) -> None:
        """A notification: ``key`` was written or deleted."""
        if channel != CHANNEL or _where(key) is None:
            return
        if len(self._pending) >= _MAX_PENDING:
            self._full = True
        else:
            self._pending.add(key)
        self._wake.set()

    async def _run(self) -> None:
        listening: asyncio.Task[None] | None = None
        retry_at, pause = 0.0, _RETRY_FIRST
        changes = _changes_of(self.storage)
        try:
            while True:
                if changes is not None and listening is None and time.monotonic() >= retry_at:
                    listening = asyncio.create_task(self._listen(changes))
                if listening is not None and listening.done():
                    listening = None
                    self.notified = False
                    retry_at, pause = time.monotonic() + pause, min(pause * 2, _RETRY_MAX)
                elif self.notified:
                    pause = _RETRY_FIRST
                wait = self.recheck if self.notified else self.poll
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    self._full = True  # a poll, or the safety net's look while notified
                self._wake.clear()
                if not self.notified:
                    self._full = True
                await self._look()
        finally:
            self.notified = False
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def _listen(self, changes: Callable[..., Any]) -> None:
        ready = asyncio.Event()

        async def heard() -> None:
            await ready.wait()
            self.notified = True
            self._full = True  # what was written before LISTEN began
            self._wake.set()

        waiting = asyncio.create_task(heard())
        try:
            await changes(self.told, ready=ready, channels=(CHANNEL,))
        except StorageError as exc:
            log.debug("key authorizations: notifications unavailable: %s", exc)
        except Exception as exc:  # the notification connection must never end the listener
            log.debug("key authorizations: notifications failed", exc_info=exc)
        finally:
            waiting.cancel()
            self.notified = False
            self._wake.set()

    async def refresh(self) -> None:
        """Look at every stored record now (what a poll does)."""
        self._full = True
        await self._look()

    async def _look(self) -> None:
        """One look: every record (full) or the ones notified; one at a time."""
        async with self._looking:
            await self._look_once()

    async def _look_once(self) -> None:
        full, self._full = self._full, False
        keys, self._pending = self._pending, set()
        self._started += 1
        try:
            if full:
                await self._look_at_all()
            else:
                for key in keys:
                    await self._read(key, None)
        except StorageError as exc:
            self._full = True  # look at everything again once the storage answers
            if time.monotonic() - self._warned >= _WARN_EVERY:
                self._warned = time.monotonic()
                log.warning(
                    "cannot follow the shared key authorizations (answering what is known): %s",
                    exc,
                )
        finally:
            self._done += 1
            async with self._looks:
                self._looks.notify_all()

    async def _look_at_all(self) -> None:
        self.storage_calls += 1
        stats = await stat_below(self.storage, f"{CHALLENGES_FOLDER}/")
        seen = {key: stat for key, stat in stats.items() if _where(key) is not None}
        for key in list(self._records):
            if key not in seen:
                self._forget(key)
        for key, stat in seen.items():
            known = self._records.get(key)
            if known is None or known[0] != stat.token:
                await self._read(key, stat.token, size=stat.size)

    async def _read(self, key: str, version: str | None, *, size: int = 0) -> None:
        where = _where(key)
        if where is None:
            return
        challenge, name, token = where
        answer: Answer | None = None
        if size <= MAX_RECORD:
            self.storage_calls += 1
            try:
                raw = await self.storage.read(key)
            except NotFoundError:
                self._forget(key)
                return
            answer = parse_record(raw, token, challenge, 0.0)
        self._forget(key)
        self._records[key] = (version, answer)
        if answer is None:
            return
        if challenge == "http-01":
            self._http[token] = answer
        else:
            self._names.setdefault(name, {})[token] = answer

    def _forget(self, key: str) -> None:
        self._records.pop(key, None)
        where = _where(key)
        if where is None:
            return
        challenge, name, token = where
        if challenge == "http-01":
            self._http.pop(token, None)
            return
        tokens = self._names.get(name)
        if tokens is not None:
            tokens.pop(token, None)
            if not tokens:
                self._names.pop(name, None)

    def __len__(self) -> int:
        return len(self._http) + sum(len(tokens) for tokens in self._names.values())

    def collect(self) -> Iterator[Metric]:
        """``/metrics``: what the view holds and what following the storage cost."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        calls = CounterMetricFamily(
            "certherd_fleet_challenge_storage_calls",
            "Calls the challenge listeners made to the shared storage to follow the key "
            "authorizations (listings and reads; never one per validation request).",
        )
        calls.add_metric([], float(self.storage_calls))
        yield calls
        held = GaugeMetricFamily(
            "certherd_fleet_challenge_records",
            "Key authorizations the challenge listeners hold in memory now.",
        )
        held.add_metric([], float(len(self)))
        yield held
        notified = GaugeMetricFamily(
            "certherd_fleet_challenge_notified",
            "1 while the challenge listeners hear of new key authorizations by "
            "notification, 0 while they poll.",
        )
        notified.add_metric([], 1.0 if self.notified else 0.0)
        yield notified


def _changes_of(storage: object) -> Callable[..., Any] | None:
    """The storage's ``changes`` (LISTEN), if it can notify the key authorizations."""
    from certherd.storage.fleet import fleet_of

    fleet = fleet_of(storage)
    changes = getattr(fleet, "changes", None)
    if changes is None or not getattr(fleet, "notifies_challenges", False):
        return None
    return changes  # type: ignore[no-any-return]
