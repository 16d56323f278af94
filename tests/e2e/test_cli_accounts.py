"""``certherd account ...`` against Pebble, and renewing after the account key was rolled over."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from e2e_helpers import live_version
from e2e_runner import Certherd


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
