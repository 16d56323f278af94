"""``certherd run`` makes each new version live in the web server it is installed in
(issue 13: "``renew`` and the daemon reload or hot-swap after each new version"), on
the real servers: nginx reloads gracefully (master pid unchanged), HAProxy hot-swaps
through its runtime socket (master and worker unchanged), Apache restarts gracefully
(parent pid unchanged); a request loop over HTTPS through the daemon's renewals sees no
failure.

Pebble issues certificates valid for 6 s, so one is due about 4 s after issuance and
the daemon alone renews it; nothing but the daemon runs after ``issue``.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from e2e_helpers import live_problems, wait_until
from e2e_runner import Certherd, PebbleFactory
from tests.servers.apache import ApacheRoot
from tests.servers.fixtures import start_or_fail
from tests.servers.haproxy import HaproxyRoot
from tests.servers.net import LOOPBACK, ServerStartError, free_port
from tests.servers.nginx import NginxRoot

from certherd.testing.pebble import PebbleServer

LIFETIME = 6
NAME = "daemon.install.test"
RENEWALS = 2
"""How many renewals of the daemon each test waits for (each made live in the server)."""


@pytest.fixture(scope="module")
def short_lived(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble issuing certificates valid for LIFETIME seconds."""
    return pebble_factory(certificate_validity_seconds=LIFETIME)


@pytest.fixture
def runner(short_lived: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    certherd = Certherd(tmp_path / "config", short_lived, scratch)
    yield certherd
    certherd.stop_all()


X509_V_FLAG_NO_CHECK_TIME = 0x200000
"""OpenSSL's flag (x509_vfy.h) to verify a chain without its validity dates."""


def _context(pebble: PebbleServer) -> ssl.SSLContext:
    """Verifies the chain up to Pebble's root and the name, not the dates: a 6-second
    certificate may run out while a loaded machine runs the daemon's next order, which
    says nothing of the server (what is served is checked by serial)."""
    context = ssl.create_default_context(cadata=pebble.roots_pem(0).decode())
    context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    return context


def served_serial(pebble: PebbleServer, port: int, name: str = NAME) -> int:
    """The serial of the certificate on ``port`` for ``name``, verified against Pebble's
    root."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        _context(pebble).wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def fetch(pebble: PebbleServer, port: int, name: str = NAME) -> bytes:
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        _context(pebble).wrap_socket(sock, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def live_serial(config_dir: Path) -> int | None:
    """The live certificate's serial, None while the daemon is publishing a version."""
    if live_problems(config_dir, NAME):
        return None
    try:
        cert = (config_dir / "live" / NAME / "cert.pem").read_bytes()
    except OSError:
        return None
    return x509.load_pem_x509_certificate(cert).serial_number


class RequestLoop:
    """HTTPS requests (a new TLS connection each) until stopped: what fails and how many
    were answered."""

    def __init__(self, pebble: PebbleServer, port: int) -> None:
        self.failures: list[str] = []
        self.answered = 0
        self._done = threading.Event()

        def loop() -> None:
            while not self._done.is_set():
                try:
                    answer = fetch(pebble, port)
                    if not answer.startswith(b"HTTP/1.1 200"):
                        self.failures.append(answer[:80].decode(errors="replace"))
                    self.answered += 1
                except OSError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)

        self._thread = threading.Thread(target=loop)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=30)


def daemon_renews_into_the_server(
    runner: Certherd, https_port: int, env: dict[str, str] | None = None, renewals: int = RENEWALS
) -> tuple[list[int], RequestLoop]:
    """Start ``certherd run``; wait until the server has served ``renewals`` new versions
    (each the live one as the daemon made it). The serials served, the request loop
    (stopped); the daemon is stopped with SIGTERM and must exit 0."""
    first = served_serial(runner.server, https_port)
    assert first == live_serial(runner.config_dir)
    seen = [first]
    loop = RequestLoop(runner.server, https_port)
    daemon = runner.start("run", "--min-interval", "0.5", env=env)
    try:

        def the_next_version_is_served() -> bool:
            if daemon.process.poll() is not None:
                raise AssertionError(f"the daemon stopped: {daemon.stderr_so_far()}")
            live = live_serial(runner.config_dir)
            if live is None or live == seen[-1]:
                return False
            try:
                served = served_serial(runner.server, https_port)
            except (OSError, ssl.SSLError):
                return False  # counted by the request loop, if it is not a moment's race
            if served != live:
                return False
            seen.append(served)
            return True

        for _ in range(renewals):
            wait_until(the_next_version_is_served, 5 * LIFETIME, "the daemon's next version")
    finally:
        loop.stop()
        daemon.process.send_signal(signal.SIGTERM)
        stopped = daemon.wait(timeout=20)
    assert stopped.code == 0, stopped.describe()
    assert "installer" not in stopped.stderr, stopped.stderr  # no failed reload or swap
    return seen, loop


def assert_no_request_lost(loop: RequestLoop) -> None:
    assert loop.failures == []
    assert loop.answered > 10  # the loop ran through the renewals


def test_the_daemon_reloads_nginx_after_each_new_version(
    runner: Certherd, short_lived: PebbleServer
) -> None:
    nginx = NginxRoot(http_port=short_lived.options.http_port)
    nginx.site(
        "default",
        f"server {{\n    listen 127.0.0.1:{nginx.http_port};\n    server_name {NAME};\n"
        f"    root {nginx.root / 'html'};\n}}\n",
    )
    start_or_fail(nginx)
    try:
        https_port = free_port()
        runner("issue", "-d", NAME, "--nginx", "--nginx-server-root", str(nginx.root),
               "--https-port", str(https_port), *runner.ca)  # fmt: skip
        master = nginx.master_pid
        seen, loop = daemon_renews_into_the_server(runner, https_port)
        assert len(set(seen)) == RENEWALS + 1
        assert nginx.master_pid == master  # reloaded, never restarted
        assert_no_request_lost(loop)
    finally:
        nginx.stop()


def test_the_daemon_hot_swaps_haproxy_after_each_new_version(
    runner: Certherd, short_lived: PebbleServer
) -> None:
    haproxy = start_or_fail(HaproxyRoot())
    try:
        https_port = free_port()
        runner("issue", "-d", NAME, "--haproxy", "--haproxy-config", str(haproxy.config),
               "--haproxy-crt-dir", str(haproxy.crt_dir), "--haproxy-socket",
               str(haproxy.socket), "--https-port", str(https_port), *runner.http,
               *runner.ca)  # fmt: skip
        master, worker = haproxy.master_pid, haproxy.worker()
        seen, loop = daemon_renews_into_the_server(runner, https_port)
        assert len(set(seen)) == RENEWALS + 1
        # Swapped through the runtime API each time: no reload, the same processes.
        assert haproxy.master_pid == master
        assert haproxy.workers() == {worker}
        assert_no_request_lost(loop)
    finally:
        haproxy.stop()


def test_the_daemon_restarts_apache_gracefully_after_each_new_version(
    runner: Certherd, short_lived: PebbleServer
) -> None:
    try:
        apache = ApacheRoot(http_port=short_lived.options.http_port)
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    html = apache.root / "html"
    apache.site(
        "daemon",
        f"<VirtualHost *:{apache.http_port}>\n    ServerName {NAME}\n"
        f"    DocumentRoot {html}\n</VirtualHost>\n",
    )
    start_or_fail(apache)
    try:
        https_port = free_port()
        runner("issue", "-d", NAME, "--apache", "--apache-server-root", str(apache.root),
               "--https-port", str(https_port), *runner.ca, env=apache.env)  # fmt: skip
        parent = apache.master_pid
        # One renewal: each takes ~8 s, and the other two servers show the second.
        seen, loop = daemon_renews_into_the_server(runner, https_port, apache.env, 1)
        assert len(set(seen)) == 2
        assert apache.master_pid == parent  # graceful, never a restart
        assert_no_request_lost(loop)
    finally:
        apache.stop()
