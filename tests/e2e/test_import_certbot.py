"""``certherd import-certbot`` on a directory made by a real Certbot run against Pebble.

Certbot comes from PyPI into its own virtualenv, cached under
``~/.cache/certherd-tests/certbot-venv`` (``CERTHERD_TEST_CERTBOT_VENV`` moves it). No
network to install it is a failure, never a skip. Certbot issues three lineages (standalone,
webroot, standalone with hooks and a reused RSA key) and renews one, so it has two
versions; certherd imports them, shows the same certificates, and renews each with the
Certbot account, sending no newAccount.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from e2e_helpers import forget_authorizations

from certherd.crypto.keys import load_private_key, public_key_equal
from certherd.migrate.certbot_import import key_from_jwk
from certherd.storage.layout import ca_id
from certherd.testing.pebble import PebbleServer

VENV = Path(
    os.environ.get("CERTHERD_TEST_CERTBOT_VENV", "~/.cache/certherd-tests/certbot-venv")
).expanduser()
INSTALL_TIMEOUT = 600
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
MANUAL_AUTH = (
    'mkdir -p {root}/.well-known/acme-challenge && printf %s "$CERTBOT_VALIDATION" '
    "> {root}/.well-known/acme-challenge/$CERTBOT_TOKEN && echo made-$CERTBOT_DOMAIN"
)
MANUAL_CLEANUP = 'echo "cleanup $CERTBOT_DOMAIN $CERTBOT_AUTH_OUTPUT" >> {log}'


@pytest.fixture(scope="session")
def certbot_program() -> Path:
    """``certbot`` from PyPI in its own cached virtualenv (created here if missing)."""
    program = VENV / "bin" / "certbot"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "certbot-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if _works(program):
            return program
        shutil.rmtree(VENV, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(VENV)],
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "certbot"],
        ]
        for step in steps:
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
                failed = done.returncode != 0
                problem = (done.stderr or done.stdout)[-2000:]
            except subprocess.TimeoutExpired:
                failed, problem = True, f"timed out after {INSTALL_TIMEOUT} s"
            if failed:
                shutil.rmtree(VENV, ignore_errors=True)
                pytest.fail(
                    f"cannot install Certbot from PyPI into {VENV} ({' '.join(step[-3:])}); "
                    f"these tests need network access to PyPI once: {problem}",
                    pytrace=False,
                )
        if not _works(program):
            pytest.fail(f"Certbot installed into {VENV} does not run", pytrace=False)
    return program


def _works(program: Path) -> bool:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run([program, "--version"], capture_output=True, timeout=60, check=False)
        return done.returncode == 0
    return False


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def web_server(root: Path, port: int) -> Iterator[None]:
    """Serve ``root`` on 127.0.0.1:``port``: the web server a webroot lineage writes into."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its mode and link target or content hash."""
    seen = {}
    for path in sorted(root.rglob("*")):
        mode = oct(path.lstat().st_mode)
        if path.is_symlink():
            seen[str(path)] = f"{mode} -> {os.readlink(path)}"
        elif path.is_file():
            seen[str(path)] = f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            seen[str(path)] = mode
    return seen


class World:
    """The Pebble, the Certbot directory it issued into, and certherd's new config dir."""

    def __init__(self, pebble: PebbleServer, root: Path, certbot: Path) -> None:
        self.pebble = pebble
        self.certbot_dir = root / "letsencrypt"
        self.config_dir = root / "certherd"
        self.webroot = root / "www"
        self.hook_log = root / "hooks.log"
        self._certbot = certbot
        self._root = root
        self.webroot.mkdir()

    def certbot(self, *args: str) -> None:
        argv = [
            str(self._certbot),
            *args,
            "--non-interactive",
            "--config-dir",
            str(self.certbot_dir),
            "--work-dir",
            str(self._root / "certbot-work"),
            "--logs-dir",
            str(self._root / "certbot-logs"),
        ]
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(self.pebble.ca_bundle)}
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            pytest.fail(f"certbot {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def certonly(self, *args: str) -> None:
        self.certbot(
            "certonly",
            "--server",
            self.pebble.directory_url,
            "--agree-tos",
            "-m",
            "a@b.test",
            "--no-eff-email",
            *args,
        )

    def certherd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "certherd.cli.main", "--config-dir", str(self.config_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHERD_")}
        done = subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "200"},
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            pytest.fail(f"certherd {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def new_accounts(self) -> int:
        return self.pebble.log_tail(10**7).count("POST /sign-me-up")

    def forget_authorizations(self) -> int:
        """Deactivate the imported account's valid authorizations, so the next orders
        answer their challenges (Pebble reuses one now and then, even when told not
        to: a reused manual.test authorization runs no manual hook)."""
        pebble = self.pebble
        return forget_authorizations(self.config_dir, pebble.directory_url, pebble.ca_bundle)

    @property
    def http(self) -> tuple[str, ...]:
        port = str(self.pebble.options.http_port)
        return ("--http-01-port", port, "--http-01-address", "127.0.0.1")


@pytest.fixture(scope="module")
def world(
    certbot_program: Path,
    pebble_factory: Callable[..., PebbleServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    """Certbot's directory with three lineages, x.test in two versions, and an import."""
    # Certbot retries a badNonce once only; Pebble's default 5% of refused nonces would
    # make two in a row (and a failed run) likely over a few dozen requests. No reused
    # authorizations: every renewal below must really answer its challenges.
    pebble = pebble_factory(nonce_reject_percent=0, authz_reuse_percent=0)
    world = World(pebble, tmp_path_factory.mktemp("import-certbot"), certbot_program)
    world.certonly("--standalone", *world.http, "-d", "x.test", "-d", "www.x.test")
    with web_server(world.webroot, pebble.options.http_port):
        world.certonly(
            "--webroot",
            "-w",
            str(world.webroot),
            "-d",
            "web.test",
            "--key-type",
            "rsa",
            "--rsa-key-size",
            "3072",
            "--preferred-chain",
            "Pebble Root CA",
        )
        world.certonly(
            "--manual",
            "--preferred-challenges",
            "http-01",
            "-d",
            "manual.test",
            "--manual-auth-hook",
            MANUAL_AUTH.format(root=world.webroot),
            "--manual-cleanup-hook",
            MANUAL_CLEANUP.format(log=world.hook_log),
        )
    log = world.hook_log
    world.certonly(
        "--standalone",
        *world.http,
        "-d",
        "hook.test",
        "--reuse-key",
        "--pre-hook",
        f"echo \"pre\" 'hook' >> {log}",  # both quotes: Certbot writes it triple-quoted
        "--deploy-hook",
        f'echo "deploy $RENEWED_LINEAGE, $RENEWED_DOMAINS" >> {log}',
    )
    # Without a terminal, `certbot renew` first sleeps up to 8 minutes unless told not to.
    world.certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "x.test")
    return world


@pytest.fixture(scope="module")
def imported(world: World) -> dict[str, Any]:
    """``certherd import-certbot`` once, with the JSON it printed."""
    before = snapshot(world.certbot_dir)
    done = world.certherd(
        "--json",
        "import-certbot",
        str(world.certbot_dir),
        "--ca-bundle",
        str(world.pebble.ca_bundle),
    )
    document: dict[str, Any] = json.loads(done.stdout)
    document["certbot_unchanged"] = snapshot(world.certbot_dir) == before
    return document


def live_cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / "live" / name / "cert.pem").read_bytes())


def test_import_reports_every_lineage(world: World, imported: dict[str, Any]) -> None:
    assert (imported["imported"], imported["skipped"], imported["failed"]) == (4, 0, 0)
    by_name = {d["lineage"]: d for d in imported["lineages"]}
    assert sorted(by_name) == ["hook.test", "manual.test", "web.test", "x.test"]
    assert by_name["x.test"]["versions"] == [1, 2]
    assert by_name["x.test"]["live_version"] == 2
    assert by_name["x.test"]["names"] == ["x.test", "www.x.test"]
    assert by_name["x.test"]["warnings"] == []
    assert imported["certbot_unchanged"], "the Certbot directory was modified"


def test_list_shows_the_same_certificates(world: World, imported: dict[str, Any]) -> None:
    listed = json.loads(world.certherd("--json", "list").stdout)["lineages"]
    assert sorted(d["name"] for d in listed) == ["hook.test", "manual.test", "web.test", "x.test"]
    for document in listed:
        name = document["name"]
        cert = live_cert(world.certbot_dir, name)
        assert document["serial"] == format(cert.serial_number, "x")
        assert document["not_after"] == cert.not_valid_after_utc.isoformat()
        for file in FILES:
            ours = world.config_dir / "live" / name / file
            assert ours.read_bytes() == (world.certbot_dir / "live" / name / file).read_bytes()
    # Five-year Pebble certificates: nothing is due, and nothing is ordered.
    outcome = json.loads(world.certherd("--json", "renew").stdout)
    assert {r["action"] for r in outcome["results"]} == {"not-due"}


def test_settings_are_mapped(world: World, imported: dict[str, Any]) -> None:
    def settings(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (world.config_dir / "renewal" / f"{name}.json").read_text()
        )
        return data

    port = world.pebble.options.http_port
    x = settings("x.test")
    assert x["solvers"] == [
        {"kind": "http", "names": [], "options": {"listen": f"127.0.0.1:{port}"}}
    ]
    assert x["directory_url"] == world.pebble.directory_url
    assert x["ca_bundle"] == str(world.pebble.ca_bundle.resolve())
    assert (x["key_type"], x["reuse_key"]) == ("ec256", False)
    web = settings("web.test")
    assert web["solvers"] == [
        {"kind": "webroot", "names": [], "options": {"path": str(world.webroot)}}
    ]
    assert (web["key_type"], web["preferred_chain"]) == ("rsa3072", "Pebble Root CA")
    manual = settings("manual.test")
    script = world.config_dir.resolve() / "hooks" / "certbot-manual-manual.test.sh"
    assert manual["solvers"] == [
        {
            "kind": "hook",
            "names": [],
            "options": {"challenge": "http-01", "command": str(script), "timeout": "600"},
        }
    ]
    assert script.stat().st_mode & 0o777 == 0o700
    hook = settings("hook.test")
    log = world.hook_log
    assert hook["reuse_key"] is True
    assert hook["hooks"] == {
        "pre": [f"echo \"pre\" 'hook' >> {log}"],
        "post": [],
        "deploy": [f'echo "deploy $RENEWED_LINEAGE, $RENEWED_DOMAINS" >> {log}'],
        "failure": [],
    }


def test_the_account_is_certbot_s(world: World, imported: dict[str, Any]) -> None:
    [folder] = [p.parent for p in (world.certbot_dir / "accounts").rglob("regr.json")]
    url = json.loads((folder / "regr.json").read_text())["uri"]
    ours = world.config_dir / "accounts" / ca_id(world.pebble.directory_url) / "default"
    assert json.loads((ours / "account.json").read_text())["url"] == url
    key = load_private_key((ours / "key.pem").read_bytes())
    theirs = key_from_jwk(json.loads((folder / "private_key.json").read_text()))
    assert public_key_equal(key.public_key(), theirs.public_key())
    assert {d["account_url"] for d in imported["lineages"]} == {url}


def test_again_skips_and_dry_run_writes_nothing(world: World, imported: dict[str, Any]) -> None:
    again = json.loads(world.certherd("--json", "import-certbot", str(world.certbot_dir)).stdout)
    assert (again["skipped"], again["imported"]) == (4, 0)
    elsewhere = world.config_dir.parent / "dry-run"
    argv = [sys.executable, "-m", "certherd.cli.main", "--config-dir", str(elsewhere), "--json"]
    done = subprocess.run(
        [*argv, "import-certbot", "--dry-run", str(world.certbot_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout)["would-import"] == 4
    assert not elsewhere.exists()


def test_renew_with_the_imported_account(world: World, imported: dict[str, Any]) -> None:
    accounts = world.new_accounts()
    account_file = next((world.config_dir / "accounts").rglob("account.json"))
    account_before = account_file.read_bytes()
    old = live_cert(world.config_dir, "x.test")
    old_hook_key = (world.config_dir / "live" / "hook.test" / "privkey.pem").read_bytes()

    assert world.forget_authorizations() > 0  # Certbot's, for every name
    done = world.certherd("--json", "renew", "--force", "x.test", "hook.test")
    results = {r["lineage"]: r for r in json.loads(done.stdout)["results"]}
    assert {name: r["action"] for name, r in results.items()} == {
        "x.test": "renewed",
        "hook.test": "renewed",
    }
    assert results["x.test"]["version"] == 3  # after Certbot's 1 and 2
    world.forget_authorizations()  # manual.test's too: its hooks must run
    with web_server(world.webroot, world.pebble.options.http_port):
        done = world.certherd("--json", "renew", "--force", "web.test", "manual.test")
    assert {r["action"] for r in json.loads(done.stdout)["results"]} == {"renewed"}

    assert world.new_accounts() == accounts, "renewing sent a newAccount"
    assert account_file.read_bytes() == account_before
    new = live_cert(world.config_dir, "x.test")
    assert new.serial_number != old.serial_number
    assert sorted(n.value for n in new.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value) == ["www.x.test", "x.test"]  # fmt: skip
    hook_live = world.config_dir / "live" / "hook.test"
    assert (hook_live / "privkey.pem").read_bytes() == old_hook_key  # reuse_key
    lines = world.hook_log.read_text().splitlines()
    assert lines[-3:-1] == ["pre hook", f"deploy {hook_live}, hook.test"]
    # Certbot's manual hooks ran through the adapter, output passed from auth to cleanup.
    assert lines[-1] == "cleanup manual.test made-manual.test"

    # The Certbot directory still holds Certbot's certificates.
    assert live_cert(world.certbot_dir, "x.test").serial_number == old.serial_number
