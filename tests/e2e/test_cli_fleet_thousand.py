"""The fleet test (issue 12 item 7, first half): three nodes on one PostgreSQL and one
Pebble, 1,000 lineages applied with ``apply --defer``; one node killed -9 while it holds
leases, one SIGSTOPped past its lease and resumed. Every lineage is obtained exactly
once (certificates issued and finalize requests counted in Pebble's log), and both
surviving nodes hold all 1,000 live lineages on their hosts, each a full, readable
certificate and key pair. The nodes, started at once, share one ACME account (each used
to register its own: a node that took over a killed node's lineage could not read its
order, placed another, and the CA issued that lineage twice).

Finalize requests may exceed 1,000 by what the paused node had between its last lease
check and its POST: a process stopped there sends the POST when it wakes, after another
node took the lineage over and finalized the same order; no fencing token reaches the
CA, which refuses it (the order is no longer ready) and issues nothing. So the exact
count is of certificates issued, and the requests are bounded by the paused node's
concurrency."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd
from fleet_helpers import (
    fast_dns_hook,
    finalized,
    fleet_config,
    issued,
    live_names,
    start_node,
)
from tests.servers.postgres import PostgresServer

from certherd.testing.pebble import PebbleServer

LINEAGES = 1000
LEASE_TTL = 4.0
CONCURRENCY = 8
"""Lineages each node works on at once."""


@pytest.fixture(scope="module")
def thousand_pebble(pebble_factory: object) -> PebbleServer:
    """A Pebble of this test's own (its log counts only these finalize requests), with
    no badNonce refusals (a retried finalize would count twice)."""
    return pebble_factory(  # type: ignore[operator,no-any-return]
        authz_reuse_percent=0, nonce_reject_percent=0
    )


@pytest.fixture
def hosts(thousand_pebble: PebbleServer, tmp_path: Path) -> Iterator[list[Certherd]]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    made = [Certherd(tmp_path / f"host{n}", thousand_pebble, scratch) for n in range(3)]
    for host in made:
        host.config_dir.mkdir()
    yield made
    for host in made:
        host.stop_all()


def held_by(postgres: PostgresServer, database: str, node: str) -> int:
    assert node.isalnum()  # a test constant, written into the query
    rows = postgres.execute(
        f"SELECT count(*) FROM certherd_leases WHERE holder LIKE '{node}/%' AND expires > now()",
        database,
    )
    return int(rows[0][0])


def live_count(postgres: PostgresServer, database: str) -> int:
    rows = postgres.execute("SELECT count(*) FROM certherd_schedule WHERE live = 1", database)
    return int(rows[0][0])


def test_three_nodes_one_killed_one_paused_every_lineage_once_everywhere(
    hosts: list[Certherd],
    thousand_pebble: PebbleServer,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    database = postgres.database()
    url = postgres.url(database)
    hook = fast_dns_hook(thousand_pebble, tmp_path)
    names = [f"t{n:04}.thousand.test" for n in range(LINEAGES)]
    (hosts[0].config_dir / "certherd.toml").write_text(fleet_config(thousand_pebble, hook, names))
    stored = hosts[0]("--json", "--storage", url, "apply", "--defer").json()
    assert len(stored["results"]) == LINEAGES
    before = finalized(thousand_pebble)
    issued_before = issued(thousand_pebble)
    started = time.monotonic()
    nodes = [
        start_node(
            host, url, f"node{n}", "--concurrency", str(CONCURRENCY), "--lease-ttl", str(LEASE_TTL),
            "--min-interval", "5", "--max-interval", "2",
        )
        for n, host in enumerate(hosts)
    ]  # fmt: skip
    killed, paused, steady = nodes
    # Kill -9 node0 while it holds leases, a tenth of the way in.
    wait_until(lambda: live_count(postgres, database) >= LINEAGES // 10, 300, "a tenth done")
    wait_until(lambda: held_by(postgres, database, "node0") > 0, 60, "node0 holding leases")
    killed.process.kill()
    killed.process.wait()
    # SIGSTOP node1 while it holds leases, past its lease, then resume it.
    wait_until(lambda: live_count(postgres, database) >= LINEAGES // 3, 300, "a third done")
    wait_until(lambda: held_by(postgres, database, "node1") > 0, 60, "node1 holding leases")
    paused.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(LEASE_TTL * 2)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    wait_until(lambda: live_count(postgres, database) == LINEAGES, 600, "every lineage live")
    took = time.monotonic() - started
    survivors = [hosts[1], hosts[2]]
    for host in survivors:
        wait_until(
            lambda host=host: len(live_names(host.config_dir)) == LINEAGES,  # type: ignore[misc]
            120,
            f"all {LINEAGES} lineages under {host.config_dir}",
        )
    # One account for the fleet: a node that takes over another's lineage can resume
    # its order (one of another account's is not even readable).
    assert thousand_pebble.accounts_created() == 1
    # Exactly once: one finalize request per lineage at the CA, whatever died or paused.
    assert issued(thousand_pebble) - issued_before == LINEAGES, f"after {took:.0f} s"
    requests = finalized(thousand_pebble) - before
    assert LINEAGES <= requests <= LINEAGES + CONCURRENCY, f"{requests} finalize requests"
    for host in survivors:
        for name in names:
            assert (host.live(name) / "cert.pem").resolve().name == "cert1.pem"
    obtained_by = postgres.execute(
        "SELECT split_part(obtained_by, '/', 1), count(*) FROM certherd_schedule GROUP BY 1",
        database,
    )
    assert sum(count for _, count in obtained_by) == LINEAGES
    assert {node for node, _ in obtained_by} <= {"node0", "node1", "node2"}
    for process in (paused, steady):
        process.process.send_signal(signal.SIGTERM)
    for process in (paused, steady):
        assert process.wait(timeout=60).code == 0
    print(f"\n{LINEAGES} lineages by 3 nodes (one killed, one paused) in {took:.1f} s")
