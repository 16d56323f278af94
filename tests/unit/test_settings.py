"""One settings model for a certificate (issue 11 item 2).

certherd.toml, the flags of ``issue`` and the Certbot import all produce the same
:class:`~certherd.settings.LineageSettings`, which carries the CA and account details
(contact, terms of service, External Account Binding with its key by reference); the
manager derives how to reach the CA from it alone; settings stored before those fields
existed still load.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from test_certbot_import import ACCOUNT_ID, NOW, SERVER, CertbotDir

from certherd.challenges.spec import SecretRef, SolverSpec
from certherd.cli.issue import issue, issue_settings
from certherd.config import load_config_file
from certherd.errors import ConfigError
from certherd.manager.accounts import ca_options
from certherd.manager.service import Manager
from certherd.migrate.certbot_import import read_lineage
from certherd.settings import EabSettings, HookSettings, LineageSettings
from certherd.storage.memory import MemoryStorage

EAB_KEY = "c2VjcmV0LWVhYi1obWFjLWtleS1vZi10aGUtdGVzdA"  # base64url, as CAs show it


def from_flags(*args: str) -> LineageSettings:
    """The settings ``certherd issue ARGS`` would obtain (its flags parsed by click)."""
    context = issue.make_context("issue", list(args))
    params = dict(context.params)
    params.pop("force")
    settings: LineageSettings = issue_settings(params)
    return settings


def from_toml(tmp_path: Path, text: str) -> LineageSettings:
    path = tmp_path / "certherd.toml"
    path.write_text(text)
    path.chmod(0o600)
    (settings,) = load_config_file(path).certificates
    return settings


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "roots.pem"
    path.write_text("the CA's roots\n")
    return path


def test_the_three_producers_yield_the_same_settings(tmp_path: Path, bundle: Path) -> None:
    certbot = CertbotDir(tmp_path / "letsencrypt")
    regr = certbot.root / "accounts" / "acme.example.test" / "directory" / ACCOUNT_ID / "regr.json"
    registration = json.loads(regr.read_text())
    registration["body"] = {"contact": ["mailto:ops@shop.test"]}
    regr.write_text(json.dumps(registration))
    certbot.lineage(
        "shop.test",
        "authenticator = webroot\nwebroot_path = /var/www/shop,\nkey_type = ecdsa\n"
        "reuse_key = True\npreferred_chain = ISRG Root X1\n"
        "renew_hook = systemctl reload nginx\n",
        names=["shop.test", "www.shop.test"],
    )
    conf = certbot.root / "renewal" / "shop.test.conf"
    imported = read_lineage(certbot.root, conf, ca_bundle=str(bundle), now=NOW).settings

    configured = from_toml(
        tmp_path,
        f"""
[defaults]
server = "{SERVER}"
ca_bundle = "{bundle}"
email = "ops@shop.test"
agree_tos = true

[[certificate]]
domains = ["shop.test", "www.shop.test"]
solver = "webroot"
solver_options = {{ path = "/var/www/shop" }}
reuse_key = true
preferred_chain = "ISRG Root X1"
deploy_hooks = ["systemctl reload nginx"]
""",
    )
    flagged = from_flags(
        *("-d", "shop.test", "-d", "www.shop.test", "--webroot", "/var/www/shop"),
        *("--reuse-key", "--preferred-chain", "ISRG Root X1"),
        *("--deploy-hook", "systemctl reload nginx"),
        *("--server", SERVER, "--ca-bundle", str(bundle)),
        *("--email", "ops@shop.test", "--agree-tos"),
    )
    expected = LineageSettings(
        name="shop.test",
        names=("shop.test", "www.shop.test"),
        directory_url=SERVER,
        solvers=(SolverSpec("webroot", {"path": "/var/www/shop"}),),
        ca_bundle=str(bundle),
        reuse_key=True,
        preferred_chain="ISRG Root X1",
        hooks=HookSettings(deploy=("systemctl reload nginx",)),
        email="ops@shop.test",
        agree_tos=True,
    )
    assert configured == expected
    assert flagged == expected
    assert imported == expected
    # ... and the CA is reached the same way whichever produced them.
    assert ca_options(configured) == ca_options(flagged) == ca_options(imported)


def test_eab_from_the_file_and_from_flags_is_the_same_reference(
    tmp_path: Path, bundle: Path
) -> None:
    key_file = tmp_path / "eab.key"
    key_file.write_text(EAB_KEY + "\n")
    key_file.chmod(0o600)
    configured = from_toml(
        tmp_path,
        f"""
[defaults]
server = "{SERVER}"
email = "ops@shop.test"
agree_tos = true
eab_kid = "kid-1"
eab_hmac_key_file = "{key_file}"

[[certificate]]
domains = ["shop.test"]
solver = "http"
solver_options = {{ listen = "80" }}
""",
    )
    flagged = from_flags(
        *("-d", "shop.test", "--http", "--server", SERVER, "--email", "ops@shop.test"),
        *("--agree-tos", "--eab-kid", "kid-1", "--eab-hmac-key-file", str(key_file)),
    )
    assert configured.eab == EabSettings("kid-1", SecretRef("file", str(key_file)))
    assert flagged == configured
    assert flagged == LineageSettings.from_json(flagged.to_json(), "renewal/shop.test.json")
    options = ca_options(flagged)
    assert options.eab is None, "read only when an account is created"
    binding = options.binding()
    assert binding is not None
    assert (binding.kid, binding.hmac_key) == ("kid-1", b"secret-eab-hmac-key-of-the-test")


def test_the_eab_key_is_stored_and_shown_only_by_reference(tmp_path: Path) -> None:
    key_file = tmp_path / "eab.key"
    key_file.write_text(EAB_KEY)
    by_file = from_flags(
        *("-d", "a.test", "--http", "--server", SERVER),
        *("--eab-kid", "kid-1", "--eab-hmac-key-file", str(key_file)),
    )
    stored = by_file.to_json()
    assert EAB_KEY not in stored.decode()
    assert json.loads(stored)["eab"] == {"kid": "kid-1", "hmac_key": {"file": str(key_file)}}

    # Written in certherd.toml: stored as a reference to the file, read again from it.
    inline = from_toml(
        tmp_path,
        f'[defaults]\nserver = "{SERVER}"\neab_kid = "kid-1"\neab_hmac_key = "{EAB_KEY}"\n'
        '[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\n',
    )
    assert inline.eab is not None
    assert inline.eab.value == EAB_KEY, "in memory, the value"
    for shown in (inline.to_json().decode(), json.dumps(inline.shown()), repr(inline)):
        assert EAB_KEY not in shown
    assert json.loads(inline.to_json())["eab"]["hmac_key"] == {
        "config": str(tmp_path / "certherd.toml")
    }

    # Given as a value (a library caller): kept in the 0600 settings file, never shown.
    given = LineageSettings(
        "b.test",
        ("b.test",),
        SERVER,
        (SolverSpec("http"),),
        eab=EabSettings("kid-1", SecretRef("value"), EAB_KEY),
    )
    assert LineageSettings.from_json(given.to_json(), "renewal/b.test.json") == given
    assert EAB_KEY in given.to_json().decode()
    assert EAB_KEY not in json.dumps(given.shown()) + repr(given)


def test_a_key_written_in_certherd_toml_is_read_from_it_by_renew(tmp_path: Path) -> None:
    """No ``configured`` plumbing: the manager reads the file the reference names."""
    settings = from_toml(
        tmp_path,
        f'[defaults]\nserver = "{SERVER}"\neab_kid = "kid-1"\neab_hmac_key = "{EAB_KEY}"\n'
        '[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\n',
    )
    stored = LineageSettings.from_json(settings.to_json(), "renewal/a.test.json")
    assert stored.eab is not None
    assert stored.eab.value == ""
    manager = Manager(MemoryStorage())
    binding = manager.ca_for(stored).binding()
    assert binding is not None
    assert binding.hmac_key == b"secret-eab-hmac-key-of-the-test"
    (tmp_path / "certherd.toml").write_text(
        f'[defaults]\nserver = "{SERVER}"\n[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\n'
    )
    with pytest.raises(ConfigError, match="no longer gives it") as caught:
        Manager(MemoryStorage()).ca_for(stored).binding()
    assert EAB_KEY not in str(caught.value)


def test_an_eab_key_from_the_environment(tmp_path: Path) -> None:
    settings = from_toml(
        tmp_path,
        f'[defaults]\nserver = "{SERVER}"\neab_kid = "kid-1"\n'
        'eab_hmac_key = { env = "SHOP_EAB_KEY" }\n'
        '[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\n',
    )
    assert settings.eab == EabSettings("kid-1", SecretRef("env", "SHOP_EAB_KEY"))
    options = ca_options(settings, environ={"SHOP_EAB_KEY": EAB_KEY})
    assert options.binding() is not None
    with pytest.raises(ConfigError, match="SHOP_EAB_KEY, which is not set"):
        ca_options(settings, environ={}).binding()


SETTINGS_BEFORE_ACCOUNT_DETAILS = {
    "account": "default",
    "allow_http": False,
    "ca_bundle": None,
    "directory_url": SERVER,
    "hooks": {"deploy": ["true"], "failure": [], "post": [], "pre": []},
    "key_type": "ec256",
    "name": "old.test",
    "names": ["old.test"],
    "preferred_chain": None,
    "profile": None,
    "reuse_key": False,
    "schema": 1,
    "solvers": [{"kind": "http", "names": [], "options": {"listen": "80"}}],
}


def test_settings_stored_before_the_account_details_load() -> None:
    raw = json.dumps(SETTINGS_BEFORE_ACCOUNT_DETAILS).encode()
    settings = LineageSettings.from_json(raw, "renewal/old.test.json")
    assert (settings.email, settings.agree_tos, settings.eab) == (None, False, None)
    assert settings.hooks.deploy == ("true",)
    again = json.loads(settings.to_json())
    assert {k: v for k, v in again.items() if k in SETTINGS_BEFORE_ACCOUNT_DETAILS} == (
        SETTINGS_BEFORE_ACCOUNT_DETAILS
    )


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ('eab_kid = "kid-1"', "set eab_hmac_key_file"),
        ('eab_hmac_key_file = "/k"', 'set eab_kid = "..."'),
        (f'eab_kid = "k"\neab_hmac_key_file = "/k"\neab_hmac_key = "{EAB_KEY}"', "not both"),
        ('eab_kid = "k"\neab_hmac_key = "not base64!"', "is not base64url"),
        ('eab_kid = "k"\neab_hmac_key = { vault = "x" }', '{ env = "VARIABLE" }'),
    ],
)
def test_eab_mistakes_in_certherd_toml_name_the_line(
    tmp_path: Path, defaults: str, message: str
) -> None:
    path = tmp_path / "certherd.toml"
    path.write_text(
        f"[defaults]\n{defaults}\n\n[[certificate]]\ndomains = ['a.test']\nsolver = 'http'\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:"), text
    assert int(text.split(":")[1]) in range(2, 5), text
    assert message in text
    assert EAB_KEY not in text


def test_a_certificate_may_have_its_own_account_details(tmp_path: Path) -> None:
    settings = from_toml(
        tmp_path,
        f'[defaults]\nemail = "ops@example.com"\nagree_tos = false\neab_kid = "shared"\n'
        'eab_hmac_key = { env = "SHARED_EAB" }\n\n'
        f'[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\nserver = "{SERVER}"\n'
        'account = "zerossl"\nemail = "zero@example.com"\nagree_tos = true\n'
        'eab_kid = "own"\neab_hmac_key = { file = "/etc/certherd/zerossl.eab" }\n',
    )
    assert (settings.account, settings.email, settings.agree_tos) == (
        "zerossl",
        "zero@example.com",
        True,
    )
    assert settings.eab == EabSettings("own", SecretRef("file", "/etc/certherd/zerossl.eab"))


def _params(settings: Any) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in ("directory_url", "email", "agree_tos", "account")}


def test_the_manager_reaches_the_ca_from_the_settings_alone(tmp_path: Path) -> None:
    """What ``known_cas`` did (certherd.toml's email, terms and EAB for renew): the
    settings carry them, so any manager derives the same options."""
    settings = LineageSettings(
        "a.test",
        ("a.test",),
        SERVER,
        (SolverSpec("http"),),
        account="shop",
        email="ops@example.com",
        agree_tos=True,
        eab=EabSettings("kid-1", SecretRef("env", "SHOP_EAB")),
    )
    manager = Manager(MemoryStorage())
    manager.solvers.environ["SHOP_EAB"] = EAB_KEY
    options = manager.ca_for(settings)
    assert _params(options) == _params(settings)
    assert not hasattr(manager, "known_cas")
    assert not hasattr(manager, "configured")
    binding = options.binding()
    assert binding is not None
    assert binding.kid == "kid-1"


def test_a_key_in_certherd_toml_is_found_for_a_lineage_kept_under_another_name(
    tmp_path: Path,
) -> None:
    """apply keeps a wildcard-first entry under the name of the lineage that already
    holds its names: its secrets are still read from the file's entry."""
    settings = from_toml(
        tmp_path,
        f'[defaults]\nserver = "{SERVER}"\neab_kid = "kid-1"\neab_hmac_key = "{EAB_KEY}"\n'
        '[[certificate]]\ndomains = ["*.a.test", "a.test"]\nsolver = "dns"\n'
        'solver_options = { provider = "exec", command = "/bin/true" }\n',
    )
    stored = LineageSettings.from_json(settings.to_json(), "renewal/a.test.json")
    kept = dataclasses.replace(stored, name="a.test")
    assert settings.name != kept.name
    binding = Manager(MemoryStorage()).ca_for(kept).binding()
    assert binding is not None
    assert binding.hmac_key == b"secret-eab-hmac-key-of-the-test"


def test_settings_of_the_wrong_type_are_damaged() -> None:
    raw = dict(SETTINGS_BEFORE_ACCOUNT_DETAILS, eab={"kid": "k", "hmac_key": "inline"})
    with pytest.raises(ConfigError, match=r"renewal/old\.test\.json is damaged"):
        LineageSettings.from_json(json.dumps(raw).encode(), "renewal/old.test.json")


def test_a_key_written_in_a_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "certherd.toml"
    path.write_text(
        f'[defaults]\nserver = "{SERVER}"\neab_kid = "kid-1"\neab_hmac_key = "{EAB_KEY}"\n'
        '[[certificate]]\ndomains = ["a.test"]\nsolver = "http"\n'
    )
    path.chmod(0o644)
    (warning,) = load_config_file(path).warnings
    assert "defaults.eab_hmac_key" in warning
    assert "chmod 600" in warning
    assert EAB_KEY not in warning
    path.chmod(0o600)
    assert load_config_file(path).warnings == ()
