"""The library names settings (``eab_kid``, ``ca_bundle``); the CLI prints them as its
user sets them (issue 11, item 6): flags for ``issue``, certherd.toml keys for
``apply``; ``renew`` (and ``run``) with a certherd.toml name its key for the lineages it
lists and the flag for those ``issue`` made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e_runner import Certherd

from certherd.testing.pebble import PebbleServer

EAB_KID = "kid-names"


@pytest.fixture(scope="module")
def eab_pebble(pebble_factory: Any) -> PebbleServer:
    """A Pebble that requires External Account Binding."""
    server: PebbleServer = pebble_factory(eab_keys={EAB_KID: "A" * 43})
    return server


def _config(server: PebbleServer, *, ca_bundle: bool = True) -> str:
    listen = f"127.0.0.1:{server.options.http_port}"
    lines = [
        "[defaults]",
        f"server = {json.dumps(server.directory_url)}",
        f"ca_bundle = {json.dumps(str(server.ca_bundle))}" if ca_bundle else "",
        "agree_tos = true",
        'solver = "http"',
        f"solver_options = {{ listen = {json.dumps(listen)} }}",
        "",
        "[[certificate]]",
        'domains = ["names.setting.test"]',
    ]
    return "\n".join(lines) + "\n"


def _write_config(certherd: Certherd, text: str) -> Path:
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    path = certherd.config_dir / "certherd.toml"
    path.write_text(text)
    return path


def test_issue_names_the_eab_flags(certherd: Certherd, eab_pebble: PebbleServer) -> None:
    runner = certherd.on(eab_pebble)
    result = runner("issue", "-d", "eab.setting.test", *runner.http, *runner.ca, check=False)
    assert result.code == 2, result.describe()
    [line] = result.stderr.splitlines()
    assert line == (
        "certherd: error: this CA requires External Account Binding: give --eab-kid and "
        "--eab-hmac-key-file with the values from your CA account"
    )


def test_apply_names_the_certherd_toml_keys(certherd: Certherd, eab_pebble: PebbleServer) -> None:
    _write_config(certherd, _config(eab_pebble))
    result = certherd("--json", "apply", check=False)
    assert result.code == 1, result.describe()
    [failed] = result.json()["results"]
    words = "give eab_kid in certherd.toml and eab_hmac_key_file in certherd.toml with the values"
    assert words in failed["error"]
    assert words in result.stderr  # the failure, also said on stderr with --json
    assert "--eab" not in result.stdout + result.stderr  # flags this user never used


def test_issue_without_the_ca_bundle_names_the_flag(certherd: Certherd) -> None:
    server = certherd.server
    ca = ["--server", server.directory_url, "--agree-tos"]
    result = certherd("issue", "-d", "tls.setting.test", *certherd.http, *ca, check=False)
    assert result.code == 1, result.describe()
    [line] = result.stderr.splitlines()
    assert "TLS verification" in line
    assert line.endswith("give the CA's root as --ca-bundle if it is a private CA"), line


def test_renew_names_the_certherd_toml_key_for_a_lineage_of_the_file(
    certherd: Certherd,
) -> None:
    """A lineage of certherd.toml whose ca_bundle was taken out: ``renew`` names the key
    there, not the flag (it would for a lineage ``issue`` made)."""
    _write_config(certherd, _config(certherd.server))
    assert certherd("--json", "apply").json()["failed"] == 0
    _write_config(certherd, _config(certherd.server, ca_bundle=False))
    result = certherd("--json", "renew", "--force", check=False)
    assert result.code == 1, result.describe()
    [failed] = result.json()["results"]
    assert failed["error"].endswith(
        "give the CA's root as ca_bundle in certherd.toml if it is a private CA"
    ), failed["error"]
    assert "--ca-bundle" not in result.stdout + result.stderr


def test_a_ca_bundle_that_is_not_pem_names_the_flag_or_the_key(
    certherd: Certherd, tmp_path: Path
) -> None:
    not_pem = tmp_path / "roots.pem"
    not_pem.write_text("not a certificate\n")
    server = certherd.server
    ca = ["--server", server.directory_url, "--ca-bundle", str(not_pem), "--agree-tos"]
    result = certherd("issue", "-d", "pem.setting.test", *certherd.http, *ca, check=False)
    assert result.code == 2, result.describe()
    [line] = result.stderr.splitlines()
    assert line.endswith("give a readable PEM file as --ca-bundle"), line
    _write_config(certherd, _config(server).replace(str(server.ca_bundle), str(not_pem)))
    applied = certherd("--json", "apply", check=False)
    assert applied.code == 1, applied.describe()
    [failed] = applied.json()["results"]
    assert failed["error"].endswith("give a readable PEM file as ca_bundle in certherd.toml")
