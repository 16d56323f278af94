"""Library errors name settings, not CLI flags (issue 11, item 6); the CLI names them
with its flags (or certherd.toml keys) when it prints (``certherd.cli.flags``).

The rule is kept by a scan of every string literal below ``src/certherd`` outside
``cli/``; the errors that name settings say which in ``.settings``.
"""

from __future__ import annotations

import ast
import asyncio
import pickle
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import certherd
from certherd import errors
from certherd.acme.jws import ExternalAccountBinding
from certherd.acme.messages import Challenge, Identifier, Status
from certherd.challenges.base import ChallengeTask
from certherd.challenges.factory import SolverPool
from certherd.challenges.http01 import Http01StandaloneSolver
from certherd.config import resolve_directory_url
from certherd.crypto.encoding import b64url
from certherd.errors import CertherdError, ConfigError
from certherd.manager.outcome import describe_failure
from certherd.manager.request import plan_issue

PACKAGE = Path(certherd.__file__).parent

FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[dqvh](?= [A-Z]|\b(?!-)))")
"""A long flag (``--eab-kid``) or one of certherd's short ones (``-d NAME``, ``-q``)."""

ALLOWED: dict[tuple[str, str], str] = {
    ("dns/lexicon.py", "--help"): "dns-lexicon's own command (`lexicon --help`), not certherd's",
    ("install/schedule.py", "--config-dir"): "the argument vector the timer or cron job runs",
    ("install/schedule.py", "-q"): "the argument vector the timer or cron job runs",
    ("testing/pebble.py", "-h"): "asks a Pebble program which flags it has",
    ("install/apache/control.py", "-d"): "apache2's own flag (its server root)",
    ("install/apache/control.py", "-q"): "a2enmod's own flag (quiet)",
}
"""Flags a library string may name, each with the reason."""


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes (documentation, not messages)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            found.add(id(node.value))  # attribute docstrings, bare strings
    return found


def _library_modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("cli/"):
            continue
        yield where, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _flags_named() -> list[str]:
    """Every flag a string literal of the library names (docstrings aside), as
    ``file:line: flag in 'text'``, but for :data:`ALLOWED`."""
    found = []
    for where, tree in _library_modules():
        documentation = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if id(node) in documentation:
                continue
            for flag in FLAG.findall(node.value):
                if (where, flag) not in ALLOWED:
                    found.append(f"{where}:{node.lineno}: {flag} in {node.value!r}")
    return found


def test_library_messages_name_settings_not_flags() -> None:
    """A program embedding certherd cannot pass ``--eab-kid``: the library names the
    setting (``eab_kid``) and the CLI turns it into its flag when it prints."""
    found = _flags_named()
    assert not found, "library strings that name CLI flags:\n" + "\n".join(found)


def _settings_calls() -> Iterator[tuple[str, ast.Call, tuple[str, ...]]]:
    """Every error (and SettingsText) made with ``settings``, but in errors.py (the
    mechanism itself)."""
    for where, tree in _library_modules():
        if where == "errors.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            called = node.func.id if isinstance(node.func, ast.Name) else called
            if called == "SettingsText":
                yield where, node, tuple(ast.literal_eval(node.args[1]))
            elif called.endswith("Error"):
                for keyword in node.keywords:
                    if keyword.arg == "settings":
                        yield where, node, tuple(ast.literal_eval(keyword.value))


def _literal_text(node: ast.expr) -> str:
    """The constant parts of a message (f-string values left out)."""
    return "".join(
        part.value
        for part in ast.walk(node)
        if isinstance(part, ast.Constant) and isinstance(part.value, str)
    )


def test_every_setting_named_has_its_place_in_the_message_and_a_cli_word() -> None:
    from certherd.cli.flags import SETTINGS

    calls = list(_settings_calls())
    assert len(calls) >= 20, "the scan found too few messages naming settings"
    for where, call, settings in calls:
        assert settings, f"{where}:{call.lineno}: settings=() names nothing"
        text = _literal_text(call.args[0])
        for setting in settings:
            assert "{" + setting + "}" in text, f"{where}:{call.lineno}: no {{{setting}}}"
            assert setting in SETTINGS, f"{where}:{call.lineno}: the CLI has no flag for {setting}"


# -- the mechanism -------------------------------------------------------------------


def test_an_error_shows_setting_names_and_keeps_them_for_another_front_end() -> None:
    error = ConfigError("give {eab_kid} and {eab_hmac_key}", settings=("eab_kid", "eab_hmac_key"))
    assert str(error) == "give eab_kid and eab_hmac_key"
    assert error.settings == ("eab_kid", "eab_hmac_key")
    assert error.naming(lambda s: f"<{s}>") == "give <eab_kid> and <eab_hmac_key>"
    copied = pickle.loads(pickle.dumps(error))  # crosses processes whole
    assert (str(copied), copied.settings, copied.template) == (
        str(error),
        error.settings,
        error.template,
    )
    plain = ConfigError("nothing named")
    assert (plain.settings, plain.naming(str.upper)) == ((), "nothing named")


def test_a_message_must_mark_every_setting_it_declares() -> None:
    with pytest.raises(ValueError, match=r"names no \{ca_bundle\}"):
        ConfigError("give ca_bundle", settings=("ca_bundle",))
    with pytest.raises(TypeError, match="list of strings"):
        ConfigError("give {ca_bundle}", settings="ca_bundle")


def test_an_outcome_error_keeps_the_settings_it_names() -> None:
    text = describe_failure(ConfigError("give {ca_bundle}", settings=("ca_bundle",)))
    assert text == "give ca_bundle"
    assert isinstance(text, errors.SettingsText)
    assert text.naming(lambda s: "--ca-bundle") == "give --ca-bundle"
    assert not isinstance(describe_failure(ConfigError("plain")), errors.SettingsText)


# -- library calls name the setting --------------------------------------------------


def test_an_empty_eab_key_id_names_eab_kid() -> None:
    with pytest.raises(ConfigError) as caught:
        ExternalAccountBinding.from_b64url("", b64url(bytes(32)))
    assert caught.value.settings == ("eab_kid",)
    assert "give eab_kid" in str(caught.value)


def test_a_bad_eab_hmac_key_names_eab_hmac_key() -> None:
    for key in ("", "not base64!"):
        with pytest.raises(ConfigError) as caught:
            ExternalAccountBinding.from_b64url("kid-1", key)
        assert caught.value.settings == ("eab_hmac_key",)
        assert "eab_hmac_key" in str(caught.value)


def test_an_unreadable_ca_bundle_names_ca_bundle(tmp_path: Path) -> None:
    from certherd.acme.client import AcmeClient
    from certherd.crypto.keys import generate_key

    not_pem = tmp_path / "roots.pem"
    not_pem.write_text("not a certificate\n")
    for bundle in (tmp_path / "missing.pem", not_pem):
        with pytest.raises(ConfigError) as caught:
            AcmeClient("https://acme.test/dir", generate_key(), ca_bundle=str(bundle))
        assert caught.value.settings == ("ca_bundle",)
        assert str(caught.value).endswith("give a readable PEM file as ca_bundle")


def test_no_solver_names_solvers() -> None:
    with pytest.raises(ConfigError) as caught:
        SolverPool(environ={}).choice([])
    assert caught.value.settings == ("solvers",)
    assert str(caught.value) == "no way to answer challenges: give at least one solver (solvers)"


def test_a_taken_http01_port_names_the_listen_and_webroot_settings() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        solver = Http01StandaloneSolver(port=taken.getsockname()[1], host="127.0.0.1")
        challenge = Challenge("https://ca.test/chall/1", "http-01", Status.PENDING, token="t" * 22)
        task = ChallengeTask(Identifier.dns("example.test"), challenge, "t" * 22 + ".thumbprint")
        with pytest.raises(ConfigError) as caught:
            asyncio.run(solver.present(task))
    finally:
        taken.close()
    assert caught.value.settings == ("http.listen", "webroot.path")
    assert "choose another as http.listen, or use webroot.path" in str(caught.value)


def test_server_and_ca_together_name_both() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_directory_url("https://acme.test/dir", "letsencrypt")
    assert caught.value.settings == ("server", "ca")
    with pytest.raises(ConfigError) as caught:
        resolve_directory_url(None, "nosuchca")
    assert caught.value.settings == ("ca", "server")


# -- the CLI's words -----------------------------------------------------------------


def _eab_error() -> CertherdError:
    return ConfigError(
        "this CA requires External Account Binding: give {eab_kid} and {eab_hmac_key}",
        settings=("eab_kid", "eab_hmac_key"),
    )


def test_the_cli_names_flags_for_commands_that_take_flags(tmp_path: Path) -> None:
    from certherd.cli.flags import words

    for command in ("issue", "account", "demo"):
        assert words(_eab_error(), command, tmp_path) == (
            "this CA requires External Account Binding: give --eab-kid and --eab-hmac-key-file"
        )
    with pytest.raises(ConfigError) as plan:
        plan_issue(["a.test"], {"a.test": ("b.test",)})
    assert "give --name a.test to replace them" in words(plan.value, "issue", tmp_path)


def test_the_cli_names_certherd_toml_keys_for_apply(tmp_path: Path) -> None:
    from certherd.cli.flags import words

    for command in ("apply",):
        text = words(_eab_error(), command, tmp_path)
        assert text == (
            "this CA requires External Account Binding: give eab_kid in certherd.toml and "
            "eab_hmac_key_file in certherd.toml"
        )
    forced = errors.SettingsText("already covered; {force} reissues now", ("force",))
    assert words(forced, "apply", tmp_path) == "already covered; --force reissues now"


def test_renew_and_run_name_the_key_for_a_lineage_of_certherd_toml(tmp_path: Path) -> None:
    """They work on every lineage: one certherd.toml lists (its key), one ``issue`` made
    (the flag); about no lineage in particular, both."""
    from certherd.cli.flags import words

    error = ConfigError("give the CA's root as {ca_bundle}", settings=("ca_bundle",))
    for command in ("renew", "run"):
        for lineage in (None, "a.test"):
            text = words(error, command, tmp_path, lineage=lineage)
            assert text == "give the CA's root as --ca-bundle"  # no certherd.toml
    toml = tmp_path / "certherd.toml"
    toml.write_text(
        '[defaults]\nserver = "https://acme.test/dir"\nagree_tos = true\nsolver = "http"\n\n'
        '[[certificate]]\ndomains = ["a.test"]\n'
    )
    for command in ("renew", "run"):
        listed = words(error, command, tmp_path, lineage="a.test")
        assert listed == "give the CA's root as ca_bundle in certherd.toml"
        issued = words(error, command, tmp_path, lineage="made-by-issue")
        assert issued == "give the CA's root as --ca-bundle"
        either = words(error, command, tmp_path)
        assert either == "give the CA's root as --ca-bundle (or ca_bundle in certherd.toml)"
    toml.write_text(toml.read_text().replace('"a.test"', '"other.test"'))  # run: read again
    assert words(error, "run", tmp_path, lineage="other.test") == listed
    assert words(error, "run", tmp_path, lineage="a.test") == issued
    toml.write_text("not toml [")
    assert words(error, "renew", tmp_path, lineage="a.test") == either


def test_import_certbot_says_which_command_takes_the_flags(tmp_path: Path) -> None:
    from certherd.cli.flags import words

    error = ConfigError("issue it again with a solver ({solvers})", settings=("solvers",))
    assert words(error, "import-certbot", tmp_path) == (
        "issue it again with a solver (`certherd issue` with --http, --webroot, --tls-alpn, "
        "--dns or --solver-hook)"
    )
