"""``certherd issue --apache`` end to end: Pebble validates http-01 through a real Apache
(Debian's, its own /etc/apache2 copied into a temporary server root, on the port
Pebble's validator asks), certherd enables mod_ssl and adds a TLS copy of the matching
vhosts, ``renew --force`` swaps the certificate with a graceful restart while a request
loop sees no failure, ``uninstall`` gives every file and link back, and a config that
fails Apache's own test is refused with nothing changed.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509
from e2e_runner import Certherd
from tests.servers.apache import ApacheRoot
from tests.servers.fixtures import start_or_fail
from tests.servers.net import LOOPBACK, ServerStartError, free_port

from certherd.testing.pebble import PebbleServer

NAMES = ("shop.apache.test", "www.blog.apache.test")
SITES = """# the user's sites: one exact name with an alias, one wildcard alias
<VirtualHost *:{port}>
    ServerName shop.apache.test
    ServerAlias www.shop.apache.test
    DocumentRoot {html}
    <Directory {html}>
        Options -Indexes
    </Directory>
</VirtualHost>

<VirtualHost *:{port}>
\tServerName blog.apache.test
\tServerAlias *.blog.apache.test
\tDocumentRoot "{html}"
</VirtualHost>
"""


@pytest.fixture
def apache(pebble: PebbleServer) -> Iterator[ApacheRoot]:
    """Apache on the port Pebble validates http-01 on, with Debian's default site and
    the user's sites."""
    try:
        root = ApacheRoot(http_port=pebble.options.http_port)
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    text = SITES.replace("{port}", str(root.http_port)).replace("{html}", str(root.root / "html"))
    root.site("shop", text)
    yield start_or_fail(root)
    root.stop()


def served(pebble: PebbleServer, port: int, name: str) -> x509.Certificate:
    """The certificate on ``port`` for ``name``, verified against Pebble's root."""
    context = ssl.create_default_context(cadata=pebble.roots_pem(0).decode())
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def fetch(pebble: PebbleServer, port: int, name: str) -> bytes:
    context = ssl.create_default_context(cadata=pebble.roots_pem(0).decode())
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def apache_flags(apache: ApacheRoot, https_port: int) -> list[str]:
    return ["--apache", "--apache-server-root", str(apache.root), "--https-port", str(https_port)]


def test_issue_renew_without_downtime_then_uninstall(
    certherd: Certherd, pebble: PebbleServer, apache: ApacheRoot
) -> None:
    before = apache.snapshot()
    https_port = free_port()
    domains = [flag for name in NAMES for flag in ("-d", name)]
    certherd("issue", *domains, *apache_flags(apache, https_port), *certherd.ca, env=apache.env)
    fullchain = x509.load_pem_x509_certificates(
        (certherd.live(NAMES[0]) / "fullchain.pem").read_bytes()
    )
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == fullchain[0].serial_number
    assert fetch(pebble, https_port, NAMES[0]).startswith(b"HTTP/1.1 200")
    assert not (apache.root / "certherd" / "acme-challenge.conf").exists()  # removed after
    tls = apache.root / "sites-available" / f"{NAMES[0]}-certherd.conf"
    assert (apache.root / "sites-enabled" / tls.name).readlink().as_posix() == (
        f"../sites-available/{tls.name}"
    )
    assert (apache.root / "mods-enabled" / "ssl.load").is_symlink()  # a2enmod ssl
    master = apache.master_pid

    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def loop() -> None:
        nonlocal answered
        while not done.is_set():
            try:
                answer = fetch(pebble, https_port, NAMES[0])
                if not answer.startswith(b"HTTP/1.1 200"):
                    failures.append(answer[:80].decode(errors="replace"))
                answered += 1
            except OSError as exc:
                failures.append(repr(exc))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        certherd("renew", "--force", NAMES[0], env=apache.env)
    finally:
        done.set()
        worker.join(timeout=30)
    assert failures == []
    assert answered > 10  # the loop ran through the renewal
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert renewed.serial_number != fullchain[0].serial_number
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == renewed.serial_number
    assert apache.master_pid == master
    assert apache.snapshot() != before

    removed = certherd("--json", "uninstall", NAMES[0], env=apache.env).json()
    assert removed == {"lineage": NAMES[0], "removed": True}
    assert apache.snapshot() == before
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"] is None
    assert apache.master_pid == master


def test_config_failing_its_test_is_refused_before_any_order(
    certherd: Certherd, apache: ApacheRoot
) -> None:
    apache.site("broken", "<VirtualHost *:1>\n    NoSuchDirective on\n</VirtualHost>\n")
    before = apache.snapshot()
    result = certherd(
        "issue", "-d", NAMES[0], *apache_flags(apache, free_port()), *certherd.ca,
        check=False, env=apache.env,
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert "Invalid command 'NoSuchDirective'" in result.stderr
    assert "broken.conf" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert apache.snapshot() == before
    assert not certherd.live(NAMES[0]).exists()


def test_install_for_an_existing_lineage_then_uninstall(
    certherd: Certherd, pebble: PebbleServer, apache: ApacheRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issued through the webroot Apache serves the site from, as before any installer.
    before = apache.snapshot()
    html = str(apache.root / "html")
    certherd("issue", "-d", NAMES[0], "--webroot", html, *certherd.ca)
    assert apache.snapshot() == before
    https_port = apache.ssl_port  # ports.conf's <IfModule ssl_module> Listen: none added
    # A relative server root is kept absolute: renewals run from another folder.
    monkeypatch.chdir(apache.root.parent)
    certherd("install", NAMES[0], "--apache", "--apache-server-root", apache.root.name,
             "--https-port", str(https_port), env=apache.env)  # fmt: skip
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number == leaf.serial_number
    tls = (apache.root / "sites-available" / f"{NAMES[0]}-certherd.conf").read_text()
    assert "Listen" not in tls
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"]["kind"] == "apache"
    assert stored["installer"]["options"]["server_root"] == str(apache.root)
    assert stored["installer"]["options"]["ctl"] == "apache2ctl"
    certherd("uninstall", NAMES[0], env=apache.env)
    assert apache.snapshot() == before


def test_name_no_vhost_serves_is_refused_before_any_order(
    certherd: Certherd, apache: ApacheRoot
) -> None:
    before = apache.snapshot()
    result = certherd(
        "issue", "-d", "nobody.apache.test", *apache_flags(apache, free_port()), *certherd.ca,
        check=False, env=apache.env,
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert "ServerAlias nobody.apache.test" in result.stderr
    assert apache.snapshot() == before
    assert not certherd.live("nobody.apache.test").exists()


def test_apply_installs_what_certherd_toml_names(
    certherd: Certherd, pebble: PebbleServer, apache: ApacheRoot
) -> None:
    """certherd.toml's ``installer = { kind = "apache", ... }``: the certificate is
    proved through that Apache (no solver of its own) and served by it after ``apply``,
    with ``redirect``: plain HTTP answers 301 to HTTPS, a renewal still proves the name
    over HTTP through it, and ``uninstall`` gives every file and link back."""
    https_port = free_port()
    before = apache.snapshot()
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    (certherd.config_dir / "certherd.toml").write_text(
        "[[certificate]]\n"
        f'domains = ["{NAMES[1]}"]\n'
        f"server = {json.dumps(pebble.directory_url)}\n"
        f"ca_bundle = {json.dumps(str(pebble.ca_bundle))}\n"
        'email = "apply@example.com"\n'
        "agree_tos = true\n"
        f'installer = {{ kind = "apache", server_root = {json.dumps(str(apache.root))}, '
        f"https_port = {https_port}, redirect = true }}\n"
    )
    certherd("apply", env=apache.env)
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[1]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[1]).serial_number == leaf.serial_number
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[1]}.json").read_text())
    assert stored["solvers"][0]["kind"] == "apache"
    with socket.create_connection((LOOPBACK, apache.http_port), timeout=5) as sock:
        sock.sendall(f"GET /x HTTP/1.1\r\nHost: {NAMES[1]}\r\nConnection: close\r\n\r\n".encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 301"), answer[:200]
    assert f"Location: https://{NAMES[1]}:{https_port}/x".encode() in answer
    certherd("renew", "--force", NAMES[1], env=apache.env)
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[1]) / "cert.pem").read_bytes())
    assert renewed.serial_number != leaf.serial_number
    assert served(pebble, https_port, NAMES[1]).serial_number == renewed.serial_number
    certherd("uninstall", NAMES[1], env=apache.env)
    assert apache.snapshot() == before


def test_a_restart_that_fails_after_renewal_is_owed_and_done_next_run(
    certherd: Certherd, pebble: PebbleServer, apache: ApacheRoot
) -> None:
    """Apache cannot be restarted (its PidFile gone) when a renewal is made live: the
    run exits 1 naming the installer, the restart is owed, and the next ``renew``
    (nothing due) does it: the new certificate is served."""
    html = str(apache.root / "html")
    certherd("issue", "-d", NAMES[0], "--webroot", html, *certherd.ca)
    https_port = free_port()
    certherd("install", NAMES[0], *apache_flags(apache, https_port), env=apache.env)
    pid_file = apache.run / "apache2.pid"
    hidden = pid_file.rename(apache.run / "apache2.pid.away")
    failed = certherd("--json", "renew", "--force", NAMES[0], check=False, env=apache.env)
    assert failed.code == 1, failed.describe()
    (result,) = failed.json()["results"]
    assert result["action"] == "renewed"
    assert any(
        "apache installer" in error and "not running" in error for error in result["hook_errors"]
    ), result
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number != renewed.serial_number
    hidden.rename(pid_file)
    again = certherd("--json", "renew", NAMES[0], env=apache.env).json()
    assert [r["action"] for r in again["results"]] == ["deployed"]
    assert served(pebble, https_port, NAMES[0]).serial_number == renewed.serial_number
