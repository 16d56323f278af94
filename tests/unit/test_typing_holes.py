"""Typing holes a library user falls into (issue 11 item 10).

A misspelt import from a lazily loaded package must be a type error, not an ``Any``;
a bare string where a list of names or contacts is expected must be refused, not
read one character per name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from certherd.acme.client import contact_uris
from certherd.acme.messages import identifiers_from
from certherd.crypto.csr import build_csr
from certherd.crypto.keys import KeyType, generate_key
from certherd.names import normalize_names

SNIPPET = """\
from certherd.acme import AcmeClinet
from certherd.crypto import build_csrr
from certherd.manager import obtain_certificat
from certherd.challenges import Dns01Solvr
from certherd.acme import AcmeClient

client: AcmeClient | None = None
"""


def test_mypy_refuses_a_misspelt_import_from_a_lazy_package(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    cache = tmp_path / "mypy-cache"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--follow-imports=silent",
            "--cache-dir",
            str(cache),
            str(snippet),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for misspelt in ("AcmeClinet", "build_csrr", "obtain_certificat", "Dns01Solvr"):
        assert f'"{misspelt}"' in result.stdout, result.stdout
    # The correct import (line 5) and its use type-check.
    assert result.stdout.count(": error:") == 4, result.stdout


def test_the_lazy_names_still_load_at_run_time() -> None:
    import certherd.acme as acme

    assert acme.AcmeClient.__name__ == "AcmeClient"
    with pytest.raises(AttributeError, match="AcmeClinet"):
        acme.AcmeClinet  # noqa: B018


@pytest.mark.parametrize(
    "call",
    [
        lambda: normalize_names("example.com"),
        lambda: identifiers_from("example.com"),
        lambda: contact_uris("admin@example.com"),
        lambda: build_csr(generate_key(KeyType.EC256), "example.com"),
        lambda: build_csr(generate_key(KeyType.EC256), ["example.com"], "192.0.2.1"),
    ],
    ids=["names", "identifiers", "contact", "csr-dns", "csr-ip"],
)
def test_a_bare_string_for_a_list_is_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(TypeError, match=r"a list of strings, not the single string .*write \["):
        call()
