"""Issue 10.5: a revoked certificate is flagged, and the next ``renew`` replaces it.

Revocation is checked at Pebble's management API (``/cert-status-by-serial``), as in
test_cli_lifecycle. The certificate is revoked by ``certherd revoke`` (any reason), or
behind certherd's back with the certificate's own key (RFC 8555 §7.6), which certherd
learns from the CA's ``alreadyRevoked`` answer.
"""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import live_problems, load_cert
from e2e_runner import Certherd

from certherd.acme import RevocationReason
from certherd.acme.sync import SyncAcmeClient
from certherd.crypto.keys import generate_key, load_private_key
from certherd.testing.pebble import PebbleServer


def _listed(certherd: Certherd, name: str) -> dict[str, object]:
    entries = {e["name"]: e for e in certherd("--json", "list").json()["lineages"]}
    entry: dict[str, object] = entries[name]
    return entry


def _replaced_by_the_next_renew(certherd: Certherd, pebble: PebbleServer, name: str) -> None:
    old = load_cert(certherd.live(name) / "cert.pem")
    old_key = (certherd.live(name) / "privkey.pem").read_bytes()
    [result] = certherd("--json", "renew").json()["results"]  # not forced
    assert (result["action"], result["version"]) == ("renewed", 2), result
    assert "revoked" in result["reason"]
    new = load_cert(certherd.live(name) / "cert.pem")
    assert new.serial_number != old.serial_number
    assert (certherd.live(name) / "privkey.pem").read_bytes() != old_key
    assert pebble.cert_status(new.serial_number)["Status"] == "Valid"
    assert live_problems(certherd.config_dir, name) == []
    entry = _listed(certherd, name)
    assert entry["revoked"] is False
    assert entry["version"] == 2
    again = certherd("--json", "renew").json()["results"]
    assert [r["action"] for r in again] == ["not-due"]


def test_a_revoked_lineage_is_flagged_and_replaced(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    certherd.issue("revoked.test", args=["--reuse-key"])
    serial = load_cert(certherd.live("revoked.test") / "cert.pem").serial_number
    certherd("revoke", "revoked.test", "--reason", "superseded")
    assert pebble.cert_status(serial)["Status"] == "Revoked"

    entry = _listed(certherd, "revoked.test")
    assert entry["revoked"] is True
    assert entry["revocation_reason"] == "superseded"
    assert entry["revoked_at"]
    assert "REVOKED" in certherd("list").stdout
    shown = certherd("--json", "show", "revoked.test").json()
    assert shown["revoked"] is True
    # A revoked certificate's key is never reused, even with --reuse-key.
    _replaced_by_the_next_renew(certherd, pebble, "revoked.test")


def test_the_cas_already_revoked_answer_flags_the_lineage(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    certherd.issue("behind.test")
    live = certherd.live("behind.test")
    leaf = load_cert(live / "cert.pem")
    key = load_private_key((live / "privkey.pem").read_bytes())
    # Revoked elsewhere, with the certificate's own key (RFC 8555 §7.6): certherd's
    # state does not know yet.
    with SyncAcmeClient(
        pebble.directory_url, generate_key(), ca_bundle=str(pebble.ca_bundle)
    ) as stranger:
        stranger.revoke(leaf, reason=RevocationReason.KEY_COMPROMISE, certificate_key=key)
    assert _listed(certherd, "behind.test")["revoked"] is False

    answer = certherd("revoke", "behind.test", check=False)
    assert answer.code == 1, answer.describe()
    assert "revoked" in answer.stderr.lower()
    assert _listed(certherd, "behind.test")["revoked"] is True
    _replaced_by_the_next_renew(certherd, pebble, "behind.test")


def test_revoke_delete_removes_the_lineage(certherd: Certherd, pebble: PebbleServer) -> None:
    certherd.issue("gone.test")
    serial = load_cert(certherd.live("gone.test") / "cert.pem").serial_number
    done = certherd("--json", "revoke", "gone.test", "--delete").json()
    assert done["revoked"] is True
    assert done["deleted"] is True
    assert pebble.cert_status(serial)["Status"] == "Revoked"
    assert certherd("--json", "list").json() == {"lineages": []}
    assert certherd("--json", "renew").json()["results"] == []
    assert not Path(certherd.live("gone.test")).exists()
    assert not (certherd.config_dir / "renewal" / "gone.test.json").exists()
