"""The fleet ability (:class:`certherd.storage.fleet.Fleet`) of the PostgreSQL storage.

Tables (schema version 2, :mod:`certherd.storage.pgschema`)::

    certherd_schedule   (lineage, due, ca, live,    one row per lineage, kept by the
                         obtained, obtained_by)     trigger certherd_schedule_follow on
                                                    certherd_values; index on due
    certherd_ca_backoff (ca, until, reason, by)     CAs every node leaves alone

Notifications (LISTEN): ``certherd_schedule`` (a lineage's settings were written: new
or changed desired state) and ``certherd_live`` (a lineage's live version changed), each
with the lineage's name as payload, sent when the write commits; ``certherd_challenges``
(a key authorization under ``challenges/`` written or deleted), its key as payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from certherd.errors import ConfigError
from certherd.storage.base import Lease
from certherd.storage.fleet import CaBackoff, ScheduleEntry
from certherd.storage.layout import check_name, state_file

__all__ = ["CHALLENGES_CHANNEL", "CHANNELS", "PostgresFleet"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNELS = ("certherd_schedule", "certherd_live")
"""What a node LISTENs to (payload: a lineage's name)."""
CHALLENGES_CHANNEL = "certherd_challenges"
"""Notified with the key of every key authorization written or deleted (schema version 5):
what the challenge listeners LISTEN to (:mod:`certherd.challenges.view`)."""

_CLAIMABLE = """
    NOT EXISTS (SELECT 1 FROM certherd_leases l WHERE l.name = s.lineage
                AND l.holder IS NOT NULL AND l.expires > now())
    AND (s.ca IS NULL OR NOT EXISTS (SELECT 1 FROM certherd_ca_backoff b
                                     WHERE b.ca = s.ca AND b.until > now()))"""

_CLAIM = f"""
WITH picked AS (
    SELECT s.lineage FROM certherd_schedule s
    WHERE s.due <= now() AND {_CLAIMABLE}
    ORDER BY s.due LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
)
INSERT INTO certherd_leases AS held (name, holder, token, granted, expires)
SELECT lineage, %(holder)s || '/' || substr(md5(random()::text), 1, 8),
    nextval('certherd_lease_tokens'), now(), now() + %(ttl)s * interval '1 second'
FROM picked
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
    token = nextval('certherd_lease_tokens'), granted = excluded.granted,
    expires = excluded.expires
WHERE held.holder IS NULL OR held.expires <= now()
RETURNING name, holder, token, extract(epoch FROM expires)::float8"""  # noqa: S608
"""One statement: due rows nobody holds, locked or skipped (SKIP LOCKED: a concurrent
claim takes other rows), and their leases granted as :meth:`PostgresStorage.acquire`
grants one (the ON CONFLICT ... WHERE is the last word: never two holders)."""

_DUE_IN = f"""
SELECT extract(epoch FROM least(
    (SELECT s.due FROM certherd_schedule s WHERE {_CLAIMABLE} ORDER BY s.due LIMIT 1),
    (SELECT min(l.expires) FROM certherd_leases l
     WHERE l.holder IS NOT NULL AND l.expires > now()
       AND EXISTS (SELECT 1 FROM certherd_schedule s WHERE s.lineage = l.name)),
    (SELECT min(b.until) FROM certherd_ca_backoff b WHERE b.until > now())
) - now())::float8"""  # noqa: S608
"""When a lineage may next be claimed: the first claimable one due (the schedule's
index on ``due``), a lease held now running out (its holder may have died), a CA held
back becoming free (each an index range or a small table, not a scan of the schedule)."""


class PostgresFleet:
    """Mixed into :class:`~certherd.storage.postgresql.PostgresStorage`."""

    _holder: str
    where: str

    if TYPE_CHECKING:  # provided by PostgresStorage

        def _line(self, exc: BaseException) -> str: ...

        async def _run(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T: ...

        async def _change(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T: ...

        async def _connect(self) -> Any: ...

    notifies_challenges = True
    """``changes(channels=(CHALLENGES_CHANNEL,))`` tells of every key authorization."""

    @property
    def node(self) -> str:
        return self._holder.split("/", 1)[0]

    async def claim(self, *, limit: int, ttl: float) -> list[Lease]:
        if limit <= 0:
            return []

        async def work(connection: Any) -> list[Any]:
            cursor = await connection.execute(
                _CLAIM, {"limit": limit, "holder": self._holder, "ttl": ttl}
            )
            return list(await cursor.fetchall())

        rows = await self._change("claim due lineages", work)
        leases = [Lease(row[0], row[1], int(row[2]), float(row[3])) for row in rows]
        claimed = []
        for lease in leases:
            try:
                check_name(lease.name)
            except ConfigError:
                log.error("the schedule names %r, not a usable lineage name", lease.name)
                continue
            claimed.append(lease)
        return claimed

    async def settle(
        self, lineage: str, *, floor: float, fence: Lease | None = None, release: bool = False
    ) -> dt.datetime | None:
        token = fence.token if fence is not None else None

        async def work(connection: Any) -> Any:
            cursor = await connection.execute(
                "WITH settled AS (UPDATE certherd_schedule s SET due = greatest("
                "  coalesce((SELECT certherd_due(v.data) FROM certherd_values v"
                "   WHERE v.key = %(state)s), now()),"
                "  now() + %(floor)s * interval '1 second')"
                " WHERE s.lineage = %(lineage)s AND (%(token)s::bigint IS NULL OR NOT EXISTS"
                "  (SELECT 1 FROM certherd_leases l WHERE l.name = s.lineage"
                "   AND l.token > %(token)s::bigint))"
                " RETURNING due),"
                " freed AS (UPDATE certherd_leases SET holder = NULL, expires = now()"
                "  WHERE %(release)s AND name = %(lineage)s AND token = %(token)s::bigint"
                "  RETURNING 1)"
                " SELECT (SELECT due FROM settled), (SELECT count(*) FROM freed)",
                {
                    "state": state_file(lineage),
                    "floor": max(floor, 0.0),
                    "lineage": lineage,
                    "token": token,
                    "release": release and token is not None,
                },
            )
            return await cursor.fetchone()

        row = await self._change(f"schedule {lineage}", work)
        return None if row is None else row[0]

    async def schedule(self, lineages: list[str] | None = None) -> dict[str, ScheduleEntry]:
        async def work(connection: Any) -> dict[str, ScheduleEntry]:
            query = (
                "SELECT lineage, due, ca, live, not_after, obtained, obtained_by"
                " FROM certherd_schedule"
            )
            if lineages is None:
                cursor = await connection.execute(query)
            else:
                cursor = await connection.execute(query + " WHERE lineage = ANY(%s)", (lineages,))
            return {row[0]: ScheduleEntry(*row) for row in await cursor.fetchall()}

        return await self._run("read the schedule", work)

    async def due_in(self) -> float | None:
        async def work(connection: Any) -> Any:
            cursor = await connection.execute(_DUE_IN)
            return await cursor.fetchone()

        row = await self._run("read the schedule", work)
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    async def hold_back(self, ca: str, *, seconds: float, reason: str) -> None:
        async def work(connection: Any) -> None:
            await connection.execute(
                "INSERT INTO certherd_ca_backoff AS b (ca, until, reason, by)"
                " VALUES (%s, now() + %s * interval '1 second', %s, %s)"
                " ON CONFLICT (ca) DO UPDATE SET until = excluded.until,"
                " reason = excluded.reason, by = excluded.by WHERE b.until < excluded.until",
                (ca, max(seconds, 0.0), reason[:500], self._holder),
            )

        await self._change("hold the fleet back from a CA", work)

    async def held_back(self) -> dict[str, CaBackoff]:
        async def work(connection: Any) -> dict[str, CaBackoff]:
            cursor = await connection.execute(
                "SELECT ca, until, reason, by FROM certherd_ca_backoff WHERE until > now()"
            )
            return {row[0]: CaBackoff(*row) for row in await cursor.fetchall()}

        return await self._run("read the CA backoff", work)

    async def changes(
        self,
        on_change: Callable[[str, str], None],
        *,
        ready: asyncio.Event | None = None,
        channels: Sequence[str] = CHANNELS,
    ) -> None:
        """LISTEN to ``channels`` on a connection of its own until cancelled:
        ``on_change(channel, payload)`` for each notification. Raises StorageError when
        the connection cannot be made or is lost (the caller polls meanwhile and calls
        again later). ``ready`` is set once listening."""
        unknown = set(channels) - set(CHANNELS) - {CHALLENGES_CHANNEL}
        if unknown:
            raise ValueError(f"no such notification channel: {sorted(unknown)}")
        connection = await self._connect()
        try:
            for channel in channels:
                await connection.execute(f"LISTEN {channel}")
            if ready is not None:
                ready.set()
            try:
                async for notice in connection.notifies():
                    on_change(notice.channel, notice.payload)
            except Exception as exc:  # psycopg.Error: the connection went away
                from certherd.errors import StorageError

                raise StorageError(
                    f"lost the notifications of the PostgreSQL storage {self.where}: "
                    f"{self._line(exc)}"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
