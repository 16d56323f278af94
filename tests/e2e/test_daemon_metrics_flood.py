"""``certherd run --metrics`` under a flood of idle connections (issue 9, item 8).

A local client holds 2,000 idle connections to the metrics port, opening a new one
whenever the daemon drops one, while the daemon must renew a certificate from Pebble.
The daemon starts with the soft ``RLIMIT_NOFILE`` of 1024 that systemd gives a service:
without a connection cap (and a raised limit) the flood takes every descriptor, and the
renewal cannot open a socket or a file. After the flood ends, ``/metrics`` answers again
at once.
"""

from __future__ import annotations

import contextlib
import errno
import re
import resource
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import live_problems, wait_until
from e2e_runner import Certherd, PebbleFactory
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

LIFETIME = 12
"""Pebble's certificate lifetime (s): due for renewal about 8 s after issuance."""
CONNECTIONS = 2000
RECONNECTS_PER_SECOND = 1000
"""Once the flood is up, connections the server closed are replaced at this rate."""
SERVICE_SOFT_LIMIT = 1024


@pytest.fixture(scope="module")
def short_lived(pebble_factory: PebbleFactory) -> PebbleServer:
    return pebble_factory(certificate_validity_seconds=LIFETIME)


@pytest.fixture
def runner(short_lived: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    certherd = Certherd(tmp_path / "config", short_lived, scratch)
    yield certherd
    certherd.stop_all()


@contextlib.contextmanager
def soft_file_limit(soft: int) -> Iterator[None]:
    """Processes started inside get ``soft`` as their soft RLIMIT_NOFILE (as a systemd
    service does by default); this process gets its own back afterwards."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    """The flooding client needs more than CONNECTIONS descriptors itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CONNECTIONS + 500
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"the hard RLIMIT_NOFILE is {hard}: raise it to {needed} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Flood:
    """Keeps COUNT idle connections to ``port`` open from a thread: never sends a byte,
    reads what the server says, and replaces every connection the server closes."""

    def __init__(self, port: int, count: int) -> None:
        self.address = ("127.0.0.1", port)
        self.count = count
        self.opened = 0
        self.dropped = 0
        self.busy_answers = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.errors.append(errno.errorcode.get(code, str(code)))
            return
        selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for _ in range(self.count):  # all at once: a flood, not a trickle
                self._open(selector)
            budget, last = 0.0, time.monotonic()
            while not self._stop.is_set():
                for key, _ in selector.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if data.startswith(b"HTTP/1.1 503"):
                        self.busy_answers += 1
                    if not data:
                        selector.unregister(sock)
                        sock.close()
                        self.dropped += 1
                now = time.monotonic()
                budget = min(budget + (now - last) * RECONNECTS_PER_SECOND, self.count)
                last = now
                missing = self.count - len(selector.get_map())
                while missing > 0 and budget >= 1:
                    self._open(selector)
                    missing -= 1
                    budget -= 1
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False)
    except httpx.HTTPError:
        return None


def _version_now(config_dir: Path, name: str) -> int:
    if live_problems(config_dir, name):
        return 0
    match = re.search(r"(\d+)\.pem$", (config_dir / "live" / name / "cert.pem").resolve().name)
    return int(match.group(1)) if match else 0


@pytest.mark.usefixtures("enough_descriptors")
def test_idle_connections_do_not_starve_a_renewal(runner: Certherd) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with soft_file_limit(SERVICE_SOFT_LIMIT):
        daemon = runner.start(
            "run", "--min-interval", "0.5", "--max-interval", "1", "--metrics", f"127.0.0.1:{port}"
        )
    wait_until(lambda: _get(f"{base}/health") is not None, 15, "the daemon's /health")

    with Flood(port, CONNECTIONS) as flood:
        wait_until(lambda: flood.opened >= CONNECTIONS, 10, f"{CONNECTIONS} connections")
        # Issued while the flood is up, so the daemon's renewal (due ~8 s later) is too.
        assert runner.issue("flood.test").json()["results"][0]["version"] == 1
        wait_until(
            lambda: _version_now(runner.config_dir, "flood.test") >= 2,
            LIFETIME * 2,
            "the daemon to renew flood.test during the flood",
        )
        assert flood.errors == []

    # The flood is gone: /metrics answers again at once (generous bound: 3 s).
    dropped = time.monotonic()
    wait_until(
        lambda: (answer := _get(f"{base}/metrics")) is not None and answer.status_code == 200,
        3,
        "/metrics to answer after the flood",
    )
    print(f"/metrics answered {time.monotonic() - dropped:.3f} s after the flood ended")
    shown = runner("--json", "show", "flood.test").json()
    assert (shown["version"] >= 2, shown["failures"]) == (True, 0)

    assert daemon.process.poll() is None, "the daemon died"
    daemon.process.send_signal(signal.SIGTERM)
    stopped = daemon.wait(timeout=10)
    assert stopped.code == 0, stopped.describe()
    # Not one cycle went without descriptors (before the fix: "Too many open files" when
    # listing the renewal folder, cycle after cycle, until the old 10 s timeout freed some).
    assert "Too many open files" not in stopped.stderr, stopped.stderr[-3000:]
    assert "failed" not in stopped.stderr, stopped.stderr[-3000:]
    assert flood.busy_answers > 0  # the cap turned connections away with a 503
