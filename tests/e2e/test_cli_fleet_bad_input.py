"""Bad input and faults of a fleet's database through the real CLI (issue 12, "Bad input
and faults"), for every command a fleet uses: ``run`` (alone and ``--node``), ``apply``
(and ``--defer``), ``list``, ``show``, ``renew``.

A wrong URL, a refused password and a schema newer than this certherd are configuration
errors: one line, exit 2, never a traceback, for every command, the daemon included (it
must not retry a password for ever). A database down at start is a runtime error for the
one-shot commands (one line, exit 1); a daemon waits for it (it serves what is on disk:
tests/e2e/test_cli_fleet_faults.py). ``--storage-timeout`` sets the deadline of one
database call; a bad value is one line naming the flag.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_runner import Certherd, Result
from tests.servers.postgres import PostgresServer
from tests.servers.relay import UnixRelay

from certherd.storage.pgschema import LATEST
from certherd.testing.pebble import PebbleServer

COMMANDS = {
    "list": ["list"],
    "show": ["show", "bad.fleet.test"],
    "renew": ["renew"],
    "apply": ["apply"],
    "apply --defer": ["apply", "--defer"],
    "run": ["run"],
    "run --node": ["run", "--node", "n1"],
}


def one_line(result: Result, code: int, *words: str) -> None:
    assert result.code == code, result.describe()
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("certherd: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]


def every_command(
    certherd: Certherd, url: str, *, only: list[str] | None = None
) -> dict[str, Result]:
    """Each command on ``url`` at once (each is its own process)."""
    chosen = {name: args for name, args in COMMANDS.items() if only is None or name in only}

    def one(args: list[str]) -> Result:
        return certherd("--storage", url, *args, check=False, timeout=60)

    with ThreadPoolExecutor(len(chosen)) as pool:
        results = pool.map(one, chosen.values())
        return dict(zip(chosen, results, strict=True))


@pytest.fixture
def configured(certherd: Certherd, pebble: PebbleServer) -> Certherd:
    """certherd.toml with one certificate (what apply stores)."""
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    (certherd.config_dir / "certherd.toml").write_text(
        f'[defaults]\nserver = "{pebble.directory_url}"\nemail = "bad@example.com"\n'
        'agree_tos = true\nsolver = "hook"\n'
        'solver_options = { challenge = "dns-01", command = "/bin/true" }\n'
        '[[certificate]]\ndomains = ["bad.fleet.test"]\n'
    )
    return certherd


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://certherd:hunter2@db/x", ["not a PostgreSQL URL", "postgresql://"]),
        ("postgresql://certherd@db.test:notaport/x", ["is not usable", "port 'notaport'"]),
    ],
)
def test_a_wrong_url_is_one_line_exit_2_for_every_command(
    configured: Certherd, url: str, words: list[str]
) -> None:
    for command, result in every_command(configured, url).items():
        one_line(result, 2, *words)
        assert "hunter2" not in result.stderr, command


def test_a_refused_password_is_one_line_exit_2_for_every_command_the_daemon_too(
    configured: Certherd, postgres: PostgresServer
) -> None:
    url = postgres.url(postgres.database(), password="not-the-password")
    for command, result in every_command(configured, url).items():
        one_line(result, 2, "password authentication failed", "PGPASSWORD")
        assert "not-the-password" not in result.stderr, command


def test_a_schema_newer_than_this_certherd_is_one_line_exit_2_for_every_command(
    configured: Certherd, postgres: PostgresServer
) -> None:
    database = postgres.database()
    url = postgres.url(database)
    assert configured("--storage", url, "--json", "list").json() == {"lineages": []}
    postgres.execute(
        f"INSERT INTO certherd_schema (version, by) VALUES ({LATEST + 1}, 'later')", database
    )
    for result in every_command(configured, url).values():
        one_line(result, 2, f"schema version {LATEST + 1}", "upgrade certherd")


def test_a_database_down_at_start_is_one_line_exit_1_and_a_daemon_waits_for_it(
    configured: Certherd, postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.database()
    folder = tmp_path / "relay"
    folder.mkdir()
    name = f".s.PGSQL.{postgres.port}"
    relay = UnixRelay(str(folder / name), str(postgres.socket_dir / name))  # not started
    url = postgres.url(database).replace(f"host={postgres.socket_dir}", f"host={folder}")
    try:
        one_shot = ["list", "show", "renew", "apply", "apply --defer"]
        for result in every_command(configured, url, only=one_shot).values():
            one_line(result, 1, "cannot connect to the PostgreSQL storage")
        # The daemon (plain or a node) keeps running, says so, and carries on once the
        # database is there.
        daemons = [
            configured.start("--storage", url, *COMMANDS[name], "--max-interval", "1")
            for name in ("run", "run --node")
        ]
        deadline = time.monotonic() + 30
        while not all("does not answer yet" in d.stderr_so_far() for d in daemons):
            assert time.monotonic() < deadline, [d.stderr_so_far() for d in daemons]
            assert all(d.process.poll() is None for d in daemons)
            time.sleep(0.1)
        relay.start()
        listed = configured("--storage", url, "--json", "list").json()
        assert listed == {"lineages": []}
        for daemon in daemons:
            assert daemon.process.poll() is None, daemon.stderr_so_far()
            daemon.process.send_signal(signal.SIGTERM)
        for daemon in daemons:
            assert daemon.wait(timeout=30).code == 0
    finally:
        relay.stop()


def test_storage_timeout_sets_the_deadline_and_a_bad_value_is_one_line(
    configured: Certherd, postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.database()
    url = postgres.url(database)
    bad_values = ("abc", "0", "-5", "nan", "1e9")

    def run(value: str) -> Result:
        return configured("--storage", url, "--storage-timeout", value, "list", check=False)

    with ThreadPoolExecutor(len(bad_values)) as pool:
        for value, result in zip(bad_values, pool.map(run, bad_values), strict=True):
            one_line(result, 2, "--storage-timeout", repr(value), "from 1 to 3600")
    env_bad = configured(
        "--storage", url, "list", env={"CERTHERD_STORAGE_TIMEOUT": "x"}, check=False
    )
    one_line(env_bad, 2, "--storage-timeout")
    alone = configured("--storage-timeout", "5", "list", check=False)
    one_line(alone, 2, "--storage-timeout", "--storage")
    # A hung database (connections accepted, nothing answered) fails after the deadline
    # given, not the default 30 s.
    folder = tmp_path / "relay"
    folder.mkdir()
    name = f".s.PGSQL.{postgres.port}"
    relay = UnixRelay(str(folder / name), str(postgres.socket_dir / name))
    relay.start()
    relay.frozen.set()
    try:
        through = url.replace(f"host={postgres.socket_dir}", f"host={folder}")
        started = time.monotonic()
        hung = configured("--storage", through, "--storage-timeout", "2", "list", check=False)
        took = time.monotonic() - started
        one_line(hung, 1, "did not answer within 2s")
        assert took < 25, took  # the default deadline is 30 s
    finally:
        relay.frozen.clear()
        relay.stop()
