"""Issue 12 item 7, second half: a validation answered by a node other than the one that
placed the order, each node in its own network namespace.

Three namespaces ``fc-<n>-a``, ``-b``, ``-c``, each with one end of a veth pair and its
own address on a bridge of the test's namespace, where Pebble (with challtestsrv as its
DNS) and PostgreSQL run. Node a places the orders (``certherd --storage URL issue
--fleet-solver ...``) and listens on nothing; nodes b and c are fleet daemons
(``run --node ... --http-serve ADDR:PORT --tls-alpn-serve ADDR:PORT``) on their own
addresses. Pebble's DNS points the first name at c (http-01) and the second at b
(tls-alpn-01): each validation can only succeed if that node answers what a stored.
Then every node holds both lineages' live files (b and c through the fleet's host files).

A node reaches Pebble and PostgreSQL through unix sockets (they cross namespaces):
PostgreSQL listens on one; Pebble's loopback listener is relayed (tests/servers/nsrelay.py)
from a socket of the test's namespace to 127.0.0.1 in each node's namespace, so the
directory URL and Pebble's listener certificate stay as they are.

Needs root and iproute2 (``ip netns``, veth, bridge): as every test here, it fails with
the reason rather than skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd, Running
from fleet_helpers import live_names
from tests.servers.postgres import PostgresServer

from certherd.testing.pebble import PebbleServer

RELAY = Path(__file__).parent.parent / "servers" / "nsrelay.py"
NODES = ("a", "b", "c")


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)}: {done.stderr.strip()} (this test needs root and iproute2: "
            "apt-get install iproute2)",
            pytrace=False,
        )


class NsCertherd(Certherd):
    """``certherd`` run inside a network namespace."""

    def __init__(self, netns: str, config_dir: Path, server: PebbleServer, scratch: Path) -> None:
        super().__init__(config_dir, server, scratch)
        self.netns = netns

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().argv(args)]


@dataclass
class Fleet:
    pebble: PebbleServer
    url: str
    address: dict[str, str]
    node: dict[str, NsCertherd]
    postgres: PostgresServer
    database: str
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _relay(listen: str, target: str, netns: str | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(RELAY), listen, target]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        process.kill()
        process.wait()
        process.stdout.close()
        pytest.fail(f"the relay {listen} -> {target} did not start", pytrace=False)
    return process


@pytest.fixture
def fleet(pebble_factory: object, postgres: PostgresServer, tmp_path: Path) -> Iterator[Fleet]:
    if shutil.which("ip") is None:
        pytest.fail("this test needs iproute2's ip: apt-get install iproute2", pytrace=False)
    pebble: PebbleServer = pebble_factory(  # type: ignore[operator]
        authz_reuse_percent=0, nonce_reject_percent=0
    )
    tag = os.getpid() % 10000
    subnet = f"10.213.{os.getpid() % 250 + 1}"
    bridge = f"fc{tag}br"
    namespaces = {n: f"fc-{tag}-{n}" for n in NODES}
    address = {n: f"{subnet}.{11 + i}" for i, n in enumerate(NODES)}
    scratch = tmp_path / "runs"
    scratch.mkdir()
    made: list[str] = []
    relays: list[subprocess.Popen[bytes]] = []
    nodes: dict[str, NsCertherd] = {}
    try:
        ip("link", "add", bridge, "type", "bridge")
        made.append("bridge")
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for n, netns in namespaces.items():
            ip("netns", "add", netns)
            made.append(netns)
            host_end, node_end = f"fc{tag}{n}h", f"fc{tag}{n}n"
            ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
            ip("link", "set", node_end, "netns", netns)
            ip("link", "set", host_end, "master", bridge, "up")
            ip("link", "set", "lo", "up", netns=netns)
            ip("addr", "add", f"{address[n]}/24", "dev", node_end, netns=netns)
            ip("link", "set", node_end, "up", netns=netns)
        # Pebble's ACME listener, from 127.0.0.1 in every node's namespace.
        acme_port = int(pebble.directory_url.rsplit(":", 1)[1].split("/")[0])
        socket_path = str(tmp_path / "pebble.sock")
        relays.append(_relay(f"unix:{socket_path}", f"tcp:127.0.0.1:{acme_port}"))
        for n, netns in namespaces.items():
            relays.append(_relay(f"tcp:127.0.0.1:{acme_port}", f"unix:{socket_path}", netns))
            nodes[n] = NsCertherd(netns, tmp_path / f"host-{n}", pebble, scratch)
            nodes[n].config_dir.mkdir()
        database = postgres.database()
        url = postgres.url(database)
        yield Fleet(pebble, url, address, nodes, postgres, database, relays)
    finally:
        for runner in nodes.values():
            runner.stop_all()
        for relay in relays:
            relay.kill()
            relay.wait()
            if relay.stdout is not None:
                relay.stdout.close()
        for netns in namespaces.values():
            if netns in made:
                subprocess.run(["ip", "netns", "del", netns], check=False)
        if "bridge" in made:
            subprocess.run(["ip", "link", "del", bridge], check=False)


def answered(running: Running, token_path: str) -> bool:
    """Whether this node's http-01 listener answered 200 for ``token_path``."""
    pattern = re.compile(rf"http-01: \S+ asked '[A-Z]+ {re.escape(token_path)}[^']*': 200")
    return bool(pattern.search(running.stderr_so_far()))


def test_a_validation_is_answered_by_a_node_other_than_the_one_that_ordered(
    fleet: Fleet,
) -> None:
    pebble, url = fleet.pebble, fleet.url
    http_port, tls_port = pebble.options.http_port, pebble.options.tls_port
    serving: dict[str, Running] = {}
    for n in ("b", "c"):
        where = fleet.address[n]
        serving[n] = fleet.node[n].start(
            "-v", "--storage", url, "run", "--node", n, "--max-interval", "5",
            "--http-serve", f"{where}:{http_port}", "--tls-alpn-serve", f"{where}:{tls_port}",
        )  # fmt: skip
    for n, running in serving.items():
        wait_until(
            lambda running=running: (
                "answered on" in running.stderr_so_far()  # type: ignore[misc]
                and "tls-alpn-01 answered" in running.stderr_so_far()
            ),
            30,
            f"node {n} serving challenges",
        )
    ordering = fleet.node["a"]
    first, second = "c-answers.netns.test", "b-answers.netns.test"
    pebble.add_a(first, [fleet.address["c"]])
    pebble.add_a(second, [fleet.address["b"]])

    for name, challenge in ((first, "http-01"), (second, "tls-alpn-01")):
        result = ordering(
            "--json", "--storage", url, "issue", "-d", name, "--fleet-solver", challenge,
            *ordering.ca,
        )  # fmt: skip
        assert [r["action"] for r in result.json()["results"]] == ["issued"], result.describe()

    # c answered the http-01 validation of the first name (its log: Pebble asked from the
    # bridge's address), b did not; node a runs no listener at all.
    log_c, log_b = serving["c"].stderr_so_far(), serving["b"].stderr_so_far()
    hub = fleet.address["a"].rsplit(".", 1)[0] + ".1"
    asked = re.compile(
        rf"http-01: {re.escape(hub)} asked '(GET|HEAD) /\.well-known/acme-challenge/"
        r"[A-Za-z0-9_-]+ HTTP/1\.[01]': 200"
    )
    assert asked.search(log_c), log_c
    assert not asked.search(log_b), log_b
    # Every node holds both lineages: a issued them, b and c follow the shared storage.
    assert {first, second} <= live_names(ordering.config_dir)
    for n in ("b", "c"):
        wait_until(
            lambda n=n: {first, second} <= live_names(fleet.node[n].config_dir),  # type: ignore[misc]
            30,
            f"both lineages live on node {n}",
        )
        assert serving[n].process.poll() is None, serving[n].stderr_so_far()
    # No key authorization left in the shared storage once the orders are done.
    left = fleet.postgres.execute(
        "SELECT key FROM certherd_values WHERE key LIKE 'challenges/%' "
        "AND key NOT LIKE 'challenges/listeners/%'",
        fleet.database,
    )
    assert left == []


def test_an_order_a_fleet_daemon_placed_is_validated_through_another_node(
    fleet: Fleet,
) -> None:
    """The same with the order placed by a fleet daemon (``run --node a``, from certherd.toml
    with ``solver = "fleet"`` and ``apply --defer``): b and c are daemons on the same
    storage that only serve challenges here (no lineage is due for them: their one cycle
    ran before anything was applied), so node a obtains every lineage."""
    pebble, url = fleet.pebble, fleet.url
    http_port = pebble.options.http_port
    serving: dict[str, Running] = {}
    for n in ("b", "c"):
        serving[n] = fleet.node[n].start(
            "-v", "--storage", url, "run", "--min-interval", "3600", "--max-interval", "3600",
            "--http-serve", f"{fleet.address[n]}:{http_port}",
        )  # fmt: skip
    for n, running in serving.items():
        wait_until(
            lambda running=running: "certherd daemon started" in running.stderr_so_far(),  # type: ignore[misc]
            30,
            f"node {n} serving challenges",
        )
    names = ["d1.netns.test", "d2.netns.test"]
    for name in names:
        pebble.add_a(name, [fleet.address["c"]])
    ordering = fleet.node["a"]
    lines = [
        "[defaults]",
        f'server = "{pebble.directory_url}"',
        f'ca_bundle = "{pebble.ca_bundle}"',
        'email = "fleet@example.com"',
        "agree_tos = true",
        'solver = "fleet"',
        'solver_options = { challenge = "http-01" }',
    ]
    for name in names:
        lines += ["", "[[certificate]]", f'domains = ["{name}"]']
    (ordering.config_dir / "certherd.toml").write_text("\n".join(lines) + "\n")
    node_a = ordering.start(
        "--storage", url, "run", "--node", "a", "--max-interval", "5", "--min-interval", "1"
    )
    ordering("--json", "--storage", url, "apply", "--defer")
    wait_until(lambda: set(names) <= live_names(ordering.config_dir), 60, "both lineages live on a")
    listed = ordering("--json", "--storage", url, "list").json()["lineages"]
    by = {entry["name"]: entry["obtained_by"] for entry in listed}
    assert {by[name] for name in names} == {"a"}, listed
    log_c, log_b = serving["c"].stderr_so_far(), serving["b"].stderr_so_far()
    asked = re.compile(
        r"http-01: \S+ asked 'GET /\.well-known/acme-challenge/\S+ HTTP/1\.[01]': 200"
    )
    assert len(set(re.findall(r"acme-challenge/([A-Za-z0-9_-]+) HTTP", log_c))) == 2, log_c
    assert asked.search(log_c), log_c
    assert not asked.search(log_b), log_b
    assert node_a.process.poll() is None, node_a.stderr_so_far()
