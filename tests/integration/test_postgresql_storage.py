"""What the PostgreSQL storage adds to the storage contract (tests/contract): its schema
(made and migrated by certherd, safe when nodes start at once, a newer one refused), its
privileges, and one clear line for every way its URL or its server can be wrong.
Runs on the session's real PostgreSQL (tests/servers/postgres.py)."""

from __future__ import annotations

import asyncio
import os

import pytest
from tests.servers.postgres import PASSWORD, PostgresServer

from certherd.errors import ConfigError, StorageError
from certherd.storage.pgschema import LATEST, redact
from certherd.storage.postgresql import PostgresStorage

TABLES = ("certherd_schema", "certherd_values", "certherd_leases")
SEQUENCES = ("certherd_value_versions", "certherd_lease_tokens")


async def test_nodes_starting_at_once_make_the_schema_once(postgres: PostgresServer) -> None:
    database = postgres.database()
    stores = [PostgresStorage(postgres.url(database)) for _ in range(6)]
    try:
        # Six nodes' first calls at once: one migrates, the others wait for its lock.
        await asyncio.gather(
            *(store.write(f"state/{n}.json", b"{}") for n, store in enumerate(stores))
        )
    finally:
        for store in stores:
            await store.aclose()
    rows = postgres.execute("SELECT version, by FROM certherd_schema ORDER BY version", database)
    assert [row[0] for row in rows] == list(range(1, LATEST + 1))
    assert rows[0][1].startswith("certherd ")
    owners = postgres.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'certherd%'", database
    )
    assert owners == [("certherd",)]


async def test_a_schema_newer_than_this_certherd_is_refused(postgres: PostgresServer) -> None:
    database = postgres.database()
    store = PostgresStorage(postgres.url(database))
    await store.write("state/a.json", b"{}")
    await store.aclose()
    postgres.execute(
        f"INSERT INTO certherd_schema (version, by) VALUES ({LATEST + 1}, 'certherd 99')", database
    )
    store = PostgresStorage(postgres.url(database))
    with pytest.raises(ConfigError, match=r"newer than certherd .* upgrade certherd") as caught:
        await store.read("state/a.json")
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)
    # Nothing was written or migrated.
    count = postgres.execute("SELECT count(*) FROM certherd_schema", database)
    assert count == [(LATEST + 1,)]


async def test_no_other_role_can_read_anything_and_a_granted_one_no_private_value(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    store = PostgresStorage(postgres.url(database))
    await store.write("archive/a.example/privkey1.pem", b"secret", private=True)
    await store.write("archive/a.example/cert1.pem", b"public")
    await store.aclose()
    for table in TABLES:
        granted = postgres.execute(
            f"SELECT has_table_privilege('monitor', '{table}', 'SELECT, INSERT, UPDATE, DELETE')",
            database,
        )
        assert granted == [(False,)], table
    for sequence in SEQUENCES:
        granted = postgres.execute(
            f"SELECT has_sequence_privilege('monitor', '{sequence}', 'USAGE, SELECT, UPDATE')",
            database,
        )
        assert granted == [(False,)], sequence
    import psycopg

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        postgres.execute("SELECT key FROM certherd_values", database, role="monitor")
    # Granted SELECT (to show certificates on a dashboard), it still sees no private key.
    postgres.execute("GRANT SELECT ON certherd_values TO monitor", database)
    seen = postgres.execute("SELECT key FROM certherd_values", database, role="monitor")
    assert seen == [("archive/a.example/cert1.pem",)]


async def test_the_password_comes_from_pgpassword_and_is_never_shown(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres.database()
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    store = PostgresStorage(postgres.url(database, password=None))
    await store.write("state/a.json", b"{}")
    await store.aclose()
    assert PASSWORD not in repr(PostgresStorage(postgres.url(database)))
    assert redact("postgresql://u:hunter2@db/x?password=hunter3&sslmode=require") == (
        "postgresql://u:***@db/x?password=***&sslmode=require"
    )


async def test_a_refused_password_is_a_configuration_error_in_one_line(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    database = postgres.database()
    store = PostgresStorage(postgres.url(database, password="wrong-secret"))
    with pytest.raises(ConfigError) as caught:
        await store.list("")
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "wrong-secret" not in message
    assert "PGPASSWORD" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="no password supplied"):
        await PostgresStorage(postgres.url(database, password=None)).list("")
    with pytest.raises(ConfigError, match="does not exist"):
        await PostgresStorage(postgres.url("no_such_database")).list("")


async def test_a_database_that_is_down_is_a_runtime_error(postgres: PostgresServer) -> None:
    url = postgres.url("anything").replace(f"port={postgres.port}", "port=1")
    with pytest.raises(StorageError, match="cannot connect to the PostgreSQL storage") as caught:
        await PostgresStorage(url).list("")
    assert not isinstance(caught.value, ConfigError)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://u@db/x", "not a PostgreSQL URL"),
        ("/etc/certherd", "not a PostgreSQL URL"),
        ("postgresql://u:pw@db/x?nonsense=1", "not usable"),
        ("postgresql://u:pw@db:notaport/x", "not usable"),
    ],
)
def test_a_wrong_url_is_a_configuration_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        PostgresStorage(url)
    assert ":pw@" not in str(caught.value)


async def test_a_cancelled_waiter_leaves_no_grant_even_mid_statement(
    postgres: PostgresServer,
) -> None:
    """Cancelled while its grant statement runs, the waiter gives the grant back."""
    store = PostgresStorage(postgres.url(postgres.database()))
    try:
        for _ in range(20):
            waiter = asyncio.create_task(store.acquire("example.com", ttl=60, wait=0))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            waiter.cancel()
            try:
                lease = await waiter
            except asyncio.CancelledError:
                pass
            else:
                await store.release(lease)
            await asyncio.sleep(0.05)  # the give-back runs
            lease = await store.acquire("example.com", ttl=60, wait=1)
            await store.release(lease)
    finally:
        await store.aclose()


async def test_listing_by_prefix_can_use_the_key_index(postgres: PostgresServer) -> None:
    """The key column's "C" collation lets a prefix LIKE (wildcards escaped) be an index
    range scan: the renewal index's stat_all stays cheap with 100,000 lineages."""
    database = postgres.database()
    store = PostgresStorage(postgres.url(database))
    await store.write("state/a.json", b"{}")
    await store.aclose()
    import psycopg

    with psycopg.connect(postgres.admin_url(database)) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = connection.execute(
            "EXPLAIN SELECT key FROM certherd_values WHERE key LIKE %s",
            ("state/\\_.example.com/%",),
        ).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert "Index" in text, text
    assert "key >= 'state/_.example.com/'" in text, text


def test_connections_give_up_on_a_vanished_host_and_the_url_wins(
    postgres: PostgresServer,
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    made = conninfo_to_dict(PostgresStorage(postgres.url("x"))._conninfo)
    assert made["connect_timeout"] == "10"
    assert made["keepalives"] == "1"
    assert made["tcp_user_timeout"] == "60000"
    assert made["application_name"] == "certherd"
    url = postgres.url("x") + "&connect_timeout=3&application_name=node1"
    made = conninfo_to_dict(PostgresStorage(url)._conninfo)
    assert (made["connect_timeout"], made["application_name"]) == ("3", "node1")


async def test_held_lists_the_leases_held_now(postgres: PostgresServer) -> None:
    store = PostgresStorage(postgres.url(postgres.database()))
    try:
        assert await store.held() == {}
        first = await store.acquire("a.example", ttl=60, wait=0)
        brief = await store.acquire("b.example", ttl=0.2, wait=0)
        released = await store.acquire("c.example", ttl=60, wait=0)
        await store.release(released)
        await asyncio.sleep(0.3)  # b.example's ran out (by the server's clock)
        held = await store.held()
        assert list(held) == ["a.example"]
        assert (held["a.example"].holder, held["a.example"].token) == (first.holder, first.token)
        assert brief.token not in {lease.token for lease in held.values()}
    finally:
        await store.aclose()
