"""``--storage-key-file`` and ``certherd storage-key`` as a user runs them: a lineage
issued from the session's Pebble into the real PostgreSQL with its private keys sealed,
another host with and without the key file, turning sealing on for an existing database,
and one clear line for each mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e_helpers import load_cert
from e2e_runner import Certherd
from tests.e2e.test_cli_postgresql import one_error_line
from tests.servers.postgres import PostgresServer

from certherd.storage.sealing import MAGIC


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.database()


def private_rows(postgres: PostgresServer, database: str) -> dict[str, bytes]:
    rows = postgres.execute("SELECT key, data FROM certherd_values WHERE private", database)
    return {key: bytes(data) for key, data in rows}


def test_issue_with_a_storage_key_seals_every_private_key(
    certherd: Certherd, postgres: PostgresServer, database: str, tmp_path: Path
) -> None:
    url = postgres.url(database)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    key = keys / "storage.key"
    made = certherd("--json", "storage-key", "new", str(key)).json()
    assert made["file"] == str(key)
    assert made["keys"] == 1
    assert (key.stat().st_mode & 0o777) == 0o600
    sealing = ["--storage", url, "--storage-key-file", str(key)]
    issued = certherd(
        *sealing, "--json", "issue", "-d", "sealed.test", *certherd.http, *certherd.ca
    ).json()  # fmt: skip
    assert issued["results"][0]["action"] == "issued"
    private = private_rows(postgres, database)
    assert "archive/sealed.test/privkey1.pem" in private
    assert any(name.startswith("accounts/") for name in private), sorted(private)
    for name, data in private.items():
        assert data.startswith(MAGIC), name
        assert b"PRIVATE KEY" not in data, name
    # This host's live files are in clear (0600) and match the certificate.
    live = certherd.live("sealed.test")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private_key = load_pem_private_key((live / "privkey.pem").read_bytes(), None)
    assert private_key.public_key() == load_cert(live / "cert.pem").public_key()
    forced = certherd(*sealing, "--json", "renew", "--force").json()
    assert forced["results"][0]["action"] == "renewed"

    # Another host sharing the database: without the key file its copy cannot be made,
    # said in one line naming the option; with it (from the environment), it can.
    other = certherd.elsewhere(tmp_path / "other-host")
    keyless = other("--storage", url, "renew", check=False)
    one_error_line(keyless, 2, "sealed", "--storage-key-file")
    assert not other.live("sealed.test").exists()
    other("--storage", url, "renew", env={"CERTHERD_STORAGE_KEY_FILE": str(key)})
    assert (other.live("sealed.test") / "privkey.pem").read_bytes() == (
        live / "privkey.pem"
    ).read_bytes()
    # A key file that is not the fleet's: one line saying which key the value needs.
    stranger = keys / "stranger.key"
    certherd("storage-key", "new", str(stranger))
    wrong = other("--storage", url, "--storage-key-file", str(stranger), "renew", "--force",
                  check=False)  # fmt: skip
    # (the renewal fails, exit 1, saying which key file lacks which key; nothing changes)
    assert wrong.code == 1, wrong.describe()
    assert f"which --storage-key-file ({stranger}) does not hold" in wrong.stdout
    assert "Traceback" not in wrong.stderr
    assert other("--storage", url, "--json", "show", "sealed.test", env={
        "CERTHERD_STORAGE_KEY_FILE": str(key)}).json()["version"] == 2  # fmt: skip


def test_reseal_turns_sealing_on_for_an_existing_database_and_rotates(
    certherd: Certherd, postgres: PostgresServer, database: str, tmp_path: Path
) -> None:
    url = postgres.url(database)
    certherd("--storage", url, "issue", "-d", "clear.test", *certherd.http, *certherd.ca)
    before = private_rows(postgres, database)
    assert before
    assert not any(data.startswith(MAGIC) for data in before.values())
    key = tmp_path / "storage.key"
    certherd("storage-key", "new", str(key))
    sealing = ["--storage", url, "--storage-key-file", str(key)]
    done = certherd(*sealing, "--json", "storage-key", "reseal").json()
    assert done == {"resealed": len(before), "current": 0}
    assert all(data.startswith(MAGIC) for data in private_rows(postgres, database).values())
    # Rotation: a new key first, reseal, and the lineage still renews.
    rotated = certherd("--json", "storage-key", "new", "--rotate", str(key)).json()
    assert rotated["keys"] == 2
    again = certherd(*sealing, "--json", "storage-key", "reseal").json()
    assert again == {"resealed": len(before), "current": 0}
    kept = key.read_text().splitlines()
    key.write_text(kept[0] + "\n")  # the old line goes once every value is resealed
    forced = certherd(*sealing, "--json", "renew", "--force").json()
    assert forced["results"][0]["action"] == "renewed"


def test_storage_key_mistakes_are_one_line_each(
    certherd: Certherd, postgres: PostgresServer, database: str, tmp_path: Path
) -> None:
    url = postgres.url(database)
    key = tmp_path / "storage.key"
    certherd("storage-key", "new", str(key))
    one_error_line(certherd("storage-key", "new", str(key), check=False), 2, "exists", "--rotate")
    one_error_line(
        certherd("storage-key", "new", "--rotate", str(tmp_path / "none.key"), check=False),
        2,
        "does not exist",
    )
    os.chmod(key, 0o644)
    one_error_line(
        certherd("--storage", url, "--storage-key-file", str(key), "list", check=False),
        2,
        "--storage-key-file",
        "chmod 600",
    )
    os.chmod(key, 0o600)
    one_error_line(
        certherd("--storage-key-file", str(key), "list", check=False),
        2,
        "--storage-key-file",
        "--storage",
    )
    one_error_line(certherd("storage-key", "reseal", check=False), 2, "--storage")
    one_error_line(
        certherd("--storage", url, "storage-key", "reseal", check=False),
        2,
        "--storage-key-file",
    )
