"""The examples of docs/library.md, run as they are against a real Pebble."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from certherd.crypto import describe_certificate, load_pem_chain
from certherd.storage.filesystem import FilesystemStorage
from certherd.testing.pebble import PebbleServer

DOC = Path(__file__).parents[2] / "docs" / "library.md"


def _blocks() -> list[str]:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return blocks


def _examples() -> list[str]:
    """The async and the sync example of the ACME protocol layer."""
    blocks = [block for block in _blocks() if "AcmeClient" in block]
    assert len(blocks) == 2, "docs/library.md should hold the async and the sync example"
    return blocks


def _entry_example(call: str) -> str:
    """The example of ``certherd.Certherd`` making ``call``: at most ten lines (issue 11)."""
    [block] = [b for b in _blocks() if "Certherd" in b and call in b]
    assert len(block.strip().splitlines()) <= 10, block
    return block


def _run(
    code: str, pebble: PebbleServer, tmp_path: Path, names: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **extra,
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
    return result


@pytest.mark.parametrize("index", [0, 1], ids=["async", "sync"])
def test_library_example_runs(index: int, pebble: PebbleServer, tmp_path: Path) -> None:
    names = f"docs{index}.example.test,www.docs{index}.example.test"
    out = _run(_examples()[index], pebble, tmp_path, names).stdout
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


def _live_in_storage(
    pebble: PebbleServer, config_dir: Path, lineage: str, names: list[str]
) -> None:
    """The lineage's certificate is in the config dir, live, for ``names``, valid now, and
    the CA counts it as issued and not revoked."""
    version = asyncio.run(FilesystemStorage(config_dir).live_version(lineage))
    assert version == 1
    live = config_dir / "live" / lineage
    chain = load_pem_chain((live / "fullchain.pem").read_bytes())
    info = describe_certificate(chain[0])
    assert sorted(info.dns_names) == sorted(names)
    assert info.not_before <= dt.datetime.now(dt.UTC) < info.not_after
    assert (live / "privkey.pem").stat().st_mode & 0o077 == 0
    assert pebble.cert_status(info.serial_hex)["Status"] == "Valid"


def test_renew_example_does_what_certherd_renew_does(pebble: PebbleServer, tmp_path: Path) -> None:
    """The `certherd renew` example on a config dir whose certherd.toml lists a
    certificate not yet obtained: it is obtained, live, and the program exits 0."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "certherd.toml").write_text(
        "[defaults]\n"
        f'server = "{pebble.directory_url}"\n'
        f'ca_bundle = "{pebble.ca_bundle}"\n'
        'email = "admin@certherd.test"\n'
        "agree_tos = true\n"
        'solver = "http"\n'
        f'solver_options = {{ listen = "127.0.0.1:{pebble.options.http_port}" }}\n'
        "\n[[certificate]]\n"
        'domains = ["docsrenew.example.test", "www.docsrenew.example.test"]\n'
    )
    code = _entry_example("certherd.renew()")
    result = _run(code, pebble, tmp_path, "", CERTHERD_DIR=str(config_dir))
    assert result.stdout.startswith("docsrenew.example.test renewed no certificate yet")
    names = ["docsrenew.example.test", "www.docsrenew.example.test"]
    _live_in_storage(pebble, config_dir, "docsrenew.example.test", names)
    again = _run(code, pebble, tmp_path, "", CERTHERD_DIR=str(config_dir))
    assert again.stdout.startswith("docsrenew.example.test not-due")


def test_issue_example_puts_a_live_certificate_in_managed_storage(
    pebble: PebbleServer, tmp_path: Path
) -> None:
    """The `certherd issue` example, with Pebble's directory, test names and the port
    Pebble validates http-01 on in place of the documented ones (each found once)."""
    code = _entry_example("certherd.issue(")
    local_names = '"docsissue.example.test", "www.docsissue.example.test"'
    replacements = {
        'ca="letsencrypt-staging"': f"directory_url={pebble.directory_url!r}",
        '"example.com", "www.example.com"': local_names,
        '"listen": "80"': f'"listen": "127.0.0.1:{pebble.options.http_port}"',
    }
    for documented, local in replacements.items():
        assert code.count(documented) == 1, documented
        code = code.replace(documented, local)
    config_dir = tmp_path / "config"
    # The example trusts the system's roots: here they are Pebble's (OpenSSL reads
    # SSL_CERT_FILE for the default trust store).
    env = {"CERTHERD_DIR": str(config_dir), "SSL_CERT_FILE": str(pebble.ca_bundle)}
    result = _run(code, pebble, tmp_path, "", **env)
    assert result.stdout.strip() == "docsissue.example.test issued version 1"
    names = ["docsissue.example.test", "www.docsissue.example.test"]
    _live_in_storage(pebble, config_dir, "docsissue.example.test", names)
    again = _run(code, pebble, tmp_path, "", **env)
    assert again.stdout.strip() == "docsissue.example.test not-due version 1"
