"""``certherd --storage URL run --node NAME``: nodes of a fleet on one PostgreSQL split the
work of ``apply --defer``, every host gets every lineage's live files and runs its deploy
hooks for each new version, and every lineage is finalized exactly once (Pebble's log)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd
from fleet_helpers import (
    deploys,
    dns_hook,
    fast_dns_hook,
    finalized,
    fleet_config,
    hold_first_present,
    live_names,
    start_node,
    wait_all_live,
)
from tests.servers.postgres import PostgresServer

from certherd.storage.base import Lease
from certherd.storage.postgresql import PostgresStorage
from certherd.testing.pebble import PebbleServer

PebbleFactory = object


@pytest.fixture(scope="module")
def fleet_pebble(pebble_factory: object) -> PebbleServer:
    """A Pebble of the fleet's own: its log counts only these finalize requests."""
    # No badNonce refusals: a retried finalize would count twice in the log.
    return pebble_factory(  # type: ignore[operator,no-any-return]
        authz_reuse_percent=0, nonce_reject_percent=0
    )


@pytest.fixture
def nodes(fleet_pebble: PebbleServer, tmp_path: Path) -> Iterator[list[Certherd]]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    made = [Certherd(tmp_path / f"host{n}", fleet_pebble, scratch) for n in range(3)]
    for node in made:
        node.config_dir.mkdir()
    yield made
    for node in made:
        node.stop_all()


def test_two_nodes_split_deferred_work_and_each_host_gets_every_lineage(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.database())
    hook = dns_hook(fleet_pebble, tmp_path)
    names = [f"n{n:02}.fleet.test" for n in range(8)]
    deployed = tmp_path / "deployed"
    config = fleet_config(fleet_pebble, hook, names, deployed)
    (nodes[0].config_dir / "certherd.toml").write_text(config)
    deferred = nodes[0]("--json", "--storage", url, "apply", "--defer").json()
    assert {r["action"] for r in deferred["results"]} == {"stored"}
    assert live_names(nodes[0].config_dir) == set()  # nothing ordered by apply --defer
    before = finalized(fleet_pebble)
    running = [
        # Polling only every 300 s: what follows arrives by LISTEN/NOTIFY.
        start_node(node, url, f"node{n}", "--concurrency", "4", "--max-interval", "300")
        for n, node in enumerate(nodes[:2])
    ]
    wait_all_live(nodes[:2], set(names), 120)
    assert finalized(fleet_pebble) - before == len(names)  # each obtained once
    # The deploy hook ran on both hosts for every lineage, whichever node obtained it.
    wanted = {(str(node.live(name)), 1) for node in nodes[:2] for name in names}
    wait_until(lambda: wanted <= deploys(deployed), 30, "the deploy hooks on both hosts")
    listed = nodes[1]("--json", "--storage", url, "list").json()["lineages"]
    by = {entry["name"]: entry["obtained_by"] for entry in listed}
    assert set(by) == set(names)
    assert set(by.values()) <= {"node0", "node1"}
    table = nodes[1]("--storage", url, "list").stdout
    assert "obtained by" in table
    assert "node0" in table or "node1" in table
    # A renewal by anyone (here a CLI on a third host) reaches both nodes' hosts.
    nodes[2]("--storage", url, "renew", "--force", names[0])
    renewed = {(str(node.live(names[0])), 2) for node in nodes[:2]}
    wait_until(lambda: renewed <= deploys(deployed), 30, "version 2 deployed on both hosts")
    for node in nodes[:2]:
        assert (node.live(names[0]) / "cert.pem").resolve().name == "cert2.pem"
    # A lineage deleted on any host leaves every node's host too.
    nodes[2]("--storage", url, "delete", names[1])
    for node in nodes[:2]:
        wait_until(
            lambda node=node: (  # type: ignore[misc]
                names[1] not in live_names(node.config_dir) and not node.archive(names[1]).exists()
            ),
            20,
            f"{names[1]} gone from {node.config_dir}",
        )
    # New desired state reaches the running nodes at once (not at their next poll).
    more = [*names, "late.fleet.test"]
    (nodes[0].config_dir / "certherd.toml").write_text(
        fleet_config(fleet_pebble, hook, more, deployed)
    )
    nodes[0]("--storage", url, "apply", "--defer")
    wait_all_live(nodes[:2], {"late.fleet.test"}, 20)
    for process in running:
        process.process.send_signal(signal.SIGTERM)
    for process in running:
        assert process.wait(timeout=30).code == 0


def test_renew_with_a_schedule_reads_it_not_an_index_of_every_lineage(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """index.json, one blob of every lineage, is not kept in PostgreSQL: the schedule the
    database keeps answers "what is due" (one query), also for a plain `renew`."""
    database = postgres.database()
    url = postgres.url(database)
    hook = dns_hook(fleet_pebble, tmp_path)
    names = ["r0.fleet.test", "r1.fleet.test"]
    (nodes[0].config_dir / "certherd.toml").write_text(fleet_config(fleet_pebble, hook, names))
    applied = nodes[0]("--json", "--storage", url, "apply").json()
    assert {r["action"] for r in applied["results"]} == {"issued"}
    renewed = nodes[1]("--json", "--storage", url, "renew").json()
    assert {r["action"] for r in renewed["results"]} == {"not-due"}
    assert all(r["reason"].startswith("not due until") for r in renewed["results"])
    keys = {row[0] for row in postgres.execute("SELECT key FROM certherd_values", database)}
    assert "state/r0.fleet.test.json" in keys
    assert "index.json" not in keys
    # The other host got its live files from that renew (the schedule's live versions).
    assert live_names(nodes[1].config_dir) == set(names)


def test_a_node_taking_over_from_a_killed_one_resumes_its_order(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Exactly once (issue 12 item 4): node A places the order (its URL is stored before
    any challenge or finalize) and is killed -9 while answering the challenge; node B
    claims the lineage when A's lease runs out and resumes that very order: one order
    and one finalize at the CA for the lineage."""
    url = postgres.url(postgres.database())
    hook = dns_hook(fleet_pebble, tmp_path)
    _, hanging, _ = hold_first_present(hook, tmp_path)
    name = "takeover.fleet.test"
    (nodes[0].config_dir / "certherd.toml").write_text(fleet_config(fleet_pebble, hook, [name]))
    nodes[0]("--storage", url, "apply", "--defer")
    orders, finalizes = fleet_pebble.orders_created(), finalized(fleet_pebble)
    first = start_node(nodes[0], url, "a", "--lease-ttl", "3", "--max-interval", "1")
    wait_until(hanging.exists, 60, "node a answering the challenge")
    first.process.kill()  # kill -9 while it holds the lineage's lease and its open order
    first.process.wait()
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(int(hanging.read_text()), signal.SIGKILL)
    assert fleet_pebble.orders_created() == orders + 1
    assert finalized(fleet_pebble) == finalizes
    second = start_node(nodes[1], url, "b", "--lease-ttl", "3", "--max-interval", "1")
    wait_all_live([nodes[1]], {name}, 60)
    assert fleet_pebble.orders_created() == orders + 1  # resumed, not placed again
    assert finalized(fleet_pebble) == finalizes + 1
    assert "resum" in second.stderr_so_far()
    shown = nodes[1]("--json", "--storage", url, "show", name).json()
    assert shown["obtained_by"] == "b"
    second.process.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30).code == 0


def test_a_node_paused_past_its_lease_never_finalizes_the_order_taken_over(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Node A is SIGSTOPped while answering the challenge, past its lease, and the lease
    is granted to another holder (here the test) before A wakes. A goes on where it was
    (its challenge is still pending: it answers it); right before finalize its lease is
    checked with a fenced write, so it sends no finalize for an order it no longer owns.
    Node B then takes the lineage over, resumes that order and finalizes it once."""
    url = postgres.url(postgres.database())
    hook = dns_hook(fleet_pebble, tmp_path)
    _, holding, go = hold_first_present(hook, tmp_path)
    name = "paused.fleet.test"
    (nodes[0].config_dir / "certherd.toml").write_text(fleet_config(fleet_pebble, hook, [name]))
    nodes[0]("--storage", url, "apply", "--defer")
    orders, finalizes = fleet_pebble.orders_created(), finalized(fleet_pebble)
    first = start_node(nodes[0], url, "a", "--lease-ttl", "3", "--max-interval", "1")
    wait_until(holding.exists, 60, "node a answering the challenge")
    first.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(3.5)  # past node a's lease
        taken = asyncio.run(_take(url, name))  # the next holder: a higher token
    finally:
        first.process.send_signal(signal.SIGCONT)
    go.touch()  # node a's hook returns: it answers the challenge and comes to finalize
    wait_until(lambda: "renewal failed" in first.stderr_so_far(), 30, "node a to give up")
    assert "refused a write" in first.stderr_so_far()
    assert finalized(fleet_pebble) == finalizes  # a did not finalize
    asyncio.run(_give_back(url, taken))
    second = start_node(nodes[1], url, "b", "--lease-ttl", "3", "--max-interval", "1")
    wait_all_live([nodes[1]], {name}, 60)
    assert fleet_pebble.orders_created() == orders + 1  # b resumed a's order
    assert finalized(fleet_pebble) == finalizes + 1
    wait_all_live([nodes[0]], {name}, 30)  # a's host still gets the live files
    for process in (first, second):
        process.process.send_signal(signal.SIGTERM)
    for process in (first, second):
        assert process.wait(timeout=30).code == 0


async def _take(url: str, name: str) -> Lease:
    store = PostgresStorage(url)
    try:
        return await store.acquire(name, ttl=60, wait=10)
    finally:
        await store.aclose()


async def _give_back(url: str, lease: Lease) -> None:
    store = PostgresStorage(url)
    try:
        await store.release(lease)
    finally:
        await store.aclose()


def test_apply_beside_running_nodes_never_obtains_twice_and_defer_reissues_a_changed_key(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """`apply` without --defer claims each lineage through the same leases as the nodes:
    run while two nodes work on the same lineages, every lineage is finalized once.
    Then `apply --defer` of a new key type: the lineage is due (its state says why) and a
    node obtains it again with that key type."""
    url = postgres.url(postgres.database())
    hook = fast_dns_hook(fleet_pebble, tmp_path)
    names = [f"both{n}.fleet.test" for n in range(12)]
    config = nodes[0].config_dir / "certherd.toml"
    config.write_text(fleet_config(fleet_pebble, hook, names))
    nodes[0]("--storage", url, "apply", "--defer")
    before = finalized(fleet_pebble)
    running = [
        start_node(node, url, f"node{n}", "--concurrency", "3", "--max-interval", "300")
        for n, node in enumerate(nodes[1:])
    ]
    applied = nodes[0]("--json", "--storage", url, "apply", "--concurrency", "3").json()
    assert applied["failed"] == 0
    wait_all_live(nodes[1:], set(names), 60)
    assert finalized(fleet_pebble) - before == len(names)
    actions = {r["action"] for r in applied["results"]}
    assert actions <= {"renewed", "skipped", "not-due"}  # "renewed": got there first
    # A changed key type, deferred: a node obtains version 2 with it.
    config.write_text(
        fleet_config(fleet_pebble, hook, names).replace(
            "agree_tos = true", 'agree_tos = true\nkey_type = "rsa2048"'
        )
    )
    stored = nodes[0]("--json", "--storage", url, "apply", "--defer").json()
    assert {r["action"] for r in stored["results"]} == {"stored"}
    for node in nodes[1:]:
        wait_until(
            lambda node=node: all(  # type: ignore[misc]
                (node.live(name) / "cert.pem").resolve().name == "cert2.pem" for name in names
            ),
            60,
            "version 2 of every lineage on both hosts",
        )
    key = (nodes[1].live(names[0]) / "privkey.pem").read_text()
    assert "BEGIN PRIVATE KEY" in key or "BEGIN RSA PRIVATE KEY" in key
    shown = nodes[1]("--json", "--storage", url, "show", names[0]).json()
    assert shown["key_type"] == "rsa2048"
    for process in running:
        process.process.send_signal(signal.SIGTERM)
    for process in running:
        assert process.wait(timeout=30).code == 0


def test_run_node_needs_a_shared_storage_and_a_usable_name(nodes: list[Certherd]) -> None:
    alone = nodes[0]("run", "--node", "a", check=False)
    assert alone.code == 2
    assert "--node needs --storage" in alone.stderr
    bad = nodes[0]("--storage", "postgresql://x@/y", "run", "--node", "../etc", check=False)
    assert bad.code == 2
    assert "node name" in bad.stderr


def test_a_deploy_hook_failing_on_one_host_is_run_again_there_until_it_succeeds(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.database())
    hook = fast_dns_hook(fleet_pebble, tmp_path)
    broken = tmp_path / "host1-broken"
    broken.touch()
    deployed = tmp_path / "deployed"
    config = fleet_config(fleet_pebble, hook, ["retry.fleet.test"], deployed)
    # The deploy hook fails on host1 while the flag file exists.
    config = config.replace(
        'deploy_hooks = ["',
        f'deploy_hooks = ["case $CERTHERD_LIVE_DIR in *host1*) test ! -e {broken};; esac && ',
    )
    (nodes[0].config_dir / "certherd.toml").write_text(config)
    nodes[0]("--storage", url, "apply", "--defer")
    # Node 1 (host1) obtains it and its deploy fails there; then node 0 joins.
    running = [start_node(nodes[1], url, "node1", "--min-interval", "1", "--max-interval", "300")]
    wait_all_live([nodes[1]], {"retry.fleet.test"}, 60)
    running.insert(
        0, start_node(nodes[0], url, "node0", "--min-interval", "1", "--max-interval", "300")
    )
    wait_all_live(nodes[:2], {"retry.fleet.test"}, 60)
    on_host1 = (str(nodes[1].live("retry.fleet.test")), 1)
    wait_until(
        lambda: (
            "deploy on this host failed" in running[1].stderr_so_far()
            or ("hook failed" in running[1].stderr_so_far())
        ),
        30,
        "the failure on host1",
    )
    assert on_host1 not in deploys(deployed)
    broken.unlink()
    wait_until(lambda: on_host1 in deploys(deployed), 30, "the deploy hook run again on host1")
    # Host1's failure stayed host1's: host0 deployed version 1 once, not again for host1.
    host0 = str(nodes[0].live("retry.fleet.test"))
    assert deployed.read_text().splitlines().count(f"{host0} 1") == 1
    for process in running:
        process.process.send_signal(signal.SIGTERM)
    for process in running:
        assert process.wait(timeout=30).code == 0
