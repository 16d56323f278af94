"""One ACME account per CA for every process that shares a storage (issue 12): fleet
nodes that start at once on one PostgreSQL, or two runs on one config dir, find no
account and register; one of them creates it, the others wait for the account's lease
and use the same account. Before, each created its own: one node's key was stored
beside another's URL, and a node that took over a lineage from a dead one could not
read that node's order (another account's), so it placed a second order and the CA
issued the lineage twice (the 1,000-lineage fleet test: 1,002 certificates).

Real Pebble (its own, to count the accounts it creates) and real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.servers.postgres import PostgresServer

from certherd.acme.client import AcmeClient
from certherd.crypto.keys import public_key_equal
from certherd.manager.accounts import CaOptions, load_account, open_client
from certherd.storage.base import Storage
from certherd.storage.filesystem import FilesystemStorage
from certherd.storage.postgresql import PostgresStorage
from certherd.testing.pebble import PebbleServer

NODES = 4


@pytest.fixture(scope="module")
def own_pebble(pebble_factory: object) -> PebbleServer:
    """A Pebble whose log counts only this module's accounts."""
    return pebble_factory()  # type: ignore[operator,no-any-return]


async def register_at_once(stores: list[Storage], pebble: PebbleServer) -> None:
    options = CaOptions(
        pebble.directory_url, ca_bundle=str(pebble.ca_bundle), agree_tos=True,
        email="fleet@example.com",
    )  # fmt: skip
    before = pebble.accounts_created()
    clients: list[AcmeClient] = await asyncio.gather(
        *(open_client(store, options) for store in stores)
    )
    try:
        assert pebble.accounts_created() - before == 1, "one account at the CA"
        assert len({client.account_url for client in clients}) == 1
        for store in stores:  # what each sees stored: the account every client uses
            record = await load_account(store, options)
            assert record.url == clients[0].account_url
            for client in clients:
                assert public_key_equal(client.account_key.public_key(), record.key.public_key())
        # And it works: every node can read an order another node placed.
        order = await clients[0].new_order(["shared-account.test"])
        for client in clients[1:]:
            assert (await client.fetch_order(order.url)).url == order.url
    finally:
        for client in clients:
            await client.aclose()


async def test_fleet_nodes_starting_at_once_share_one_account(
    postgres: PostgresServer, own_pebble: PebbleServer
) -> None:
    url = postgres.url(postgres.database())
    stores = [PostgresStorage(url, node=f"node{n}") for n in range(NODES)]
    try:
        await register_at_once(list(stores), own_pebble)
    finally:
        for store in stores:
            await store.aclose()


async def test_runs_on_one_config_dir_at_once_share_one_account(
    tmp_path: Path, own_pebble: PebbleServer
) -> None:
    folder = tmp_path / "config"
    folder.mkdir(mode=0o700)
    await register_at_once([FilesystemStorage(folder) for _ in range(NODES)], own_pebble)
