"""A fleet node and its database failing (issue 12, "Bad input and faults"): the database
down when the node starts, gone under the running node, and hung (connections open,
nothing answered). The node keeps serving what is on its disk and its /metrics, claims
nothing, says so in its log and in /metrics (certherd_storage_up 0), tries again with
backoff, and catches up once the database is back. The database sits behind a unix
socket relay the test stops, starts and freezes (tests/servers/relay.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd
from fleet_helpers import dns_hook, fleet_config, live_names
from tests.servers.net import free_port
from tests.servers.postgres import PostgresServer
from tests.servers.relay import UnixRelay

from certherd.testing.pebble import PebbleServer


@pytest.fixture
def relay(postgres: PostgresServer, tmp_path: Path) -> Iterator[UnixRelay]:
    folder = tmp_path / "relay"
    folder.mkdir()
    name = f".s.PGSQL.{postgres.port}"
    made = UnixRelay(str(folder / name), str(postgres.socket_dir / name))
    yield made
    made.frozen.clear()
    made.stop()


def metric(port: int, name: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_a_node_survives_its_database_down_at_start_gone_and_hung(
    certherd: Certherd,
    pebble: PebbleServer,
    postgres: PostgresServer,
    relay: UnixRelay,
    tmp_path: Path,
) -> None:
    database = postgres.database()
    direct = postgres.url(database)
    through = direct.replace(f"host={postgres.socket_dir}", f"host={Path(relay.path).parent}")
    hook = dns_hook(pebble, tmp_path)
    admin = certherd.elsewhere(tmp_path / "admin")
    admin.config_dir.mkdir()
    (admin.config_dir / "certherd.toml").write_text(
        fleet_config(pebble, hook, ["first.faults.test"])
    )
    admin("--storage", direct, "apply")  # a lineage exists before the node starts
    node = certherd.elsewhere(tmp_path / "node")
    node.config_dir.mkdir()
    port = free_port()
    # 1. The database is down when the node starts: it runs, serves /metrics, says so.
    running = node.start(
        "--storage", through, "run", "--node", "n1", "--lease-ttl", "6",
        "--max-interval", "2", "--metrics", f"127.0.0.1:{port}",
    )  # fmt: skip
    wait_until(lambda: metric(port, "certherd_storage_up") == 0, 30, "storage_up 0")
    assert running.process.poll() is None
    assert "storage is unavailable" in running.stderr_so_far()
    # Back: the node catches up (this host gets the lineage's live files).
    relay.start()
    wait_until(lambda: metric(port, "certherd_storage_up") == 1, 30, "storage_up 1")
    wait_until(lambda: "first.faults.test" in live_names(node.config_dir), 30, "live files")
    errors = metric(port, "certherd_storage_errors_total")
    assert errors is not None
    assert errors >= 1
    # 2. Gone under the running node: the files stay, the node says so and goes on.
    relay.stop()
    wait_until(lambda: metric(port, "certherd_storage_up") == 0, 30, "storage_up 0 again")
    assert "first.faults.test" in live_names(node.config_dir)
    relay.start()
    wait_until(lambda: metric(port, "certherd_storage_up") == 1, 30, "storage_up 1 again")
    # 3. Hung (connections open, nothing answered): every call has a deadline (a third
    # of the lease: 2 s here), so the node notices instead of hanging with it.
    relay.frozen.set()
    wait_until(lambda: metric(port, "certherd_storage_up") == 0, 30, "storage_up 0 when hung")
    relay.frozen.clear()
    wait_until(lambda: metric(port, "certherd_storage_up") == 1, 60, "storage_up 1 after")
    # New desired state after all that still reaches the node.
    (admin.config_dir / "certherd.toml").write_text(
        fleet_config(pebble, hook, ["first.faults.test", "second.faults.test"])
    )
    admin("--storage", direct, "apply", "--defer")
    wait_until(lambda: "second.faults.test" in live_names(node.config_dir), 60, "new lineage")
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=30).code == 0


def test_a_lone_daemon_on_the_database_says_when_it_is_gone_and_carries_on(
    certherd: Certherd,
    pebble: PebbleServer,
    postgres: PostgresServer,
    relay: UnixRelay,
    tmp_path: Path,
) -> None:
    """``run`` without ``--node`` on a database: the same promise as a node's. The files
    on disk stay served, the log says so once, /metrics says certherd_storage_up 0, and
    it tries again with backoff (not at its next due lineage, hours away)."""
    database = postgres.database()
    direct = postgres.url(database)
    through = direct.replace(f"host={postgres.socket_dir}", f"host={Path(relay.path).parent}")
    hook = dns_hook(pebble, tmp_path)
    admin = certherd.elsewhere(tmp_path / "admin")
    admin.config_dir.mkdir()
    (admin.config_dir / "certherd.toml").write_text(
        fleet_config(pebble, hook, ["lone.faults.test"])
    )
    admin("--storage", direct, "apply")
    host = certherd.elsewhere(tmp_path / "host")
    host.config_dir.mkdir()
    host("--storage", direct, "renew")  # this host's copy of the live files
    assert "lone.faults.test" in live_names(host.config_dir)
    port = free_port()
    relay.start()
    running = host.start(
        "--storage", through, "run", "--min-interval", "1", "--max-interval", "3600",
        "--metrics", f"127.0.0.1:{port}",
    )  # fmt: skip
    wait_until(lambda: metric(port, "certherd_storage_up") == 1, 30, "storage_up 1")
    relay.stop()
    running.process.send_signal(signal.SIGHUP)  # a cycle now (else the next is an hour away)
    wait_until(lambda: metric(port, "certherd_storage_up") == 0, 30, "storage_up 0")
    assert "storage is unavailable" in running.stderr_so_far()
    assert "lone.faults.test" in live_names(host.config_dir)
    relay.start()
    # Backoff from 1 s: back within seconds, without a signal.
    wait_until(lambda: metric(port, "certherd_storage_up") == 1, 30, "storage_up 1 again")
    assert "storage is available again" in running.stderr_so_far()
    errors = metric(port, "certherd_storage_errors_total")
    assert errors is not None
    assert errors >= 1
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=30).code == 0
