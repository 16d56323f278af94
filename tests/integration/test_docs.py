"""The examples of docs/library.md, run as they are against a real Pebble."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from certherd.crypto import describe_certificate, load_pem_chain
from certherd.testing.pebble import PebbleServer

DOC = Path(__file__).parents[2] / "docs" / "library.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2, "docs/library.md should hold the async and the sync example"
    return blocks


def _run(code: str, pebble: PebbleServer, tmp_path: Path, names: str) -> str:
    env = {
        **os.environ,
        "ACME_DIRECTORY": pebble.directory_url,
        "ACME_CA_BUNDLE": str(pebble.ca_bundle),
        "HTTP01_PORT": str(pebble.options.http_port),
        "CERT_NAMES": names,
        "OUT_DIR": str(tmp_path / "certs"),
    }
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("index", [0, 1], ids=["async", "sync"])
def test_library_example_runs(index: int, pebble: PebbleServer, tmp_path: Path) -> None:
    names = f"docs{index}.example.test,www.docs{index}.example.test"
    out = _run(_examples()[index], pebble, tmp_path, names)
    if index == 0:
        assert "account: https://" in out
        assert "issued for" in out
        assert "revoked" in out
        chain = load_pem_chain((tmp_path / "certs" / "fullchain.pem").read_bytes())
        info = describe_certificate(chain[0])
        assert sorted(info.dns_names) == sorted(names.split(","))
        assert pebble.cert_status(info.serial_hex)["Status"] == "Revoked"
        assert (tmp_path / "certs" / "privkey.pem").stat().st_mode & 0o777 == 0o600
    else:
        assert f"names: {names.replace(',', ', ')}" in out
        assert re.search(r"orders of this account: [1-9]", out)
