"""Shared backoff in a fleet (issue 12 item 3): one node told ``rateLimited`` by a CA
holds every node back from that CA until its Retry-After. Two library instances on one
real PostgreSQL are two nodes; the first CA is the unit tests' scripted hostile ACME
server on a real listener answering 429 to newOrder, the second a real Pebble."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.postgres import PostgresServer
from tests.servers.relay import HostileHttpServer
from tests.unit.fakes import HostileAcmeServer, problem

from certherd.app import Certherd
from certherd.challenges.options import solver_from_table
from certherd.settings import CaSettings, LineageSettings
from certherd.storage.fleet import fleet_of, node_of
from certherd.testing.pebble import PebbleServer


@pytest.fixture
def hostile() -> Iterator[tuple[HostileAcmeServer, HostileHttpServer]]:
    listener = HostileHttpServer(None)
    script = HostileAcmeServer(base_url=listener.base_url)
    listener.handler = script
    listener.start()
    yield script, listener
    listener.stop()
    assert not listener.errors, listener.errors


def lineage(
    name: str, first: CaSettings, pebble: PebbleServer, *, fallback: bool = True
) -> LineageSettings:
    second = CaSettings(pebble.directory_url, ca_bundle=str(pebble.ca_bundle), agree_tos=True)
    solver = {"kind": "http", "listen": f"127.0.0.1:{pebble.options.http_port}"}
    settings = LineageSettings(
        name=name,
        names=(name,),
        directory_url=first.directory_url,
        solvers=(solver_from_table(solver),),
    )
    return settings.with_cas([first, second] if fallback else [first])


async def test_one_nodes_rate_limit_keeps_every_node_off_that_ca(
    hostile: tuple[HostileAcmeServer, HostileHttpServer],
    pebble: PebbleServer,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    script, listener = hostile
    script.hooks["/new-order"] = lambda seen: problem(
        "rateLimited",
        "too many new orders recently",
        status=429,
        headers={"Retry-After": "86400"},
    )
    first = CaSettings(
        listener.base_url + "/directory", allow_http=True, email="ops@example.com", agree_tos=True
    )
    url = postgres.url(postgres.database())
    async with (
        Certherd(url, host_dir=tmp_path / "a", node="alpha") as alpha,
        Certherd(url, host_dir=tmp_path / "b", node="beta") as beta,
    ):
        one = await alpha.issue_lineage(lineage("one.backoff.test", first, pebble))
        assert one.action == "issued"
        assert len(script.requests_to("/new-order", "POST")) == 1  # asked once, refused
        fleet = fleet_of(beta.storage)
        assert fleet is not None
        held = await fleet.held_back()
        assert node_of(held[first.directory_url].by) == "alpha"
        assert "rateLimited" in held[first.directory_url].reason or "too many" in (
            held[first.directory_url].reason
        )
        # The other node does not even ask the CA that refused the first: it fails over.
        two = await beta.issue_lineage(lineage("two.backoff.test", first, pebble))
        assert two.action == "issued"
        _, state = await beta.load("two.backoff.test")
        assert state.issued_by == pebble.directory_url
        assert len(script.requests_to("/new-order", "POST")) == 1
        # A lineage with that CA alone is not claimed while the CA is held back.
        await lineage("three.backoff.test", first, pebble, fallback=False).save(beta.storage)
        claimed = await fleet.claim(limit=10, ttl=30)
        assert "three.backoff.test" not in {lease.name for lease in claimed}
