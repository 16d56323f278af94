"""``certherd account ...`` against Pebble, and renewing after the account key was rolled over."""

from __future__ import annotations

import shutil
import signal
import stat
from pathlib import Path

from e2e_helpers import fault_environment, live_version
from e2e_runner import Certherd

from certherd.crypto.keys import generate_key, private_key_to_pem


def _account_folder(config_dir: Path) -> Path:
    [folder] = [p.parent for p in (config_dir / "accounts").glob("*/*/key.pem")]
    return folder


def test_register_show_update_rollover_then_renew(certherd: Certherd, tmp_path: Path) -> None:
    registered = certherd("--json", "account", "register", *certherd.ca).json()
    assert registered["status"] == "valid"
    assert registered["contact"] == ["mailto:e2e@example.com"]
    assert registered["url"].startswith(certherd.server.directory_url.removesuffix("/dir"))
    folder = _account_folder(certherd.config_dir)
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
    url = registered["url"]

    again = certherd("--json", "account", "register", *certherd.ca).json()
    assert again["url"] == url  # the stored key finds the same account

    shown = certherd("--json", "account", "show", *certherd.ca).json()
    assert (shown["url"], shown["status"]) == (url, "valid")

    ca = [flag for flag in certherd.ca if flag not in ("--email", "e2e@example.com")]
    updated = certherd("--json", "account", "update", *ca, "--email", "new@example.com").json()
    assert updated["contact"] == ["mailto:new@example.com"]
    shown = certherd("--json", "account", "show", *ca).json()
    assert shown["contact"] == ["mailto:new@example.com"]

    certherd.issue("account.test")
    old_key = (folder / "key.pem").read_bytes()
    before_rollover = tmp_path / "before-rollover"
    shutil.copytree(certherd.config_dir, before_rollover, symlinks=True)

    rolled = certherd("--json", "account", "rollover", *ca).json()
    assert (rolled["url"], rolled["status"]) == (url, "valid")
    assert _account_folder(certherd.config_dir) == folder
    assert (folder / "key.pem").read_bytes() != old_key
    assert sorted(p.name for p in folder.iterdir()) == ["account.json", "key.pem"]
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600

    # The old key no longer controls the account.
    stale = certherd.elsewhere(before_rollover)("account", "show", *ca, check=False)
    assert stale.code == 1, stale.describe()
    [line] = stale.stderr.splitlines()
    assert line.startswith("certherd: error:")

    renewed = certherd("--json", "renew", "--force").json()["results"]
    assert [(r["action"], r["version"]) for r in renewed] == [("renewed", 2)]
    assert live_version(certherd.config_dir, "account.test") == 2
    shown = certherd("--json", "account", "show", *ca).json()
    assert shown["url"] == url  # the renewal used the account, did not make a new one
    assert len(list((certherd.config_dir / "accounts").glob("*/*/key.pem"))) == 1


def test_deactivated_account_cannot_issue(certherd: Certherd) -> None:
    certherd("account", "register", *certherd.ca)
    gone = certherd("--json", "account", "deactivate", "--yes", *certherd.ca).json()
    assert gone["status"] == "deactivated"
    refused = certherd.issue("deactivated.test", check=False)
    assert refused.code == 1, refused.describe()
    [line] = refused.stderr.splitlines()
    assert line.startswith("certherd: error:")
    assert not certherd.live("deactivated.test").exists()


def test_a_first_issue_needs_the_terms_agreed(certherd: Certherd) -> None:
    ca = [flag for flag in certherd.ca if flag != "--agree-tos"]
    refused = certherd("issue", "-d", "tos.test", *certherd.http, *ca, check=False)
    assert refused.code == 2, refused.describe()
    [line] = refused.stderr.splitlines()
    assert "--agree-tos" in line
    assert not (certherd.config_dir / "accounts").exists()


def test_account_commands_without_an_account_say_how_to_make_one(certherd: Certherd) -> None:
    missing = certherd("account", "show", *certherd.ca, check=False)
    assert missing.code in (1, 2), missing.describe()
    [line] = missing.stderr.splitlines()
    assert line.startswith("certherd: error:")
    assert "account register" in line, line  # not just the storage key that is missing


def _kill_before_promoting(certherd: Certherd, fault: Path, ca: list[str]) -> bytes:
    """Run a rollover killed right after the CA accepted the new key, before it was stored
    as the account key (the second file change under accounts/: the first writes
    key-next.pem). Returns the new key, which then exists only in key-next.pem."""
    env = fault_environment(fault, certherd.config_dir, "kill:accounts:2")
    killed = certherd("account", "rollover", *ca, env=env, check=False)
    assert killed.code == -signal.SIGKILL, killed.describe()
    folder = _account_folder(certherd.config_dir)
    return (folder / "key-next.pem").read_bytes()


def test_a_rollover_run_again_keeps_the_key_the_ca_accepted(
    certherd: Certherd, tmp_path: Path
) -> None:
    """Issue 9 item 7: the CA accepted keyChange, the run died before storing the new
    key; running `account rollover` again must not replace key-next.pem with yet another
    key (the account would be lost), but find that the CA knows it and store it."""
    url = certherd("--json", "account", "register", *certherd.ca).json()["url"]
    folder = _account_folder(certherd.config_dir)
    old_key = (folder / "key.pem").read_bytes()
    new_key = _kill_before_promoting(certherd, tmp_path / "fault", certherd.ca)
    assert (folder / "key.pem").read_bytes() == old_key  # the CA knows only new_key now

    again = certherd("--json", "account", "rollover", *certherd.ca).json()
    assert (again["url"], again["status"], again["resumed"]) == (url, "valid", True)
    assert (folder / "key.pem").read_bytes() == new_key
    # The killed run's temporary file of key.pem is cleared too (issue 10 item 9).
    assert sorted(p.name for p in folder.iterdir()) == ["account.json", "key.pem"]
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600

    # The account works with the stored key: show, issue, and a further rollover.
    assert certherd("--json", "account", "show", *certherd.ca).json()["url"] == url
    certherd.issue("resumed-rollover.test")
    assert live_version(certherd.config_dir, "resumed-rollover.test") == 1
    third = certherd("--json", "account", "rollover", *certherd.ca).json()
    assert (third["url"], third["resumed"]) == (url, False)
    assert (folder / "key.pem").read_bytes() not in (old_key, new_key)
    assert certherd("--json", "account", "show", *certherd.ca).json()["url"] == url


def test_an_issue_after_an_interrupted_rollover_uses_the_accepted_key(
    certherd: Certherd, tmp_path: Path
) -> None:
    """Not only `account rollover`: any command that opens the account settles an
    interrupted rollover first, so renewals keep working."""
    url = certherd("--json", "account", "register", *certherd.ca).json()["url"]
    new_key = _kill_before_promoting(certherd, tmp_path / "fault", certherd.ca)
    certherd.issue("after-rollover.test")
    folder = _account_folder(certherd.config_dir)
    assert (folder / "key.pem").read_bytes() == new_key
    assert not (folder / "key-next.pem").exists()
    assert certherd("--json", "account", "show", *certherd.ca).json()["url"] == url


def test_a_pending_key_the_ca_never_saw_is_used_not_replaced(certherd: Certherd) -> None:
    """A rollover that died before asking the CA left key-next.pem: the next rollover
    offers that same key (a pending key is never overwritten)."""
    url = certherd("--json", "account", "register", *certherd.ca).json()["url"]
    folder = _account_folder(certherd.config_dir)
    pending = generate_key("ec256")
    (folder / "key-next.pem").write_bytes(private_key_to_pem(pending))
    (folder / "key-next.pem").chmod(0o600)
    rolled = certherd("--json", "account", "rollover", *certherd.ca).json()
    assert (rolled["url"], rolled["resumed"]) == (url, False)
    assert (folder / "key.pem").read_bytes() == private_key_to_pem(pending)
    assert not (folder / "key-next.pem").exists()
    assert certherd("--json", "account", "show", *certherd.ca).json()["url"] == url
