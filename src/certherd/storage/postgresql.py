"""Storage in PostgreSQL (``pip install 'certherd[postgresql]'``): one database shared by
every certherd of a fleet.

Opened from a libpq URL (``postgresql://certherd@db.example/certherd``, or
``postgresql:///certherd?host=/run/postgresql`` for a socket); the password comes from
the URL or from libpq's usual places (``PGPASSWORD``, ``PGPASSFILE``, ``~/.pgpass``) and is
never shown: messages name the database by :func:`~certherd.storage.pgschema.redact`.
The schema is created and migrated on first use (:mod:`certherd.storage.pgschema`).

Values: one row each in ``certherd_values``; a write is one statement (or, fenced, one
transaction), so a reader sees the old value or the new one; ``Stat.token`` is a bigint
from a sequence, new at every write. ``private`` rows are hidden from every role but
the owner's by row-level security (see pgschema).

Leases: one row per name in ``certherd_leases``. A grant is one ``INSERT ... ON CONFLICT
DO UPDATE ... WHERE`` the lease is free (released, or expired by the database server's
``now()``), its token drawn from ``certherd_lease_tokens`` in that same statement, after
the row is locked: every grant's token is above every earlier grant's, whichever client
made it. A fenced write reads the lease row ``FOR SHARE`` in the write's transaction: a
grant (an UPDATE of that row) waits for the write to commit, and a write after a newer
grant sees its token and is refused (FencedError). Clients' clocks are never compared:
``Lease.expires`` is the database server's clock.

psycopg (3, async) and psycopg_pool are imported when a storage is first used, so the
rest of certherd works without them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from certherd.errors import (
    ConfigError,
    FencedError,
    LeaseLostError,
    LockTimeoutError,
    NotFoundError,
    StorageError,
    UnavailableError,
)
from certherd.storage.base import Lease, Stat
from certherd.storage.layout import check_name
from certherd.storage.pgfleet import PostgresFleet
from certherd.storage.pgschema import check_url, migrate, redact
from certherd.storage.sealing import Sealer, unsealed

__all__ = ["DEADLINE", "DEADLINE_RANGE", "PostgresStorage", "check_deadline"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Names = list[str]  # (the class's ``list`` method hides the builtin in its body)

DEADLINE = 30.0
"""Seconds one storage call may take by default (a hung database is an error, not a
hang)."""
DEADLINE_RANGE = (1.0, 3600.0)
"""The deadlines a user may set (``--storage-timeout``), in seconds."""
_POLL_FIRST = 0.02
_POLL_MAX = 0.5
_CONNECT_TIMEOUT = 10
_TCP_DEFAULTS = {
    "connect_timeout": str(_CONNECT_TIMEOUT),
    # A database host that vanishes (power loss, a network cut) ends the connection in
    # about a minute instead of never: keepalives while idle, a send timeout while busy.
    # TCP only (libpq ignores them on a unix socket); the URL's own values win.
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
    "application_name": "certherd",
}
_LOGIN_WORDS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied for database",
    "authentication failed",
    "certificate",
)
"""Connection failures that are the configuration's fault (exit 2), not the network's."""
_STAT = "size, extract(epoch FROM modified)::float8, version"


def check_deadline(value: object) -> float:
    """``value`` as a deadline in seconds (:data:`DEADLINE_RANGE`), from a number or the
    text of a flag; ConfigError naming the setting otherwise."""
    import math

    low, high = DEADLINE_RANGE
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or not low <= seconds <= high:
        shown = str(value)[:40]
        raise ConfigError(
            f"{{storage_timeout}}: {shown!r} is not a number of seconds from {low:g} to "
            f"{high:g} (how long one database call may take; default {DEADLINE:g})",
            settings=("storage_timeout",),
        )
    return seconds


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _secrets_in(url: str) -> list[str]:
    """The passwords written in ``url`` (as written and decoded), to keep out of messages."""
    from urllib.parse import unquote

    found = re.findall(r"://[^/@?]*?:([^@/?]+)@", url)
    found += re.findall(r"(?:^|[?&])(?:ssl)?password=([^&]*)", url, flags=re.IGNORECASE)
    return sorted({text for raw in found for text in (raw, unquote(raw)) if text}, key=len)[::-1]


def _import() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise UnavailableError(
            "the PostgreSQL storage needs psycopg 3 and psycopg_pool: "
            "pip install 'certherd[postgresql]'"
        ) from None
    return psycopg, psycopg_pool


class PostgresStorage(PostgresFleet):
    """The Storage contract on a PostgreSQL database (shared between machines), with
    the fleet's schedule and claims (:class:`~certherd.storage.fleet.Fleet`).

    ``url``: a libpq URL (ConfigError now if it is not one). ``max_connections``: the
    pool's size. ``node``: this process's name in the fleet (default: the host name),
    the first part of every lease holder. ``deadline``: seconds any one call may take
    (waiting for a pooled connection included) before it fails with a StorageError, so
    a database that hangs cannot hang certherd. One instance may be used from several
    event loops one after the other (each gets its own pool); :meth:`aclose` closes the
    current one.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 10,
        node: str | None = None,
        deadline: float = DEADLINE,
        sealer: Sealer | None = None,
    ) -> None:
        self.url = check_url(url)
        self.sealer = sealer
        self.where = redact(url)
        self._secrets = [url, *_secrets_in(url)]
        psycopg, _ = _import()
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(
                f"the storage URL {self.where!r} is not usable: {self._line(exc)}"
            ) from None
        for port in str(params.get("port") or "5432").split(","):
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"the storage URL {self.where!r} is not usable: port {port!r} is not "
                    "a number from 1 to 65535"
                )
        for name, value in _TCP_DEFAULTS.items():
            params.setdefault(name, value)
        self._secrets += [str(params[k]) for k in ("password", "sslpassword") if params.get(k)]
        self._conninfo: str = psycopg.conninfo.make_conninfo(**params)
        self._max_connections = max(2, max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[Any] | None = None
        name = check_name(node, "node name") if node else socket.gethostname()
        self._holder = f"{name}/{os.getpid()}"
        self.deadline = check_deadline(deadline)
        self._forgotten: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"PostgresStorage({self.where!r})"

    # -- connections ----------------------------------------------------------------------

    def _line(self, exc: BaseException) -> str:
        """One line of an error from psycopg or libpq, secrets replaced by ``***``."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:  # the whole URL first: libpq quotes it when unreadable
            text = text.replace(secret, self.where if secret == self.url else "***")
        return text[:500]

    async def _connect(self) -> Any:
        """One connection (autocommit), or a one-line error: ConfigError when the URL,
        the user or the password is wrong, StorageError when the server is unreachable."""
        psycopg, _ = _import()
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            line = self._line(exc)
            if any(words in line for words in _LOGIN_WORDS):
                raise ConfigError(
                    f"cannot log in to the PostgreSQL storage {self.where}: {line} "
                    "(check the user and the password: PGPASSWORD, PGPASSFILE or ~/.pgpass)"
                ) from None
            raise StorageError(
                f"cannot connect to the PostgreSQL storage {self.where}: {line}"
            ) from None

    async def _open(self) -> Any:
        _, psycopg_pool = _import()
        connection = await self._connect()
        try:
            await migrate(connection, where=self.where)
        except (ConfigError, StorageError):
            raise
        except Exception as exc:  # psycopg.Error: a role without CREATE, a broken schema
            raise StorageError(
                f"cannot prepare the schema of the PostgreSQL storage {self.where}: "
                f"{self._line(exc)}"
            ) from None
        finally:
            await connection.close()
        pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=self._max_connections,
            open=False,
            name="certherd",
            timeout=30,
        )
        await pool.open(wait=False)
        return pool

    async def _pool(self) -> Any:
        loop = asyncio.get_running_loop()
        opening = self._opening
        if (
            self._loop is not loop
            or opening is None
            or (opening.done() and (opening.cancelled() or opening.exception() is not None))
        ):
            self._loop = loop
            opening = self._opening = loop.create_task(self._open(), name="open PostgreSQL")
        return await asyncio.shield(opening)

    async def _run(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a pooled connection; psycopg errors as StorageError."""
        psycopg, psycopg_pool = _import()
        try:
            async with asyncio.timeout(self.deadline):
                pool = await self._pool()
                async with pool.connection(timeout=self.deadline) as connection:
                    return await work(connection)
        except TimeoutError:
            raise StorageError(
                f"cannot {what}: the PostgreSQL storage {self.where} did not answer "
                f"within {self.deadline:g}s"
            ) from None
        except psycopg_pool.PoolTimeout:
            raise StorageError(
                f"cannot {what}: no connection to the PostgreSQL storage {self.where}"
            ) from None
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot {what} in the PostgreSQL storage {self.where}: {self._line(exc)}"
            ) from None

    async def _change(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """:meth:`_run` for a change: it completes (or fails) even if the caller is
        cancelled meanwhile, so no connection is left mid-transaction."""
        return await asyncio.shield(self._run(what, work))

    async def aclose(self) -> None:
        """Close the pool of the running event loop (opened again on next use)."""
        opening, self._opening = self._opening, None
        if opening is None or self._loop is not asyncio.get_running_loop():
            return
        try:
            pool = await opening
        except Exception:
            return
        await pool.close()

    # -- values -------------------------------------------------------------------------

    async def _check_fence(self, connection: Any, fence: Lease) -> None:
        """Inside a transaction: FencedError if ``fence.name`` was granted again. The
        row lock (FOR SHARE) holds off any new grant until the transaction ends."""
        cursor = await connection.execute(
            "SELECT token, holder FROM certherd_leases WHERE name = %s FOR SHARE", (fence.name,)
        )
        row = await cursor.fetchone()
        if row is not None and row[0] > fence.token:
            raise FencedError(
                f"refused a write under the lease of {fence.name} with token {fence.token}: "
                f"it was granted again since (token {row[0]}, {row[1] or 'released'})"
            )

    async def read(self, key: str) -> bytes:
        async def work(connection: Any) -> Any:
            cursor = await connection.execute(
                "SELECT data FROM certherd_values WHERE key = %s", (key,)
            )
            return await cursor.fetchone()

        row = await self._run(f"read {key}", work)
        if row is None:
            raise NotFoundError(f"{key} not found in the PostgreSQL storage {self.where}")
        return unsealed(key, bytes(row[0]), self.sealer)

    async def write(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        data = bytes(data)
        statement = (
            "INSERT INTO certherd_values (key, data, size, private, modified, version)"
            " VALUES (%s, %b, %s, %s, now(), nextval('certherd_value_versions'))"
            " ON CONFLICT (key) DO UPDATE SET data = excluded.data, size = excluded.size,"
            " private = excluded.private, modified = excluded.modified,"
            " version = excluded.version"
        )
        stored = self.sealer.seal(key, data) if private and self.sealer is not None else data
        values = (key, stored, len(data), private)

        async def work(connection: Any) -> None:
            if fence is None:
                await connection.execute(statement, values)
                return
            async with connection.transaction():
                await self._check_fence(connection, fence)
                await connection.execute(statement, values)

        await self._change(f"write {key}", work)

    async def delete(self, key: str, *, fence: Lease | None = None) -> None:
        async def work(connection: Any) -> None:
            statement = "DELETE FROM certherd_values WHERE key = %s"
            if fence is None:
                await connection.execute(statement, (key,))
                return
            async with connection.transaction():
                await self._check_fence(connection, fence)
                await connection.execute(statement, (key,))

        await self._change(f"delete {key}", work)

    async def reseal(self, *, batch: int = 500) -> tuple[int, int]:
        """Seal every private value with the sealer's first key (values in clear, and
        values sealed with an older key of the file): ``(resealed, already current)``.

        One compare-and-set per value on its version: a value written meanwhile is left
        as its writer sealed it. Safe beside running nodes; run it again to be sure."""
        sealer = self.sealer
        if sealer is None:
            raise ConfigError(
                "resealing needs {storage_key_file}: the key file whose first key seals",
                settings=("storage_key_file",),
            )
        resealed = current = 0
        after = ""
        while True:

            async def page(connection: Any, after: str = after) -> list[Any]:
                cursor = await connection.execute(
                    "SELECT key, data, version FROM certherd_values"
                    " WHERE private AND key > %s ORDER BY key LIMIT %s",
                    (after, batch),
                )
                return list(await cursor.fetchall())

            rows = await self._run("read the private values", page)
            if not rows:
                return resealed, current
            for key, raw, version in rows:
                data = bytes(raw)
                if sealer.current(data):
                    current += 1
                    continue
                sealed = sealer.seal(key, sealer.unseal(key, data))

                async def swap(connection: Any, key: str = key, version: int = version,
                               sealed: bytes = sealed) -> int:  # fmt: skip
                    cursor = await connection.execute(
                        "UPDATE certherd_values SET data = %b WHERE key = %s AND version = %s",
                        (sealed, key, version),
                    )
                    return int(cursor.rowcount)

                resealed += await self._change(f"reseal {key}", swap)
            after = rows[-1][0]

    def _below(self, prefix: str) -> str:
        """The LIKE pattern of every key below ``prefix`` (its wildcards escaped)."""
        start = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        return _escape_like(start) + "%"

    async def list(self, prefix: str) -> Names:
        async def work(connection: Any) -> Names:
            cursor = await connection.execute(
                "SELECT key FROM certherd_values WHERE key LIKE %s ORDER BY key",
                (self._below(prefix),),
            )
            return [row[0] for row in await cursor.fetchall()]

        return await self._run(f"list {prefix or 'every key'}", work)

    async def stat(self, key: str) -> Stat:
        async def work(connection: Any) -> Any:
            cursor = await connection.execute(
                f"SELECT {_STAT} FROM certherd_values WHERE key = %s",  # noqa: S608
                (key,),
            )
            return await cursor.fetchone()

        row = await self._run(f"read {key}", work)
        if row is None:
            raise NotFoundError(f"{key} not found in the PostgreSQL storage {self.where}")
        return Stat(int(row[0]), float(row[1]), str(row[2]))

    async def stat_all(self, prefix: str) -> dict[str, Stat]:
        async def work(connection: Any) -> dict[str, Stat]:
            cursor = await connection.execute(
                f"SELECT key, {_STAT} FROM certherd_values WHERE key LIKE %s",  # noqa: S608
                (self._below(prefix),),
            )
            return {
                row[0]: Stat(int(row[1]), float(row[2]), str(row[3]))
                for row in await cursor.fetchall()
            }

        return await self._run(f"list {prefix or 'every key'}", work)

    # -- leases -------------------------------------------------------------------------

    async def _grant(self, name: str, ttl: float) -> Lease | None:
        """One try: the lease if ``name`` is free (never granted, released, or expired
        by the server's clock), else None."""
        holder = f"{self._holder}/{os.urandom(4).hex()}"

        async def work(connection: Any) -> Lease | None:
            cursor = await connection.execute(
                "INSERT INTO certherd_leases AS held (name, holder, token, granted, expires)"
                " VALUES (%(name)s, %(holder)s, nextval('certherd_lease_tokens'), now(),"
                " now() + %(ttl)s * interval '1 second')"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                # drawn after the row is locked: above the token of every earlier grant
                " token = nextval('certherd_lease_tokens'), granted = excluded.granted,"
                " expires = excluded.expires"
                " WHERE held.holder IS NULL OR held.expires <= now()"
                " RETURNING token, extract(epoch FROM expires)::float8",
                {"name": name, "holder": holder, "ttl": ttl},
            )
            row = await cursor.fetchone()
            return None if row is None else Lease(name, holder, int(row[0]), float(row[1]))

        return await self._run(f"take the lease of {name}", work)

    async def _current(self, name: str) -> tuple[str, int] | None:
        async def work(connection: Any) -> Any:
            cursor = await connection.execute(
                "SELECT holder, token FROM certherd_leases WHERE name = %s", (name,)
            )
            return await cursor.fetchone()

        row = await self._run(f"read the lease of {name}", work)
        return None if row is None else (row[0] or "nobody", int(row[1]))

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        check_name(name, "lock name")
        deadline = time.monotonic() + max(wait, 0.0)
        pause = _POLL_FIRST
        while True:
            trying = asyncio.ensure_future(self._grant(name, ttl))
            try:
                lease = await asyncio.shield(trying)
            except asyncio.CancelledError:
                trying.add_done_callback(self._give_back)  # a grant no one will use
                raise
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                current = await self._current(name)
                holder = current[0] if current else "another holder"
                raise LockTimeoutError(
                    f"another holder ({holder}) holds {name} for more than {wait:.0f}s: "
                    "wait for it to finish"
                )
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, _POLL_MAX)

    def _give_back(self, trying: asyncio.Future[Lease | None]) -> None:
        if trying.cancelled() or trying.exception() is not None:
            return
        lease = trying.result()
        if lease is not None:
            task = asyncio.ensure_future(self._release_quietly(lease))
            self._forgotten.add(task)
            task.add_done_callback(self._forgotten.discard)

    async def held(self) -> dict[str, Lease]:
        async def work(connection: Any) -> dict[str, Lease]:
            cursor = await connection.execute(
                "SELECT name, holder, token, extract(epoch FROM expires)::float8"
                " FROM certherd_leases WHERE holder IS NOT NULL AND expires > now()"
            )
            return {
                row[0]: Lease(row[0], row[1], int(row[2]), float(row[3]))
                for row in await cursor.fetchall()
            }

        return await self._run("list the leases held", work)

    async def _release_quietly(self, lease: Lease) -> None:
        """Give back a grant nobody waits for; if that fails, it expires by itself."""
        try:
            await self.release(lease)
        except StorageError as exc:
            log.warning("cannot give back the lease of %s (it expires): %s", lease.name, exc)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        async def work(connection: Any) -> Any:
            cursor = await connection.execute(
                "UPDATE certherd_leases SET expires = now() + %s * interval '1 second'"
                " WHERE name = %s AND token = %s AND holder IS NOT NULL"
                " RETURNING extract(epoch FROM expires)::float8",
                (ttl, lease.name, lease.token),
            )
            return await cursor.fetchone()

        row = await self._change(f"renew the lease of {lease.name}", work)
        if row is None:
            current = await self._current(lease.name)
            now = f" to {current[0]} (token {current[1]})" if current else ""
            raise LeaseLostError(
                f"the lease of {lease.name} (token {lease.token}) ran out and was granted"
                f"{now}: stop working on it"
            )
        return Lease(lease.name, lease.holder, lease.token, float(row[0]))

    async def release(self, lease: Lease) -> None:
        async def work(connection: Any) -> None:
            await connection.execute(
                "UPDATE certherd_leases SET holder = NULL, expires = now()"
                " WHERE name = %s AND token = %s",
                (lease.name, lease.token),
            )

        await self._change(f"release the lease of {lease.name}", work)
