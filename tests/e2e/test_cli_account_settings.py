"""A certificate's settings carry its CA account (issue 11 item 2): ``renew`` creates the
account they describe (contact, terms, External Account Binding) from the settings alone,
with an EAB Pebble; the EAB HMAC key is kept by reference, never in the settings file,
``show --json`` or the output, and read only when an account is created."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from pathlib import Path

from e2e_helpers import live_version
from e2e_runner import Certherd, PebbleFactory

from certherd.testing.pebble import PebbleServer

KID = "kid-settings"


def _eab_pebble(pebble_factory: PebbleFactory) -> tuple[PebbleServer, str]:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return pebble_factory(eab_keys={KID: key}), key


def _contacts(config_dir: Path) -> list[list[str]]:
    return [
        json.loads(path.read_text())["contact"]
        for path in sorted((config_dir / "accounts").glob("*/*/account.json"))
    ]


def _everything_written(certherd: Certherd, *outputs: str) -> str:
    """Every file of the config dir (as text where it is) and the given outputs."""
    texts = list(outputs)
    for path in certherd.config_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_renew_creates_the_account_certherd_toml_describes(
    certherd: Certherd, pebble_factory: PebbleFactory, tmp_path: Path
) -> None:
    server, key = _eab_pebble(pebble_factory)
    runner = certherd.on(server)
    key_file = tmp_path / "eab.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    runner.config_dir.mkdir(parents=True)
    (runner.config_dir / "certherd.toml").write_text(
        f"""[defaults]
server = "{server.directory_url}"
ca_bundle = "{server.ca_bundle}"
email = "toml@example.com"
agree_tos = true
eab_kid = "{KID}"
eab_hmac_key_file = "{key_file}"
solver = "http"
solver_options = {{ listen = "127.0.0.1:{server.options.http_port}" }}

[[certificate]]
domains = ["toml.eab.test"]
"""
    )
    renewed = runner("--json", "renew")
    assert renewed.json()["failed"] == 0, renewed.describe()
    assert live_version(runner.config_dir, "toml.eab.test") == 1
    assert _contacts(runner.config_dir) == [["mailto:toml@example.com"]]
    stored = json.loads((runner.config_dir / "renewal" / "toml.eab.test.json").read_text())
    assert (stored["email"], stored["agree_tos"]) == ("toml@example.com", True)
    assert stored["eab"] == {"kid": KID, "hmac_key": {"file": str(key_file)}}
    shown = runner("--json", "show", "toml.eab.test")
    assert shown.json()["eab"] == {"kid": KID, "hmac_key": {"file": str(key_file)}}
    human = runner("show", "toml.eab.test").stdout
    assert f"key id {KID}, HMAC key from the file {key_file}" in human
    assert key not in _everything_written(
        runner, renewed.stdout, renewed.stderr, shown.stdout, human
    )

    # A CA takes an EAB key once: with the account stored, renew does not read it.
    key_file.unlink()
    again = runner("--json", "renew", "--force")
    assert again.json()["failed"] == 0, again.describe()
    assert live_version(runner.config_dir, "toml.eab.test") == 2


def test_an_issued_lineage_recreates_its_account_from_its_settings(
    certherd: Certherd, pebble_factory: PebbleFactory
) -> None:
    """Issued with flags (the EAB key from an environment variable), then the account is
    lost: ``renew`` alone creates it again, with the contact and EAB the flags gave."""
    server, key = _eab_pebble(pebble_factory)
    runner = certherd.on(server)
    env = {"SHOP_EAB_KEY": key}
    eab = ["--eab-kid", KID, "--eab-hmac-key-env", "SHOP_EAB_KEY"]
    issued = runner(
        "--json", "issue", "-d", "flags.eab.test", *runner.http, *runner.ca, *eab, env=env
    )
    assert issued.json()["results"][0]["action"] == "issued", issued.describe()
    assert _contacts(runner.config_dir) == [["mailto:e2e@example.com"]]
    shown = runner("--json", "show", "flags.eab.test")
    assert shown.json()["eab"] == {"kid": KID, "hmac_key": {"env": "SHOP_EAB_KEY"}}
    assert key not in _everything_written(runner, issued.stdout, issued.stderr, shown.stdout)

    shutil.rmtree(runner.config_dir / "accounts")
    missing = runner("--json", "renew", "--force", check=False)
    assert missing.code == 1, missing.describe()
    [result] = missing.json()["results"]
    assert "eab_hmac_key comes from the environment variable SHOP_EAB_KEY" in result["error"]

    renewed = runner("--json", "renew", "--force", env=env)
    assert renewed.json()["failed"] == 0, renewed.describe()
    assert live_version(runner.config_dir, "flags.eab.test") == 2
    assert _contacts(runner.config_dir) == [["mailto:e2e@example.com"]]
    assert key not in _everything_written(runner, renewed.stdout, renewed.stderr)
