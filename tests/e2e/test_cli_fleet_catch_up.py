"""A host whose node was down catches up, and runs its deploy hooks exactly once
(issue 12: "runs the deploy hooks on that host when a new version arrives, whichever node
obtained it"), with real processes on one PostgreSQL and Pebble:

- a node killed -9 while another node obtains a new version runs the deploy hooks for it
  on its own host when it starts again, once; ``list``/``show`` name the node that
  obtained it;
- a node killed between writing the shared live record and finishing its own deploy
  hooks runs them on its next start (the deploy it owes its host survives the crash),
  and the other node, which deployed that version on its host already, does not run
  them there a second time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd, Running
from fleet_helpers import fast_dns_hook, fleet_config, live_names, start_node
from tests.servers.postgres import PostgresServer

from certherd.testing.pebble import PebbleServer

NAME = "catchup.fleet.test"


@pytest.fixture(scope="module")
def fleet_pebble(pebble_factory: object) -> PebbleServer:
    return pebble_factory(  # type: ignore[operator,no-any-return]
        authz_reuse_percent=0, nonce_reject_percent=0
    )


@pytest.fixture
def nodes(fleet_pebble: PebbleServer, tmp_path: Path) -> Iterator[list[Certherd]]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    made = [Certherd(tmp_path / f"host{n}", fleet_pebble, scratch) for n in range(2)]
    for node in made:
        node.config_dir.mkdir()
    yield made
    for node in made:
        node.stop_all()


def deploy_lines(deployed: Path) -> list[str]:
    return deployed.read_text().splitlines() if deployed.exists() else []


def version_of(node: Certherd) -> int:
    """The version this host's live files point at (cert<N>.pem), 0 when none."""
    link = node.live(NAME) / "cert.pem"
    if not link.exists():
        return 0
    return int(link.resolve().name.removeprefix("cert").removesuffix(".pem"))


def node(host: Certherd, url: str, name: str) -> Running:
    return start_node(
        host, url, name, "--lease-ttl", "3", "--min-interval", "1", "--max-interval", "2"
    )


def stop(running: list[Running]) -> None:
    for process in running:
        if process.process.poll() is None:
            process.process.send_signal(signal.SIGTERM)
    for process in running:
        process.wait(timeout=30)


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM", "SIGSTOP"])
def test_a_node_down_while_another_obtains_a_version_deploys_it_once_when_back(
    nodes: list[Certherd],
    fleet_pebble: PebbleServer,
    postgres: PostgresServer,
    tmp_path: Path,
    how: str,
) -> None:
    """Down: killed -9, stopped (SIGTERM, as systemd stops it) and started again, or
    paused (SIGSTOP, a frozen VM) and resumed."""
    url = postgres.url(postgres.database())
    hook = fast_dns_hook(fleet_pebble, tmp_path)
    deployed = tmp_path / "deployed"
    config = nodes[0].config_dir / "certherd.toml"
    config.write_text(fleet_config(fleet_pebble, hook, [NAME], deployed))
    nodes[0]("--storage", url, "apply", "--defer")
    a, b = node(nodes[0], url, "a"), node(nodes[1], url, "b")
    first = [f"{node.live(NAME)} 1" for node in nodes]
    wait_until(lambda: set(first) <= set(deploy_lines(deployed)), 60, "version 1 on both")
    # host1 misses what follows
    if how == "kill -9":
        b.process.kill()
        b.process.wait()
    elif how == "SIGTERM":
        b.process.send_signal(signal.SIGTERM)
        assert b.wait(timeout=30).code == 0
    else:
        b.process.send_signal(signal.SIGSTOP)
    # Version 2 (a new key type, deferred): node a is the only one left to obtain it.
    config.write_text(
        fleet_config(fleet_pebble, hook, [NAME], deployed).replace(
            "agree_tos = true", 'agree_tos = true\nkey_type = "rsa2048"'
        )
    )
    nodes[0]("--storage", url, "apply", "--defer")
    wait_until(lambda: f"{nodes[0].live(NAME)} 2" in deploy_lines(deployed), 60, "v2 on a")
    assert version_of(nodes[1]) == 1
    assert f"{nodes[1].live(NAME)} 2" not in deploy_lines(deployed)
    if how == "SIGSTOP":
        b.process.send_signal(signal.SIGCONT)
    else:
        b = node(nodes[1], url, "b")
    wait_until(lambda: f"{nodes[1].live(NAME)} 2" in deploy_lines(deployed), 60, "v2 on b")
    assert version_of(nodes[1]) == 2
    # A few more rounds of both nodes: nothing is deployed again anywhere.
    time.sleep(4)
    lines = deploy_lines(deployed)
    for host in nodes:
        for version in (1, 2):
            assert lines.count(f"{host.live(NAME)} {version}") == 1, lines
    listed = nodes[1]("--json", "--storage", url, "list").json()["lineages"]
    assert [(entry["name"], entry["obtained_by"]) for entry in listed] == [(NAME, "a")]
    shown = nodes[1]("--json", "--storage", url, "show", NAME).json()
    assert (shown["obtained_by"], shown["version"]) == ("a", 2)
    table = nodes[1]("--storage", url, "list").stdout
    assert "obtained by" in table
    row = next(line for line in table.splitlines() if NAME in line)
    assert " a " in f" {row} ", table
    stop([a, b])


def test_a_node_killed_before_its_deploy_hooks_finish_runs_them_on_its_next_start(
    nodes: list[Certherd], fleet_pebble: PebbleServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.database())
    hook = fast_dns_hook(fleet_pebble, tmp_path)
    deployed = tmp_path / "deployed"
    hang = tmp_path / "hang-on-host0"
    hanging = tmp_path / "hanging"
    hang.touch()
    # On host0, while the flag exists, the deploy hook says it started and hangs (the
    # node is killed there: after the shared live record and this host's files, before
    # its deploy hooks are done); elsewhere, or without the flag, it writes its line.
    config = fleet_config(fleet_pebble, hook, [NAME], deployed).replace(
        'deploy_hooks = ["',
        'deploy_hooks = ["case $CERTHERD_LIVE_DIR in *host0*) '
        f"if test -e {hang}; then echo $$ > {hanging}.tmp && mv {hanging}.tmp {hanging} "
        "&& exec sleep 600; fi;; esac; ",
    )
    (nodes[0].config_dir / "certherd.toml").write_text(config)
    nodes[0]("--storage", url, "apply", "--defer")
    a = node(nodes[0], url, "a")
    wait_until(hanging.exists, 60, "node a's deploy hook running")
    assert version_of(nodes[0]) == 1  # this host's files switched, its hook not done
    a.process.kill()
    a.process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(hanging.read_text()), signal.SIGKILL)
    hang.unlink()
    # Node b copies version 1 to host1 and deploys it there; it may claim the lineage
    # when a's lease runs out, and must not deploy version 1 on host1 a second time.
    b = node(nodes[1], url, "b")
    wait_until(lambda: f"{nodes[1].live(NAME)} 1" in deploy_lines(deployed), 60, "v1 on b")
    time.sleep(6)  # a's lease (3 s) runs out; b's rounds every second or two
    # b took over the deploy the shared state owed (a died before its hooks) without
    # running it on host1 again: host1 had it already.
    shown = nodes[1]("--json", "--storage", url, "show", NAME).json()
    assert shown["deploy_owed"] is False, shown
    assert deploy_lines(deployed).count(f"{nodes[1].live(NAME)} 1") == 1, deploy_lines(deployed)
    a = node(nodes[0], url, "a")
    wait_until(lambda: f"{nodes[0].live(NAME)} 1" in deploy_lines(deployed), 60, "v1 on a")
    time.sleep(4)
    lines = deploy_lines(deployed)
    for host in nodes:
        assert lines.count(f"{host.live(NAME)} 1") == 1, lines
    assert live_names(nodes[0].config_dir) == live_names(nodes[1].config_dir) == {NAME}
    stop([a, b])
