"""``certherd check`` (issue 14 item 4) against real servers: Pebble resolving through
BIND9, nginx serving a webroot on Pebble's http-01 port, RFC 2136 updates to BIND9 with
its TSIG key. All good: exit 0, one line each. A webroot nginx does not serve, a wrong
TSIG key, a CA that is down: the line says so, exit 1.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from e2e_runner import Certherd, PebbleFactory, Result
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import start_or_fail
from tests.servers.nginx import NginxServer

from certherd.testing.pebble import PebbleServer

ZONE = "certherd.test."
WILD = "*.wild.certherd.test"


class Servers(NamedTuple):
    bind9: Bind9Server
    pebble: PebbleServer
    nginx: NginxServer
    site_root: Path


@pytest.fixture(scope="module")
def servers(pebble_factory: PebbleFactory) -> Iterator[Servers]:
    bind9 = start_or_fail(Bind9Server((ZONE,)))
    site_root = Path(tempfile.mkdtemp(prefix="certherd-e2e-check-"))
    site_root.chmod(0o755)  # nginx workers (nobody) read it
    nginx: NginxServer | None = None
    try:
        host, port = bind9.address
        pebble = pebble_factory(
            dns_server=f"{host}:{port}", start_challtestsrv=False, authz_reuse_percent=0
        )
        nginx = start_or_fail(NginxServer(site_root, pebble.options.http_port))
        yield Servers(bind9, pebble, nginx, site_root)
    finally:
        if nginx is not None:
            nginx.stop()
        bind9.stop()
        shutil.rmtree(site_root, ignore_errors=True)


@pytest.fixture
def runner(servers: Servers, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    certherd = Certherd(tmp_path / "config", servers.pebble, scratch)
    yield certherd
    certherd.stop_all()


def secrets_of(servers: Servers, secret: str | None = None) -> dict[str, str]:
    return {
        "CERTHERD_RFC2136_KEY_NAME": servers.bind9.tsig_key_name,
        "CERTHERD_RFC2136_KEY_SECRET": secret or servers.bind9.tsig_secret,
        "CERTHERD_RFC2136_ALGORITHM": servers.bind9.tsig_algorithm,
    }


def issue_both(runner: Certherd, servers: Servers) -> None:
    """An IP address by webroot (nginx serves it), a wildcard by RFC 2136."""
    host, port = servers.bind9.address
    runner("issue", "-d", "127.0.0.1", "--webroot", str(servers.site_root), *runner.ca)
    runner(
        "issue", "-d", WILD,
        "--dns", "rfc2136",
        "--dns-opt", f"server={host}", "--dns-opt", f"port={port}",
        "--dns-opt", f"zone={ZONE}", "--dns-resolver", f"{host}:{port}",
        *runner.ca,
        env=secrets_of(servers),
    )  # fmt: skip


def check(runner: Certherd, servers: Servers, *args: str, secret: str | None = None) -> Result:
    port = str(servers.pebble.options.http_port)
    return runner("check", "--http-port", port, *args, env=secrets_of(servers, secret), check=False)


def lines_of(result: Result) -> dict[tuple[str, str], str]:
    """(lineage, check) -> the line, from the human output."""
    found = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+)\s+(?:ok|WARN|FAIL|skip)\s+(.+?): ", line)
        assert match, line
        found[(match.group(1), match.group(2))] = line
    return found


def test_all_good_is_exit_0_with_a_line_each(runner: Certherd, servers: Servers) -> None:
    issue_both(runner, servers)

    result = check(runner, servers)

    assert result.code == 0, result.describe()
    lines = lines_of(result)
    for lineage in ("127.0.0.1", "_.wild.certherd.test"):
        for what in ("settings", "ca", "clock", "account"):
            assert "  ok  " in lines[(lineage, what)], result.stdout
    assert "the probe was served at http://127.0.0.1:" in lines[("127.0.0.1", "http-01 127.0.0.1")]
    dns = lines[("_.wild.certherd.test", f"dns-01 {WILD}")]
    assert "  ok  " in dns
    assert f"TSIG key {servers.bind9.tsig_key_name!r} accepted" in dns
    assert "MiB free in" in lines[("(host)", "disk")]
    # The probe was removed again; nothing of the TSIG key is printed.
    assert not list((servers.site_root / ".well-known" / "acme-challenge").glob("*"))
    assert servers.bind9.tsig_secret not in result.stdout + result.stderr
    document = runner("--json", "check", "--http-port", str(servers.pebble.options.http_port),
                      env=secrets_of(servers)).json()  # fmt: skip
    assert document["ok"] is True
    assert {c["status"] for c in document["checks"]} == {"ok"}


def test_a_webroot_not_served_and_a_wrong_tsig_key_fail_with_exit_1(
    runner: Certherd, servers: Servers, tmp_path: Path
) -> None:
    issue_both(runner, servers)
    # The web server's document root moved: certherd's webroot is no longer served.
    settings_file = tmp_path / "config" / "renewal" / "127.0.0.1.json"
    settings = json.loads(settings_file.read_text())
    elsewhere = tmp_path / "not-served"
    elsewhere.mkdir()
    settings["solvers"][0]["options"]["path"] = str(elsewhere)
    settings_file.write_text(json.dumps(settings))
    wrong = "d3JvbmcgdHNpZyBrZXkgd3Jvbmcgd3Jvbmc="

    result = check(runner, servers, secret=wrong)

    assert result.code == 1, result.describe()
    lines = lines_of(result)
    http = lines[("127.0.0.1", "http-01 127.0.0.1")]
    assert "  FAIL  " in http
    assert "answered HTTP 404 without the probe" in http
    assert "--webroot" in http  # the setting named as the CLI user sets it
    dns = lines[("_.wild.certherd.test", f"dns-01 {WILD}")]
    assert "  FAIL  " in dns
    assert "rejected the TSIG signature" in dns
    assert wrong not in result.stdout + result.stderr
    assert "  ok  " in lines[("127.0.0.1", "account")]  # the rest still checked
    assert not list(elsewhere.rglob("*.certherd-check*"))


def test_an_unreachable_ca_fails_its_lines(
    pebble_factory: PebbleFactory, servers: Servers, tmp_path: Path
) -> None:
    ca = pebble_factory()
    scratch = tmp_path / "runs"
    scratch.mkdir()
    runner = Certherd(tmp_path / "config", ca, scratch)
    port = str(ca.options.http_port)
    bundle = tmp_path / "ca.pem"  # the stopped Pebble takes its own copy with it
    shutil.copy(ca.ca_bundle, bundle)
    flags = [str(bundle) if flag == str(ca.ca_bundle) else flag for flag in runner.ca]
    runner("issue", "-d", "127.0.0.1", "--http", port, *flags)
    ca.stop()

    result = runner("check", "--http-port", port, check=False)

    assert result.code == 1, result.describe()
    lines = lines_of(result)
    assert "  FAIL  " in lines[("127.0.0.1", "ca")]
    assert "cannot be reached" in lines[("127.0.0.1", "ca")]
    # certherd's own http-01 server still binds its port and serves the probe.
    assert "the probe was served" in lines[("127.0.0.1", "http-01 127.0.0.1")]
    assert ("127.0.0.1", "account") not in lines  # not asked of a CA that is down


def test_a_ca_down_with_another_in_the_list_is_a_warning(
    pebble_factory: PebbleFactory, tmp_path: Path
) -> None:
    first = pebble_factory()
    second = pebble_factory(http_port=first.options.http_port)
    bundle = tmp_path / "both.pem"  # one trust bundle for both CAs, outliving the first
    bundle.write_bytes(first.ca_bundle.read_bytes() + second.ca_bundle.read_bytes())
    scratch = tmp_path / "runs"
    scratch.mkdir()
    runner = Certherd(tmp_path / "config", first, scratch)
    port = str(first.options.http_port)
    cas = ["--server", first.directory_url, "--server", second.directory_url]
    flags = [*cas, "--ca-bundle", str(bundle), "--agree-tos", "--email", "ops@example.test"]
    runner("issue", "-d", "127.0.0.1", "--http", port, *flags)
    first.stop()

    result = runner("check", "--http-port", port, check=False)

    assert result.code == 0, result.describe()
    lines = lines_of(result)
    assert "  WARN  " in lines[("127.0.0.1", "ca 1")]
    assert "another CA of the list works: it is used" in lines[("127.0.0.1", "ca 1")]
    assert "  ok  " in lines[("127.0.0.1", "ca 2")]
    assert "FAIL" not in lines[("127.0.0.1", "account 2")]
