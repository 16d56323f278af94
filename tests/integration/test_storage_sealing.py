"""Private values sealed before they reach PostgreSQL (certherd/storage/sealing.py), on
the session's real server: what the database holds, what a node without the key sees,
and resealing (turning sealing on for an existing database, rotating the key)."""

from __future__ import annotations

import os

import pytest
from tests.servers.postgres import PostgresServer

from certherd.errors import ConfigError, StorageError
from certherd.storage.postgresql import PostgresStorage
from certherd.storage.sealing import MAGIC, Sealer, key_id, sealed_by

PEM = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
PRIVATE = "archive/sealed.test/privkey1.pem"
ACCOUNT = "accounts/ca.test/key.pem"
PUBLIC = "archive/sealed.test/cert1.pem"


def stored(postgres: PostgresServer, database: str, key: str) -> tuple[bytes, int]:
    [(data, size)] = postgres.execute(
        f"SELECT data, size FROM certherd_values WHERE key = '{key}'", database
    )
    return bytes(data), size


async def test_private_values_are_sealed_in_the_database_and_read_in_clear(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    sealer = Sealer((os.urandom(32),))
    store = PostgresStorage(postgres.url(database), sealer=sealer)
    try:
        await store.write(PRIVATE, PEM, private=True)
        await store.write(PUBLIC, b"-----BEGIN CERTIFICATE-----\n")
        assert await store.read(PRIVATE) == PEM
        assert (await store.stat(PRIVATE)).size == len(PEM)
    finally:
        await store.aclose()
    data, size = stored(postgres, database, PRIVATE)
    assert data.startswith(MAGIC)
    assert sealed_by(data) == key_id(sealer.keys[0])
    assert b"PRIVATE KEY" not in data
    assert b"MIGHAgEA" not in data
    assert size == len(PEM)
    assert stored(postgres, database, PUBLIC)[0] == b"-----BEGIN CERTIFICATE-----\n"


async def test_a_node_without_the_key_or_with_another_gets_one_line_and_no_secret(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    sealer = Sealer((os.urandom(32),))
    writer = PostgresStorage(postgres.url(database), sealer=sealer)
    keyless = PostgresStorage(postgres.url(database))
    stranger = PostgresStorage(postgres.url(database), sealer=Sealer((os.urandom(32),)))
    try:
        await writer.write(PRIVATE, PEM, private=True)
        await writer.write(PUBLIC, b"public")
        for store, words in ((keyless, "is sealed"), (stranger, "does not hold")):
            with pytest.raises(ConfigError, match=words) as caught:
                await store.read(PRIVATE)
            assert sealer.current_id in str(caught.value)
            assert "\n" not in str(caught.value)
            assert "PRIVATE" not in str(caught.value)
            assert await store.read(PUBLIC) == b"public"  # only private values are sealed
        # A sealed row copied under another key (another lineage's) does not unseal.
        postgres.execute(
            "INSERT INTO certherd_values (key, data, size, private, modified, version) "
            f"SELECT 'archive/other.test/privkey1.pem', data, size, private, modified, "
            f"nextval('certherd_value_versions') FROM certherd_values WHERE key = '{PRIVATE}'",
            database,
        )
        with pytest.raises(StorageError, match="does not match its seal"):
            await writer.read("archive/other.test/privkey1.pem")
    finally:
        for store in (writer, keyless, stranger):
            await store.aclose()


async def test_reseal_seals_values_in_clear_then_rotates_to_a_new_key(
    postgres: PostgresServer,
) -> None:
    database = postgres.database()
    old, new = os.urandom(32), os.urandom(32)
    before = PostgresStorage(postgres.url(database))  # sealing not yet turned on
    first = PostgresStorage(postgres.url(database), sealer=Sealer((old,)))
    rotated = PostgresStorage(postgres.url(database), sealer=Sealer((new, old)))
    only_new = PostgresStorage(postgres.url(database), sealer=Sealer((new,)))
    try:
        await before.write(PRIVATE, PEM, private=True)
        await before.write(ACCOUNT, b"account key", private=True)
        await before.write(PUBLIC, b"public")
        with pytest.raises(ConfigError, match="storage_key_file"):
            await before.reseal()
        assert stored(postgres, database, PRIVATE)[0] == PEM
        assert await first.read(PRIVATE) == PEM  # values in clear still read
        assert await first.reseal() == (2, 0)
        assert sealed_by(stored(postgres, database, PRIVATE)[0]) == key_id(old)
        assert sealed_by(stored(postgres, database, ACCOUNT)[0]) == key_id(old)
        assert stored(postgres, database, PUBLIC)[0] == b"public"
        assert await first.reseal() == (0, 2)  # nothing left to do
        # Rotation: the new key first in the file, reseal, then the old line can go.
        with pytest.raises(ConfigError, match="does not hold"):
            await only_new.read(PRIVATE)
        assert await rotated.reseal() == (2, 0)
        assert await only_new.read(PRIVATE) == PEM
        assert await only_new.read(ACCOUNT) == b"account key"
        version = postgres.execute(
            f"SELECT version FROM certherd_values WHERE key = '{PRIVATE}'", database
        )
        assert version  # resealing keeps the value's version: nothing changed for readers
    finally:
        for store in (before, first, rotated, only_new):
            await store.aclose()


async def test_reseal_leaves_a_value_written_since_it_was_read(postgres: PostgresServer) -> None:
    database = postgres.database()
    old, new = os.urandom(32), os.urandom(32)
    writer = PostgresStorage(postgres.url(database), sealer=Sealer((old,)))
    rotated = PostgresStorage(postgres.url(database), sealer=Sealer((new, old)))
    try:
        await writer.write(PRIVATE, PEM, private=True)
        # A node with the old file writes a new value while the reseal is under way:
        # the reseal's compare-and-set (on the version it read) must not put back the
        # value it read before.
        real_change = rotated._change
        raced = False

        async def change(what: str, work):  # type: ignore[no-untyped-def]
            nonlocal raced
            if not raced:
                raced = True
                await writer.write(PRIVATE, b"newer key", private=True)
            return await real_change(what, work)

        rotated._change = change  # type: ignore[method-assign]
        assert await rotated.reseal() == (0, 0)
        assert await rotated.read(PRIVATE) == b"newer key"
        assert sealed_by(stored(postgres, database, PRIVATE)[0]) == key_id(old)
    finally:
        await writer.aclose()
        await rotated.aclose()
