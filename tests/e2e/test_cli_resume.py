"""A certificate the CA issued is fetched and kept, whatever happens after finalize.

Issue 9.4 (crash): ``issue`` is killed (SIGKILL) after the order was finalized and the
certificate downloaded, just before its first file reaches the archive; the next run
resumes the first order (its URL and key were saved when it was placed) and fetches its
certificate: no second order at Pebble. Issue 10.2: the switch of ``live/`` fails (an
injected EIO) after the certificate was stored; the run fails, the certificate is in the
archive, and the next ``renew`` makes it live without ordering again.

Orders and issuances are counted in Pebble's log (``Added order``, ``Issued certificate``):
a request, such as ``POST /order-plz``, is logged again when it is retried after one of the
nonces Pebble rejects on purpose (5 %), which made a count of requests flaky.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from e2e_helpers import archive_versions, fault_environment, live_problems, live_version, load_cert
from e2e_runner import Certherd

from certherd.crypto.keys import load_private_key, public_key_equal
from certherd.testing.pebble import PebbleServer


def _orders(pebble: PebbleServer) -> int:
    return pebble.orders_created()


def _issued(pebble: PebbleServer) -> int:
    return pebble.log_tail(10**7).count("Issued certificate serial ")


def test_a_crash_after_finalize_fetches_the_first_orders_certificate(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    orders, finalized = _orders(pebble), _issued(pebble)
    # Changes to archive/ of a fresh config dir: mkdir archive, mkdir archive/NAME, the
    # order's key; the 4th is the first certificate file, after the download.
    env = fault_environment(tmp_path / "fault", certherd.config_dir, "kill:archive:4")
    args = ["--json", "issue", "-d", "crash.test", *certherd.http, *certherd.ca]
    killed = certherd(*args, env=env, check=False)
    assert killed.code == -signal.SIGKILL, killed.describe()
    archive = certherd.archive("crash.test")
    stored = sorted(p.name for p in archive.iterdir() if not p.name.startswith("."))
    assert stored == ["pending-privkey.pem"]  # (and the temp file of the killed write)
    assert _orders(pebble) == orders + 1
    assert _issued(pebble) == finalized + 1  # killed after finalize
    pending = load_private_key((archive / "pending-privkey.pem").read_bytes())
    state = json.loads((certherd.config_dir / "state" / "crash.test.json").read_text())
    assert state["order_url"].startswith(pebble.directory_url.rsplit("/", 1)[0])

    again = certherd(*args).json()["results"]
    assert [(r["action"], r["version"]) for r in again] == [("issued", 1)]
    assert _orders(pebble) == orders + 1  # no second order
    assert _issued(pebble) == finalized + 1  # nor a second finalize
    leaf = load_cert(certherd.live("crash.test") / "cert.pem")
    assert public_key_equal(leaf.public_key(), pending.public_key())  # type: ignore[arg-type]
    assert live_problems(certherd.config_dir, "crash.test") == []
    assert not (archive / "pending-privkey.pem").exists()
    state = json.loads((certherd.config_dir / "state" / "crash.test.json").read_text())
    assert state["order_url"] is None


def test_an_issued_certificate_survives_a_failed_switch_and_is_promoted(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    certherd.issue("kept.test")
    orders = _orders(pebble)
    env = fault_environment(tmp_path / "fault", certherd.config_dir, "fail:live:1")
    failed = certherd("--json", "renew", "--force", env=env, check=False)
    assert failed.code == 1, failed.describe()
    [result] = failed.json()["results"]
    assert result["action"] == "failed"
    assert "Input/output error" in result["error"]
    assert _orders(pebble) == orders + 1
    assert live_version(certherd.config_dir, "kept.test") == 1  # the switch failed
    versions = archive_versions(certherd.archive("kept.test"))
    assert versions.get(2) == {"cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"}
    stored = load_cert(certherd.archive("kept.test") / "cert2.pem")

    # Not forced: the stored version is due at once, and made live without an order.
    again = certherd("--json", "renew").json()["results"]
    assert [(r["action"], r["version"]) for r in again] == [("renewed", 2)], again
    assert "not made live" in again[0]["reason"]
    assert _orders(pebble) == orders + 1  # no second order
    assert live_version(certherd.config_dir, "kept.test") == 2
    assert load_cert(certherd.live("kept.test") / "cert.pem").serial_number == stored.serial_number
    assert live_problems(certherd.config_dir, "kept.test") == []
    listed = certherd("--json", "list").json()["lineages"]
    assert [entry["version"] for entry in listed] == [2]


def test_a_first_issuance_that_fails_after_download_is_kept_for_the_next_issue(
    certherd: Certherd, pebble: PebbleServer, tmp_path: Path
) -> None:
    """The same for a new lineage: `issue` fails at the first change to live/; running
    the same `issue` again makes the stored certificate live, without a new order."""
    orders = _orders(pebble)
    env = fault_environment(tmp_path / "fault", certherd.config_dir, "fail:live:1")
    args = ["--json", "issue", "-d", "first-kept.test", *certherd.http, *certherd.ca]
    failed = certherd(*args, env=env, check=False)
    assert failed.code == 1, failed.describe()
    assert "Input/output error" in failed.stderr
    assert archive_versions(certherd.archive("first-kept.test")).get(1) == {
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "privkey.pem",
    }
    assert _orders(pebble) == orders + 1

    again = certherd(*args).json()["results"]
    assert [(r["action"], r["version"]) for r in again] == [("issued", 1)], again
    assert "not made live" in again[0]["reason"]
    assert _orders(pebble) == orders + 1
    assert live_problems(certherd.config_dir, "first-kept.test") == []
    assert [e["name"] for e in certherd("--json", "list").json()["lineages"]] == ["first-kept.test"]
