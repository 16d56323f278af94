"""A lineage's life through the CLI against Pebble: issue, list, show, renew, revoke, delete."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from e2e_helpers import (
    archive_versions,
    dns_names,
    live_problems,
    live_version,
    load_cert,
    parse_time,
    snapshot,
)
from e2e_runner import Certherd

from certherd.testing.pebble import PebbleServer


def test_issue_two_names_then_list_and_show(certherd: Certherd, pebble: PebbleServer) -> None:
    issued = certherd.issue("www.life.test", "life.test").json()
    assert issued["failed"] == 0
    [result] = issued["results"]
    assert result["action"] == "issued"
    assert result["lineage"] == "www.life.test"  # named after the first name
    assert result["version"] == 1
    assert result["hook_errors"] == []
    assert Path(result["live_dir"]) == certherd.live("www.life.test")

    listing = certherd("--json", "list").json()
    [entry] = listing["lineages"]
    shown = certherd("--json", "show", "www.life.test").json()
    assert shown == entry
    assert shown["name"] == "www.life.test"
    assert shown["names"] == ["www.life.test", "life.test"]
    assert shown["ca"] == pebble.directory_url
    assert shown["version"] == 1
    assert shown["failures"] == 0
    assert shown["last_error"] is None

    live = certherd.live("www.life.test")
    assert {name: Path(path) for name, path in shown["files"].items()} == {
        file: live / file for file in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
    }
    for path in shown["files"].values():
        assert Path(path).is_file()
    assert live_version(certherd.config_dir, "www.life.test") == 1
    for file in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"):
        target = Path("..", "..", "archive", "www.life.test", file.replace(".pem", "1.pem"))
        assert (live / file).readlink() == target

    cert = load_cert(live / "cert.pem")
    assert dns_names(cert) == {"www.life.test", "life.test"}
    assert parse_time(shown["not_after"]) == cert.not_valid_after_utc
    assert parse_time(shown["not_before"]) == cert.not_valid_before_utc
    assert parse_time(result["not_after"]) == cert.not_valid_after_utc
    assert int(shown["serial"], 16) == cert.serial_number
    # No ARI at Pebble: renew when a third of the lifetime remains.
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    due = parse_time(shown["next_renewal"])
    assert abs(due - (cert.not_valid_after_utc - lifetime / 3)) < dt.timedelta(seconds=2)

    intermediate = pebble.intermediates_pem()
    assert (live / "chain.pem").read_bytes().strip() == intermediate.strip()
    assert stat.S_IMODE((live / "privkey.pem").resolve().stat().st_mode) == 0o600
    assert stat.S_IMODE(certherd.archive("www.life.test").stat().st_mode) == 0o700

    human = certherd("list")
    assert "www.life.test" in human.stdout
    assert "life.test" in human.stdout
    assert certherd("-q", "list").stdout == ""


def test_renew_not_due_then_forced(certherd: Certherd) -> None:
    certherd.issue("renew.test")
    live = certherd.live("renew.test")
    key_before = (live / "privkey.pem").read_bytes()
    files_before = snapshot(certherd.archive("renew.test")) | snapshot(live)

    not_due = certherd("--json", "renew")
    [result] = not_due.json()["results"]
    assert result["action"] == "not-due"
    assert result["version"] == 1
    assert "not due until" in result["reason"]
    assert snapshot(certherd.archive("renew.test")) | snapshot(live) == files_before
    assert certherd("-q", "renew").stdout == ""

    forced = certherd("--json", "renew", "--force")
    [result] = forced.json()["results"]
    assert (result["action"], result["version"]) == ("renewed", 2)
    assert live_version(certherd.config_dir, "renew.test") == 2
    assert sorted(archive_versions(certherd.archive("renew.test"))) == [1, 2]
    assert (live / "privkey.pem").read_bytes() != key_before  # a new key per renewal
    shown = certherd("--json", "show", "renew.test").json()
    assert shown["version"] == 2
    assert int(shown["serial"], 16) == load_cert(live / "cert.pem").serial_number


def test_dry_run_changes_nothing(certherd: Certherd) -> None:
    """``renew --dry-run``: "say what is due and why; change nothing" (its help)."""
    certherd.issue("dry.test")
    everything = snapshot(certherd.config_dir)
    dry = certherd("--json", "renew", "--dry-run").json()["results"]
    assert [(r["action"], r["version"]) for r in dry] == [("not-due", 1)]
    forced_dry = certherd("--json", "renew", "--dry-run", "--force").json()["results"]
    assert [(r["action"], r["version"]) for r in forced_dry] == [("would-renew", 1)]
    assert snapshot(certherd.config_dir) == everything, "--dry-run changed files"


def test_renew_names_only_the_named_lineage(certherd: Certherd) -> None:
    certherd.issue("one.test")
    certherd.issue("two.test")
    two = snapshot(certherd.archive("two.test")) | snapshot(certherd.live("two.test"))
    results = certherd("--json", "renew", "--force", "one.test").json()["results"]
    assert [(r["lineage"], r["action"], r["version"]) for r in results] == [
        ("one.test", "renewed", 2)
    ]
    assert snapshot(certherd.archive("two.test")) | snapshot(certherd.live("two.test")) == two
    assert live_version(certherd.config_dir, "one.test") == 2


def test_reuse_key_keeps_the_key_across_renewals(certherd: Certherd) -> None:
    certherd.issue("reuse.test", args=["--key-type", "rsa2048", "--reuse-key"])
    live = certherd.live("reuse.test")
    key = (live / "privkey.pem").read_bytes()
    certherd("renew", "--force")
    assert live_version(certherd.config_dir, "reuse.test") == 2
    assert (live / "privkey.pem").read_bytes() == key
    public_key = load_cert(live / "cert.pem").public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048


def test_revoke_is_confirmed_by_pebble(certherd: Certherd, pebble: PebbleServer) -> None:
    certherd.issue("revoke.test")
    serial = load_cert(certherd.live("revoke.test") / "cert.pem").serial_number
    assert pebble.cert_status(serial)["Status"] == "Valid"

    revoked = certherd("--json", "revoke", "revoke.test", "--reason", "keyCompromise").json()
    assert revoked["revoked"] is True
    assert int(revoked["serial"], 16) == serial
    status = pebble.cert_status(serial)
    assert status["Status"] == "Revoked"
    assert status["Reason"] == 1  # RFC 5280 §5.3.1 keyCompromise

    again = certherd("revoke", "revoke.test", check=False)
    assert again.code == 1
    [line] = again.stderr.splitlines()
    assert line.startswith("certherd: error:")
    assert "revoked" in line.lower()
    assert live_problems(certherd.config_dir, "revoke.test") == []  # revoking keeps the files


def test_delete_removes_the_lineage(certherd: Certherd) -> None:
    certherd.issue("delete.test")
    deleted = certherd("--json", "delete", "delete.test").json()
    assert deleted["deleted"] is True
    assert certherd("--json", "list").json() == {"lineages": []}
    assert not certherd.live("delete.test").exists()
    assert archive_versions(certherd.archive("delete.test")) == {}
