"""``certherd issue --nginx`` end to end: Pebble validates http-01 through a real nginx
(Debian's, in a temporary server root, on the port Pebble's validator asks), certherd
adds TLS to the matching server blocks, ``renew --force`` swaps the certificate with a
graceful reload while a request loop sees no failure, ``uninstall`` gives the config's
bytes back, and a config that fails nginx's own test is refused with nothing changed.
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
from tests.servers.fixtures import start_or_fail
from tests.servers.net import LOOPBACK, free_port
from tests.servers.nginx import NginxRoot

from certherd.testing.pebble import PebbleServer

NAMES = ("shop.nginx.test", "www.blog.nginx.test")
SITES = """# the user's sites: one exact name, one wildcard, and a default
server {
    listen 127.0.0.1:{port};
    server_name shop.nginx.test;
    root {html};
    location / { try_files $uri $uri/ =404; }
}
server {
	listen 127.0.0.1:{port};   # tabs and a comment
	server_name *.blog.nginx.test;
	root {html};
}
server { listen 127.0.0.1:{port} default_server; server_name _; return 444; }
"""


@pytest.fixture
def nginx(pebble: PebbleServer) -> Iterator[NginxRoot]:
    """nginx on the port Pebble validates http-01 on, with the user's sites."""
    root = NginxRoot(http_port=pebble.options.http_port)
    text = SITES.replace("{port}", str(root.http_port)).replace("{html}", str(root.root / "html"))
    root.site("default", text)
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


def nginx_flags(nginx: NginxRoot, https_port: int) -> list[str]:
    return ["--nginx", "--nginx-server-root", str(nginx.root), "--https-port", str(https_port)]


def test_issue_renew_without_downtime_then_uninstall(
    certherd: Certherd, pebble: PebbleServer, nginx: NginxRoot
) -> None:
    before = nginx.snapshot()
    https_port = free_port()
    domains = [flag for name in NAMES for flag in ("-d", name)]
    certherd("issue", *domains, *nginx_flags(nginx, https_port), *certherd.ca)
    fullchain = x509.load_pem_x509_certificates(
        (certherd.live(NAMES[0]) / "fullchain.pem").read_bytes()
    )
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == fullchain[0].serial_number
    assert not (nginx.root / "certherd" / "acme-challenge.conf").exists()  # removed after
    master = nginx.master_pid

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
        certherd("renew", "--force", NAMES[0])
    finally:
        done.set()
        worker.join(timeout=30)
    assert failures == []
    assert answered > 10  # the loop ran through the renewal
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert renewed.serial_number != fullchain[0].serial_number
    for name in NAMES:
        assert served(pebble, https_port, name).serial_number == renewed.serial_number
    assert nginx.master_pid == master
    assert nginx.snapshot() != before

    removed = certherd("--json", "uninstall", NAMES[0]).json()
    assert removed == {"lineage": NAMES[0], "removed": True}
    assert nginx.snapshot() == before
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"] is None


def test_config_failing_its_test_is_refused_before_any_order(
    certherd: Certherd, nginx: NginxRoot
) -> None:
    nginx.site("broken", "server {\n    listen 127.0.0.1:1;\n    no_such_directive on;\n}\n")
    before = nginx.snapshot()
    result = certherd(
        "issue", "-d", NAMES[0], *nginx_flags(nginx, free_port()), *certherd.ca, check=False
    )
    assert result.code == 2, result.describe()
    assert 'unknown directive "no_such_directive"' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert nginx.snapshot() == before
    assert not certherd.live(NAMES[0]).exists()


def test_install_for_an_existing_lineage(
    certherd: Certherd, pebble: PebbleServer, nginx: NginxRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issued through the webroot nginx serves the site from, as before any installer.
    html = str(nginx.root / "html")
    certherd("issue", "-d", NAMES[0], "--webroot", html, *certherd.ca)
    https_port = free_port()
    unnamed = certherd("install", NAMES[0], check=False)  # no web server in its settings
    assert unnamed.code == 2, unnamed.describe()
    assert "give one (--nginx, --apache or --haproxy)" in unnamed.stderr
    # A relative server root is kept absolute: renewals run from another folder.
    monkeypatch.chdir(nginx.root.parent)
    certherd("install", NAMES[0], "--nginx", "--nginx-server-root", nginx.root.name,
             "--https-port", str(https_port))  # fmt: skip
    fullchain = certherd.live(NAMES[0]) / "fullchain.pem"
    leaf = x509.load_pem_x509_certificates(fullchain.read_bytes())[0]
    assert served(pebble, https_port, NAMES[0]).serial_number == leaf.serial_number
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[0]}.json").read_text())
    assert stored["installer"]["kind"] == "nginx"
    assert stored["installer"]["options"]["server_root"] == str(nginx.root)
    shown = " ".join(certherd("show", NAMES[0]).stdout.split())
    assert f"nginx (ctl nginx, https_port {https_port}, redirect false, server_root" in shown
    assert certherd("--json", "show", NAMES[0]).json()["installer"]["kind"] == "nginx"


def test_name_no_server_block_serves_is_refused_before_any_order(
    certherd: Certherd, nginx: NginxRoot
) -> None:
    before = nginx.snapshot()
    result = certherd(
        "issue", "-d", "nobody.nginx.test", *nginx_flags(nginx, free_port()), *certherd.ca,
        check=False,
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert "server_name nobody.nginx.test" in result.stderr
    assert nginx.snapshot() == before
    assert not certherd.live("nobody.nginx.test").exists()
    assert not (certherd.config_dir / "renewal" / "nobody.nginx.test.json").exists()


def test_apply_installs_what_certherd_toml_names(
    certherd: Certherd, pebble: PebbleServer, nginx: NginxRoot
) -> None:
    """certherd.toml's ``installer = { kind = "nginx", ... }``: the certificate is proved
    through that nginx (no solver of its own) and served by it after ``apply``."""
    https_port = free_port()
    certherd.config_dir.mkdir(parents=True, exist_ok=True)
    (certherd.config_dir / "certherd.toml").write_text(
        "[[certificate]]\n"
        f'domains = ["{NAMES[1]}"]\n'
        f"server = {json.dumps(pebble.directory_url)}\n"
        f"ca_bundle = {json.dumps(str(pebble.ca_bundle))}\n"
        'email = "apply@example.com"\n'
        "agree_tos = true\n"
        f'installer = {{ kind = "nginx", server_root = {json.dumps(str(nginx.root))}, '
        f"https_port = {https_port}, redirect = true }}\n"
    )
    certherd("apply")
    leaf = x509.load_pem_x509_certificate((certherd.live(NAMES[1]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[1]).serial_number == leaf.serial_number
    stored = json.loads((certherd.config_dir / "renewal" / f"{NAMES[1]}.json").read_text())
    assert stored["solvers"][0]["kind"] == "nginx"
    assert stored["installer"]["options"]["redirect"] == "true"


def test_a_reload_that_fails_after_renewal_is_owed_and_done_next_run(
    certherd: Certherd, pebble: PebbleServer, nginx: NginxRoot
) -> None:
    """nginx cannot be reloaded (its pid file gone) when a renewal is made live: the run
    exits 1 naming the installer, the reload is owed, and the next ``renew`` (nothing
    due) does it: the new certificate is served."""
    html = str(nginx.root / "html")
    certherd("issue", "-d", NAMES[0], "--webroot", html, *certherd.ca)
    https_port = free_port()
    certherd("install", NAMES[0], *nginx_flags(nginx, https_port))
    pid_file = nginx.root / "nginx.pid"
    hidden = pid_file.rename(nginx.root / "nginx.pid.away")
    failed = certherd("--json", "renew", "--force", NAMES[0], check=False)
    assert failed.code == 1, failed.describe()
    (result,) = failed.json()["results"]
    assert result["action"] == "renewed"
    assert any("nginx installer" in error for error in result["hook_errors"])
    renewed = x509.load_pem_x509_certificate((certherd.live(NAMES[0]) / "cert.pem").read_bytes())
    assert served(pebble, https_port, NAMES[0]).serial_number != renewed.serial_number
    hidden.rename(pid_file)
    again = certherd("--json", "renew", NAMES[0]).json()
    assert [r["action"] for r in again["results"]] == ["deployed"]
    assert served(pebble, https_port, NAMES[0]).serial_number == renewed.serial_number
