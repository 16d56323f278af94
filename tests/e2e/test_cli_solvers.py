"""``certherd issue`` through each solver flag, validated for real by Pebble.

Two Pebbles resolve every name through one BIND9 (zone ``certherd.test.``, whose wildcard
``A`` record sends every name to 127.0.0.1) and reuse no authorization, so every order
is validated afresh:

- ``web``: nginx listens on its http-01 port with two sites, the default one serving
  ``SITE_ROOT`` and one for ``OTHER_NAME`` serving ``OTHER_ROOT`` (``--webroot``,
  ``--webroot-map``, ``--solver-hook http-01=...`` and a failed validation);
- ``direct``: its http-01 and tls-alpn-01 ports are left to certherd's own servers
  (``--tls-alpn``, ``--http`` next to ``--dns``) and its dns-01 checks ask BIND9
  (``--dns rfc2136``, ``--dns exec``).

All servers are started once for the module.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from e2e_helpers import archive_versions, dns_names, live_version, load_cert, snapshot
from e2e_runner import Certherd, PebbleFactory, Result
from tests.contract.provider_support import write_update_hook
from tests.servers.bind9 import Bind9Server
from tests.servers.fixtures import start_or_fail
from tests.servers.net import port_is_free
from tests.servers.nginx import NginxServer

from certherd.testing.pebble import PebbleServer

ZONE = "certherd.test."
OTHER_NAME = "other.web.certherd.test"


class TwoSiteNginx(NginxServer):
    """nginx with one more site: ``server_name`` ``name`` served from ``root``.

    The launcher serves one webroot for every Host; ``--webroot-map`` needs a name whose
    files live elsewhere, as on a real server with several sites.
    """

    def __init__(self, webroot: Path, port: int, *, name: str, root: Path) -> None:
        super().__init__(webroot, port)
        self.site_name = name
        self.site_root = root

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text()
        site = (
            "    server {\n"
            f"        listen {self.host}:{self.port};\n"
            f"        server_name {self.site_name};\n"
            f'        root "{self.site_root.resolve()}";\n'
            "        location / { try_files $uri =404; }\n"
            "    }\n"
        )
        head, brace, tail = text.rpartition("}")  # the end of the http block
        self.config_path.write_text(head + site + brace + tail)


class Servers(NamedTuple):
    bind9: Bind9Server
    web: PebbleServer
    direct: PebbleServer
    nginx: NginxServer
    site_root: Path
    other_root: Path


def _served_dir() -> Path:
    """A folder nginx workers (``nobody`` when run as root) can read: not under tmp_path."""
    folder = Path(tempfile.mkdtemp(prefix="certherd-e2e-served-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def servers(pebble_factory: PebbleFactory) -> Iterator[Servers]:
    bind9 = start_or_fail(Bind9Server((ZONE,)))
    site_root, other_root = _served_dir(), _served_dir()
    nginx: NginxServer | None = None
    try:
        host, port = bind9.address
        options = {
            "dns_server": f"{host}:{port}",
            "start_challtestsrv": False,
            "authz_reuse_percent": 0,
        }
        web = pebble_factory(**options)
        direct = pebble_factory(**options)
        nginx = start_or_fail(
            TwoSiteNginx(site_root, web.options.http_port, name=OTHER_NAME, root=other_root)
        )
        yield Servers(bind9, web, direct, nginx, site_root, other_root)
    finally:
        if nginx is not None:
            nginx.stop()
        bind9.stop()
        shutil.rmtree(site_root, ignore_errors=True)
        shutil.rmtree(other_root, ignore_errors=True)


def _runner(server: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir(exist_ok=True)
    runner = Certherd(tmp_path / "config", server, scratch)
    yield runner
    runner.stop_all()


@pytest.fixture
def web(servers: Servers, tmp_path: Path) -> Iterator[Certherd]:
    """certherd against the Pebble whose http-01 port nginx serves."""
    yield from _runner(servers.web, tmp_path)


@pytest.fixture
def direct(servers: Servers, tmp_path: Path) -> Iterator[Certherd]:
    """certherd against the Pebble whose http-01 and tls-alpn-01 ports are certherd's."""
    yield from _runner(servers.direct, tmp_path)


def _issue(runner: Certherd, *names: str, solver: list[str]) -> Result:
    """``--json issue -d NAME ... SOLVER-FLAGS`` against the runner's Pebble."""
    domains = [flag for name in names for flag in ("-d", name)]
    return runner("--json", "issue", *domains, *solver, *runner.ca)


def _txt(servers: Servers, name: str) -> list[str]:
    return servers.bind9.query(f"_acme-challenge.{name}", "TXT")


def _rfc2136_flags(servers: Servers) -> list[str]:
    """The rfc2136 provider's settings that are not secret, and BIND9 as the resolver."""
    host, port = servers.bind9.address
    return [
        "--dns", "rfc2136",
        "--dns-opt", f"server={host}",
        "--dns-opt", f"port={port}",
        "--dns-opt", f"zone={ZONE}",
        "--dns-resolver", f"{host}:{port}",
    ]  # fmt: skip


def _secret_env(servers: Servers) -> dict[str, str]:
    return {
        "CERTHERD_RFC2136_KEY_NAME": servers.bind9.tsig_key_name,
        "CERTHERD_RFC2136_KEY_SECRET": servers.bind9.tsig_secret,
        "CERTHERD_RFC2136_ALGORITHM": servers.bind9.tsig_algorithm,
    }


def _challenge_requests(nginx: NginxServer) -> int:
    return sum("/.well-known/acme-challenge/" in line for line in nginx.access_log_lines())


# -- http-01 through files in a webroot ---------------------------------------------------


def test_webroot_and_webroot_map_served_by_nginx(web: Certherd, servers: Servers) -> None:
    before = snapshot(servers.site_root), snapshot(servers.other_root)
    requests = _challenge_requests(servers.nginx)
    solver = ["--webroot", str(servers.site_root)]
    solver += ["--webroot-map", f"{OTHER_NAME}={servers.other_root}"]
    issued = _issue(web, "site.web.certherd.test", OTHER_NAME, solver=solver).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]
    cert = load_cert(web.live("site.web.certherd.test") / "cert.pem")
    assert dns_names(cert) == {"site.web.certherd.test", OTHER_NAME}
    # Pebble fetched both files from nginx (the other name's from its own site only).
    assert _challenge_requests(servers.nginx) >= requests + 2
    # Nothing is left behind in either webroot.
    assert (snapshot(servers.site_root), snapshot(servers.other_root)) == before

    # renew repeats the same solvers: both webroots again, cleaned again.
    shown = web("--json", "show", "site.web.certherd.test").json()
    assert {(s["kind"], tuple(s["names"])) for s in shown["solvers"]} == {
        ("webroot", ()),
        ("webroot", (OTHER_NAME,)),
    }
    requests = _challenge_requests(servers.nginx)
    renewed = web("--json", "renew", "--force").json()
    assert [(r["action"], r["version"]) for r in renewed["results"]] == [("renewed", 2)]
    assert _challenge_requests(servers.nginx) >= requests + 2
    assert (snapshot(servers.site_root), snapshot(servers.other_root)) == before
    assert live_version(web.config_dir, "site.web.certherd.test") == 2


def test_a_failed_validation_is_one_clear_line(
    web: Certherd, servers: Servers, tmp_path: Path
) -> None:
    """A webroot nginx does not serve: Pebble gets a 404, the order fails, nothing is saved."""
    unserved = tmp_path / "not-served"
    unserved.mkdir()
    name = "lost.web.certherd.test"
    for json_flag in ((), ("--json",)):
        failed = web(
            *json_flag,
            "issue",
            "-d",
            name,
            "--webroot",
            str(unserved),
            *web.ca,
            check=False,
        )
        assert failed.code == 1, failed.describe()
        # One line says what failed and why (other lines are progress, without --json).
        errors = [line for line in failed.stderr.splitlines() if line.startswith("certherd:")]
        assert len(errors) == 1, failed.describe()
        [line] = errors
        assert line.startswith("certherd: error: "), line
        assert name in line
        assert "unauthorized" in line  # the CA's problem type (RFC 8555 §6.7) ...
        assert "404" in line  # ... and its detail: what the validator got
        assert "Traceback" not in failed.stderr
        assert not web.live(name).exists()
        assert archive_versions(web.archive(name)) == {}
        assert list(unserved.rglob("*")) == []  # cleaned up after the failure too


def test_a_webroot_made_by_the_pre_hook_is_checked_after_it(
    web: Certherd, servers: Servers, tmp_path: Path
) -> None:
    """The webroot does not exist until the pre hook links it to what nginx serves."""
    link = tmp_path / "made-by-the-pre-hook"
    hook = f"ln -sfn {shlex.quote(str(servers.site_root))} {shlex.quote(str(link))}"
    solver = ["--webroot", str(link), "--pre-hook", hook]
    issued = _issue(web, "prehook.web.certherd.test", solver=solver).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]


def test_a_vanished_webroot_fails_the_renewal_before_any_order(
    web: Certherd, servers: Servers
) -> None:
    """No order, no failed validation (CAs rate-limit those): the renewal fails at once."""
    root = _served_dir()
    name = "vanished.web.certherd.test"
    try:
        _issue(web, name, solver=["--webroot-map", f"{name}={servers.site_root}"])
        settings = web.config_dir / "renewal" / f"{name}.json"
        data = json.loads(settings.read_text())
        data["solvers"][0]["options"]["path"] = str(root / "gone")
        settings.write_text(json.dumps(data))
        requests = _challenge_requests(servers.nginx)
        failed = web("-v", "renew", "--force", check=False)
        assert failed.code == 1, failed.describe()
        assert "does not exist or is not a directory" in failed.stdout + failed.stderr
        assert "ordering a certificate" not in failed.stderr
        assert _challenge_requests(servers.nginx) == requests
        assert live_version(web.config_dir, name) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- tls-alpn-01 on Pebble's tlsPort ------------------------------------------------------


def test_tls_alpn_for_two_names(direct: Certherd, servers: Servers) -> None:
    port = servers.direct.options.tls_port
    solver = ["--tls-alpn", f"127.0.0.1:{port}"]
    names = ("alpn.certherd.test", "www.alpn.certherd.test")
    issued = _issue(direct, *names, solver=solver).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]
    assert dns_names(load_cert(direct.live(names[0]) / "cert.pem")) == set(names)
    assert port_is_free(port)  # the responder is gone
    shown = direct("--json", "show", names[0]).json()
    assert shown["solvers"] == [
        {"kind": "tls-alpn", "options": {"listen": f"127.0.0.1:{port}"}, "names": []}
    ]


# -- dns-01 -------------------------------------------------------------------------------


def test_rfc2136_wildcard_and_base_with_the_secret_from_the_environment(
    direct: Certherd, servers: Servers
) -> None:
    secret = servers.bind9.tsig_secret
    names = ("x.certherd.test", "*.x.certherd.test")
    domains = [flag for name in names for flag in ("-d", name)]
    args = ["--json", "issue", *domains, *_rfc2136_flags(servers), *direct.ca]
    assert not any(secret in arg for arg in direct.argv(args))  # what `ps` would show
    issued = direct(*args, env=_secret_env(servers))
    assert [(r["action"], r["version"]) for r in issued.json()["results"]] == [("issued", 1)]
    assert dns_names(load_cert(direct.live("x.certherd.test") / "cert.pem")) == set(names)
    assert _txt(servers, "x.certherd.test") == []  # both values removed

    # renew repeats it; the secret (never stored) comes from the environment again,
    # this time as the key file tsig-keygen wrote.
    key_file = {"CERTHERD_RFC2136_KEY_FILE": str(servers.bind9.key_file)}
    renewed = direct("--json", "renew", "--force", env=key_file)
    assert [(r["action"], r["version"]) for r in renewed.json()["results"]] == [("renewed", 2)]
    assert live_version(direct.config_dir, "x.certherd.test") == 2
    assert _txt(servers, "x.certherd.test") == []

    for result in (issued, renewed):
        assert secret not in result.stdout + result.stderr
    for path in direct.config_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), f"the TSIG secret is in {path}"

    # Without the environment the renewal fails, naming what is missing.
    failed = direct("--json", "renew", "--force", check=False)
    assert failed.code == 1
    [line] = failed.stderr.splitlines()
    assert "CERTHERD_RFC2136_KEY_" in line
    assert "key_file" in line
    assert live_version(direct.config_dir, "x.certherd.test") == 2


def test_vv_shows_propagation_checks_and_never_the_tsig_secret(
    direct: Certherd, servers: Servers
) -> None:
    """-vv on dns-01: each propagation round and each server's answer; no secret."""
    secret = servers.bind9.tsig_secret
    args = ["-vv", "--json", "issue", "-d", "*.vv.certherd.test", *_rfc2136_flags(servers)]
    issued = direct(*args, *direct.ca, env=_secret_env(servers))
    assert [r["action"] for r in issued.json()["results"]] == ["issued"]
    host, _ = servers.bind9.address
    record = "_acme-challenge.vv.certherd.test."
    stderr = issued.stderr
    assert f"challenges.propagation: propagation of TXT {record}: checking {host}" in stderr
    assert f"propagation of TXT {record}: served by 1 of 1 name server(s)" in stderr
    assert "*.vv.certherd.test: the CA offers dns-01; answering dns-01 with" in stderr
    assert f"dns-01: TXT {record} added through" in stderr
    assert f"dns-01: TXT {record} removed" in stderr
    assert "*.vv.certherd.test: dns-01 presented" in stderr
    assert "*.vv.certherd.test: authorization valid" in stderr
    assert secret not in stderr + issued.stdout


def _logging_hook(servers: Servers, folder: Path) -> tuple[Path, Path]:
    """An exec-provider hook that logs each call, then runs the nsupdate hook."""
    folder.mkdir(parents=True, exist_ok=True)
    nsupdate = write_update_hook(servers.bind9, folder)
    log = folder / "calls.log"
    hook = folder / "logging-hook"
    hook.write_text(
        "#!/bin/sh\n"
        "set -eu\n"
        f"log={shlex.quote(str(log))}\n"
        'echo "$1 $CERTHERD_DNS_DOMAIN $CERTHERD_DNS_NAME $CERTHERD_DNS_VALUE" >> "$log"\n'
        f'exec {shlex.quote(str(nsupdate))} "$1"\n'
    )
    hook.chmod(0o700)
    return hook, log


def test_http_for_plain_names_dns_for_the_wildcard(
    direct: Certherd, servers: Servers, tmp_path: Path
) -> None:
    # _acme-challenge.m.certherd.test makes m.certherd.test an empty non-terminal, which
    # hides the zone's wildcard A: give the plain names addresses of their own, as a
    # real zone has.
    for name in ("m.certherd.test", "www.m.certherd.test"):
        servers.bind9.add_record(name, "A", "127.0.0.1")
    hook, log = _logging_hook(servers, tmp_path / "hook")
    host, port = servers.bind9.address
    solver = [*direct.http, "--dns", "exec", "--dns-opt", f"command={hook}"]
    solver += ["--dns-resolver", f"{host}:{port}"]
    names = ("m.certherd.test", "www.m.certherd.test", "*.m.certherd.test")
    issued = _issue(direct, *names, solver=solver).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]
    assert dns_names(load_cert(direct.live("m.certherd.test") / "cert.pem")) == set(names)
    # Only the wildcard went through DNS: one present, one cleanup.
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [call[:3] for call in calls] == [
        ["present", "m.certherd.test", "_acme-challenge.m.certherd.test."],
        ["cleanup", "m.certherd.test", "_acme-challenge.m.certherd.test."],
    ]
    assert _txt(servers, "m.certherd.test") == []
    assert port_is_free(servers.direct.options.http_port)


def test_exec_provider_with_an_nsupdate_hook(
    direct: Certherd, servers: Servers, tmp_path: Path
) -> None:
    hook, log = _logging_hook(servers, tmp_path / "hook")
    host, port = servers.bind9.address
    solver = ["--dns", "exec", "--dns-opt", f"command={hook}"]
    solver += ["--dns-resolver", f"{host}:{port}"]
    names = ("e.certherd.test", "*.e.certherd.test")
    issued = _issue(direct, *names, solver=solver).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]
    assert dns_names(load_cert(direct.live("e.certherd.test") / "cert.pem")) == set(names)
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sorted(call[0] for call in calls) == ["cleanup", "cleanup", "present", "present"]
    assert {call[2] for call in calls} == {"_acme-challenge.e.certherd.test."}
    assert {call[1] for call in calls} == {"e.certherd.test"}
    presented = {call[3] for call in calls if call[0] == "present"}
    assert len(presented) == 2  # the wildcard's and the base name's values, side by side
    assert presented == {call[3] for call in calls if call[0] == "cleanup"}
    assert _txt(servers, "e.certherd.test") == []


# -- any challenge through a program ------------------------------------------------------


def test_solver_hook_writes_into_the_served_webroot(
    web: Certherd, servers: Servers, tmp_path: Path
) -> None:
    challenge_dir = servers.site_root / ".well-known" / "acme-challenge"
    log = tmp_path / "hook.log"
    hook = tmp_path / "http-hook"
    hook.write_text(
        "#!/bin/sh\n"
        "set -eu\n"
        f"dir={shlex.quote(str(challenge_dir))}\n"
        f"log={shlex.quote(str(log))}\n"
        'echo "$1 $CERTHERD_CHALLENGE_TYPE $CERTHERD_IDENTIFIER" >> "$log"\n'
        'case "$1" in\n'
        '    present) umask 022; mkdir -p "$dir"\n'
        '             printf %s "$CERTHERD_KEY_AUTHORIZATION" > "$dir/$CERTHERD_TOKEN" ;;\n'
        '    cleanup) rm -f "$dir/$CERTHERD_TOKEN" ;;\n'
        "esac\n"
    )
    hook.chmod(0o700)
    names = ("hook.web.certherd.test", "www.hook.web.certherd.test")
    issued = _issue(web, *names, solver=["--solver-hook", f"http-01={hook}"]).json()
    assert [(r["action"], r["version"]) for r in issued["results"]] == [("issued", 1)]
    assert dns_names(load_cert(web.live(names[0]) / "cert.pem")) == set(names)
    calls = sorted(log.read_text().splitlines())
    assert calls == sorted(
        f"{action} http-01 {name}" for action in ("present", "cleanup") for name in names
    )
    leftovers = [p for p in servers.site_root.rglob("*") if p.is_file()]
    assert leftovers == []
