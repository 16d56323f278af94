"""docs/fleet.md's database set-up, checked: a node reaches PostgreSQL over TLS with the
server's certificate and name verified (``sslmode=verify-full&sslrootcert=...``), the
password from a 0600 ``PGPASSFILE``; a server whose certificate another CA signed, and a
connection without TLS (no ``hostssl`` line allows it), are refused in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_runner import Certherd, Result
from tests.servers.net import ServerStartError
from tests.servers.postgres import PASSWORD, PostgresServer

from certherd.testing.pki import MiniCA


@pytest.fixture(scope="module")
def tls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("database-tls")
    ca = MiniCA.create("certherd test database CA")
    (folder / "db-ca.pem").write_bytes(ca.pem)
    ca.write_server_files(folder, "db", ["localhost"], ["127.0.0.1"])
    (folder / "other-ca.pem").write_bytes(MiniCA.create("some other CA").pem)
    return folder


@pytest.fixture(scope="module")
def tls_postgres(tls_folder: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tls=(tls_folder / "db.pem", tls_folder / "db-key.pem"))
    try:
        server.start()
    except ServerStartError as err:
        pytest.fail(f"{err} (apt-get install -y postgresql)")
    try:
        yield server
    finally:
        server.stop()


def _url(server: PostgresServer, database: str, **options: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"postgresql://certherd@localhost:{server.port}/{database}?{query}"


def _pgpass(folder: Path, server: PostgresServer) -> dict[str, str]:
    """A pass file as docs/fleet.md writes it (0600), in libpq's environment variable."""
    path = folder / "pgpass"
    path.touch(mode=0o600)
    path.write_text(f"localhost:{server.port}:*:certherd:{PASSWORD}\n")
    return {"PGPASSFILE": str(path)}


def _one_line(result: Result, code: int, *words: str) -> None:
    assert result.code == code, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("certherd: error: "), result.describe()
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr + result.stdout


def test_a_node_reaches_the_database_over_verified_tls(
    certherd: Certherd, tls_postgres: PostgresServer, tls_folder: Path, tmp_path: Path
) -> None:
    database = tls_postgres.database()
    url = _url(
        tls_postgres, database, sslmode="verify-full", sslrootcert=str(tls_folder / "db-ca.pem")
    )
    env = _pgpass(tmp_path, tls_postgres)
    result = certherd("--storage", url, "--json", "list", env=env)
    assert result.json()["lineages"] == []
    # certherd made its schema there, over that connection.
    tables = tls_postgres.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'certherd_schedule'", database
    )
    assert tables == [(1,)]


def test_a_database_certificate_from_another_ca_is_refused(
    certherd: Certherd, tls_postgres: PostgresServer, tls_folder: Path, tmp_path: Path
) -> None:
    url = _url(
        tls_postgres,
        tls_postgres.database(),
        sslmode="verify-full",
        sslrootcert=str(tls_folder / "other-ca.pem"),
    )
    result = certherd("--storage", url, "list", env=_pgpass(tmp_path, tls_postgres), check=False)
    _one_line(result, 2, "certificate verify failed")


def test_a_connection_without_tls_is_refused(
    certherd: Certherd, tls_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = _url(tls_postgres, tls_postgres.database(), sslmode="disable")
    result = certherd("--storage", url, "list", env=_pgpass(tmp_path, tls_postgres), check=False)
    _one_line(result, 2, "no pg_hba.conf entry", "no encryption")
