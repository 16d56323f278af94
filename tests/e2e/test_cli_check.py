"""``certherd check`` (issue 14 item 4) against real servers: Pebble resolving through
BIND9, nginx serving a webroot on Pebble's http-01 port, RFC 2136 updates to BIND9 with
its TSIG key. All good: exit 0, one line each. A webroot nginx does not serve, a wrong
TSIG key, a CA that is down: the line says so, exit 1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from e2e_runner import Certherd, PebbleFactory, Result
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import start_or_fail
from tests.servers.net import free_port
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


def test_an_account_the_ca_deactivated_fails(
    runner: Certherd, servers: Servers, tmp_path: Path
) -> None:
    """The CA deactivated the account (here through a copy of the config dir, so this one
    does not know): check asks the CA and says so."""
    runner("issue", "-d", "127.0.0.1", "--webroot", str(servers.site_root), *runner.ca)
    copy = tmp_path / "copy"
    shutil.copytree(runner.config_dir, copy, symlinks=True)
    runner.elsewhere(copy)("account", "deactivate", "--yes", *runner.ca)

    result = check(runner, servers)

    assert result.code == 1, result.describe()
    account = lines_of(result)[("127.0.0.1", "account")]
    assert "  FAIL  " in account, account
    assert "deactivated" in account, account
    assert "certherd account register" in account, account
    # What the line says to do works: the account moved away, a new one, all good.
    folder = re.search(r"move (accounts/\S+/) of the config dir away", account)
    assert folder is not None, account
    (runner.config_dir / folder.group(1)).rename(tmp_path / "deactivated-account")
    runner("account", "register", *runner.ca)
    again = check(runner, servers)
    assert again.code == 0, again.describe()
    assert "  ok  " in lines_of(again)[("127.0.0.1", "account")]


def _in_mount_namespace(
    runner: Certherd, servers: Servers, script: str, env: dict[str, str], config_dir: Path
) -> Result:
    """``certherd --config-dir CONFIG_DIR check`` run by ``script`` (sh, the command as
    "$@") in a mount namespace of its own: what it mounts (read-only, a small tmpfs) is
    seen by nobody else."""
    port = str(servers.pebble.options.http_port)
    certherd = runner.elsewhere(config_dir).argv(["check", "--http-port", port])
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh"]
    done = subprocess.run(
        [*command, *certherd],
        env=runner.environment({**secrets_of(servers), **env}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_a_webroot_that_cannot_be_written_fails(runner: Certherd, servers: Servers) -> None:
    """The webroot is there and served, but read-only (a read-only mount: even root
    cannot write): the next renewal could not publish its answer."""
    runner("issue", "-d", "127.0.0.1", "--webroot", str(servers.site_root), *runner.ca)
    read_only = 'mount --bind "$W" "$W"; mount -o remount,bind,ro "$W"; exec "$@"'

    webroot = {"W": str(servers.site_root)}
    result = _in_mount_namespace(runner, servers, read_only, webroot, runner.config_dir)

    assert result.code == 1, result.describe()
    http = lines_of(result)[("127.0.0.1", "http-01 127.0.0.1")]
    assert "  FAIL  " in http, http
    assert "cannot publish the probe" in http, http
    assert "Read-only file system" in http, http
    assert str(servers.site_root) in http, http


def test_a_config_dir_short_of_space_fails(runner: Certherd, servers: Servers) -> None:
    """The config dir on a 4 MiB file system: the disk line fails (renewals write keys,
    certificates and state there)."""
    runner("issue", "-d", "127.0.0.1", "--webroot", str(servers.site_root), *runner.ca)
    small = runner.config_dir.parent / "small"
    small.mkdir(mode=0o700)
    on_tmpfs = 'mount -t tmpfs -o size=4m,mode=0700 tmpfs "$S"; cp -a "$C" "$S/"; exec "$@"'
    places = {"S": str(small), "C": str(runner.config_dir)}
    result = _in_mount_namespace(runner, servers, on_tmpfs, places, small / "config")

    assert result.code == 1, result.describe()
    disk = lines_of(result)[("(host)", "disk")]
    assert "  FAIL  " in disk, disk
    assert f"MiB free in {small}/config: free some space" in disk, disk


def _solver(runner: Certherd, name: str, kind: str, options: dict[str, str]) -> None:
    """Change the lineage's stored solver, as a later `issue` with other flags would."""
    settings_file = runner.config_dir / "renewal" / f"{name}.json"
    settings = json.loads(settings_file.read_text())
    settings["solvers"] = [{**settings["solvers"][0], "kind": kind, "options": options}]
    settings_file.write_text(json.dumps(settings))


def test_certherds_own_http_server_on_a_port_taken_or_not_reached_fails(
    runner: Certherd, servers: Servers
) -> None:
    """The standalone solver (`--http`): its port taken by another server (nginx here),
    then free but not where the name is served: each fails, with what to check."""
    runner("issue", "-d", "127.0.0.1", "--webroot", str(servers.site_root), *runner.ca)
    taken = f"127.0.0.1:{servers.pebble.options.http_port}"
    _solver(runner, "127.0.0.1", "http", {"listen": taken})

    result = check(runner, servers)

    assert result.code == 1, result.describe()
    http = lines_of(result)[("127.0.0.1", "http-01 127.0.0.1")]
    assert "  FAIL  " in http, http
    assert f"cannot publish the probe: cannot listen for http-01 on {taken}" in http, http
    assert "address already in use" in http, http

    _solver(runner, "127.0.0.1", "http", {"listen": f"127.0.0.1:{free_port()}"})
    result = check(runner, servers)
    assert result.code == 1, result.describe()
    http = lines_of(result)[("127.0.0.1", "http-01 127.0.0.1")]
    assert "answered HTTP 404 without the probe" in http, http
    assert "another server answers this name there, not certherd's" in http, http
    assert "--http [ADDR:]PORT" in http, http
    assert "--webroot" not in http, http  # before: the webroot was named for every solver
