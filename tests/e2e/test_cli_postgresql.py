"""``certherd --storage postgresql://...`` as a user runs it: a lineage's life in a real
PostgreSQL (issued from the session's Pebble), and one clear line with the right exit
code for each way the storage can be wrong (2: configuration, 1: runtime)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from e2e_helpers import live_version, load_cert
from e2e_runner import Certherd, Result
from tests.servers.postgres import PASSWORD, PostgresServer

from certherd.storage.base import Lease
from certherd.storage.pgschema import LATEST
from certherd.storage.postgresql import PostgresStorage


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.database()


async def _hold(url: str, name: str) -> Lease:
    store = PostgresStorage(url)
    try:
        return await store.acquire(name, ttl=120, wait=0)
    finally:
        await store.aclose()


async def _release(url: str, lease: Lease) -> None:
    store = PostgresStorage(url)
    try:
        await store.release(lease)
    finally:
        await store.aclose()


def one_error_line(result: Result, code: int, *words: str) -> str:
    """The command failed with ``code``, saying so in one line holding ``words``."""
    assert result.code == code, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    [line] = lines
    assert line.startswith("certherd: error: "), line
    for word in words:
        assert word in line, line
    assert PASSWORD not in result.stderr + result.stdout
    return line


def test_issue_list_show_renew_in_postgresql(
    certherd: Certherd, postgres: PostgresServer, database: str, tmp_path: Path
) -> None:
    # The password comes from libpq's environment, not the command line.
    url = postgres.url(database, password=None)
    env = {"PGPASSWORD": PASSWORD}
    domains = ["-d", "db.life.test", "-d", "www.db.life.test"]
    seen = tmp_path / "deploy-hook-saw"
    hook = f'echo "$CERTHERD_LIVE_DIR $CERTHERD_VERSION" >> {seen}'
    issued = certherd(
        "--storage", url, "--json", "issue", *domains, *certherd.http, *certherd.ca,
        "--deploy-hook", hook, env=env,
    ).json()  # fmt: skip
    [result] = issued["results"]
    live = certherd.live("db.life.test")
    assert (result["action"], result["version"]) == ("issued", 1)
    assert Path(result["live_dir"]) == live
    # The database holds the lineage; this host holds its live files (for its web server
    # and its deploy hooks), as symlinks into its copy of the version.
    assert not (certherd.config_dir / "renewal").exists()
    assert not (certherd.config_dir / "state").exists()
    assert live_version(certherd.config_dir, "db.life.test") == 1
    assert seen.read_text().split() == [str(live.absolute()), "1"]
    keys = {row[0] for row in postgres.execute("SELECT key FROM certherd_values", database)}
    assert {
        "renewal/db.life.test.json",
        "state/db.life.test.json",
        "archive/db.life.test/cert1.pem",
        "archive/db.life.test/privkey1.pem",
        "live/db.life.test.json",
    } <= keys
    private = postgres.execute(
        "SELECT key FROM certherd_values WHERE private ORDER BY key", database
    )
    assert ("archive/db.life.test/privkey1.pem",) in private

    # The URL may come from CERTHERD_STORAGE too (here with its password: never shown).
    env_url = {"CERTHERD_STORAGE": postgres.url(database)}
    listing = certherd("--json", "list", env=env_url).json()
    [entry] = listing["lineages"]
    assert entry["name"] == "db.life.test"
    assert entry["names"] == ["db.life.test", "www.db.life.test"]
    assert entry["version"] == 1
    assert entry["files"]["fullchain.pem"] == str(live / "fullchain.pem")
    shown = certherd("--storage", url, "--json", "show", "db.life.test", env=env).json()
    assert shown == entry
    assert entry["lease"] is None  # nobody works on it now
    # While a node holds the lineage's lease, list and show say which one.
    held = asyncio.run(_hold(postgres.url(database), "db.life.test"))
    shown_held = certherd("--storage", url, "--json", "show", "db.life.test", env=env).json()
    assert shown_held["lease"]["holder"] == held.holder
    assert shown_held["lease"]["token"] == held.token
    human_show = certherd("--storage", url, "show", "db.life.test", env=env).stdout
    assert held.holder in human_show
    asyncio.run(_release(postgres.url(database), held))
    human = certherd("list", env=env_url)
    assert "db.life.test" in human.stdout
    assert PASSWORD not in human.stdout + human.stderr
    # After the command too, and with every log line on: the password is never shown.
    verbose = certherd("-vv", "show", "db.life.test", "--storage", postgres.url(database))
    assert "db.life.test" in verbose.stdout
    assert PASSWORD not in verbose.stdout + verbose.stderr

    first_serial = load_cert(live / "cert.pem").serial_number
    not_due = certherd("--storage", url, "--json", "renew", env=env).json()
    assert [r["action"] for r in not_due["results"]] == ["not-due"]
    forced = certherd("--storage", url, "--json", "renew", "--force", env=env).json()
    [renewed] = forced["results"]
    assert (renewed["action"], renewed["version"]) == ("renewed", 2), forced
    assert certherd("--json", "show", "db.life.test", env=env_url).json()["version"] == 2
    assert live_version(certherd.config_dir, "db.life.test") == 2
    assert seen.read_text().split()[-1] == "2"
    assert load_cert(live / "cert.pem").serial_number != first_serial
    # Another host on the same database sees the lineage at once; its renew (its cron
    # job) brings its own live files to the version the database holds, and a dry run
    # writes nothing there (no deploy hook on that host: the fleet daemon's part).
    other = certherd.elsewhere(tmp_path / "other-host")
    assert other("--json", "show", "db.life.test", env=env_url).json()["version"] == 2
    other("renew", "--dry-run", env=env_url)
    assert not other.live("db.life.test").exists()
    other("renew", env=env_url)
    assert live_version(other.config_dir, "db.life.test") == 2
    assert (other.live("db.life.test") / "privkey.pem").read_bytes() == (
        live / "privkey.pem"
    ).read_bytes()
    # Leases were taken and given back, each with its own token from the database.
    leases = postgres.execute(
        "SELECT holder, token FROM certherd_leases WHERE name = 'db.life.test'", database
    )
    [(holder, token)] = leases
    assert holder is None
    assert token >= 2

    deleted = certherd("--storage", url, "--json", "delete", "db.life.test", env=env).json()
    assert deleted["deleted"] is True
    assert not live.exists()
    assert certherd("--storage", url, "--json", "list", env=env).json()["lineages"] == []


def test_a_url_that_is_not_postgresql_is_a_configuration_error(certherd: Certherd) -> None:
    result = certherd("--storage", "mysql://user:hunter2@db/x", "list", check=False)
    line = one_error_line(result, 2, "not a PostgreSQL URL", "postgresql://")
    assert "hunter2" not in result.stderr
    assert "***" in line


def test_a_refused_password_is_a_configuration_error(
    certherd: Certherd, postgres: PostgresServer, database: str
) -> None:
    url = postgres.url(database, password="not-the-password")
    result = certherd("--storage", url, "list", check=False)
    one_error_line(result, 2, "password authentication failed", "PGPASSWORD")
    assert "not-the-password" not in result.stderr


def test_a_database_that_is_down_at_start_is_a_runtime_error(
    certherd: Certherd, postgres: PostgresServer
) -> None:
    url = postgres.url("anything").replace(f"port={postgres.port}", "port=1")
    result = certherd("--storage", url, "list", check=False)
    one_error_line(result, 1, "cannot connect to the PostgreSQL storage")


def test_a_schema_newer_than_this_certherd_is_refused(
    certherd: Certherd, postgres: PostgresServer, database: str
) -> None:
    url = postgres.url(database)
    assert certherd("--storage", url, "--json", "list").json() == {"lineages": []}
    postgres.execute(
        f"INSERT INTO certherd_schema (version, by) VALUES ({LATEST + 1}, 'later')", database
    )
    for command in (["list"], ["renew"], ["show", "x.test"]):
        result = certherd("--storage", url, *command, check=False)
        one_error_line(result, 2, f"schema version {LATEST + 1}", "upgrade certherd")


def test_without_psycopg_the_install_hint_is_one_line(certherd: Certherd, tmp_path: Path) -> None:
    """psycopg missing (certherd installed without its postgresql extra): exit 2, the hint."""
    blocker = tmp_path / "no-psycopg"
    blocker.mkdir()
    (blocker / "psycopg.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    result = certherd(
        "--storage", "postgresql://certherd@/x", "list", env={"PYTHONPATH": path}, check=False
    )
    one_error_line(result, 2, "pip install 'certherd[postgresql]'")
