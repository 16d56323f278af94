"""Notifications from ``certherd run`` itself (issue 14 item 2), on real receivers: the
expiring-soon event for a certificate the daemon could not renew, told once across a
restart of the daemon (the record is in storage, not in memory); and a receiver that
never finishes its answer holds up neither the other target nor the daemon's stop.

Pebble issues certificates valid for 12 s: a renewal is due, and a certificate
"expires soon" (a third of its lifetime left, below the notify_expiry_days of 1), 8 s
after issuance. The renewal fails because the http-01 port is taken.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import forget_authorizations, json_receiver, wait_until
from e2e_runner import Certherd, PebbleFactory, Running
from tests.servers.net import free_port

from certherd.testing.pebble import PebbleServer

LIFETIME = 6
SEND_TIMEOUT = 2
"""notify_timeout of the hanging receiver's test (the default, 20 s, would be waited)."""
NAME = "127.0.0.1"


@pytest.fixture(scope="module")
def short_lived(pebble_factory: PebbleFactory) -> PebbleServer:
    return pebble_factory(certificate_validity_seconds=LIFETIME, authz_reuse_percent=0)


@pytest.fixture
def certherd(short_lived: PebbleServer, tmp_path: Path) -> Iterator[Certherd]:
    scratch = tmp_path / "runs"
    scratch.mkdir()
    runner = Certherd(tmp_path / "config", short_lived, scratch)
    yield runner
    runner.stop_all()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """apprise's json:// posts, as received."""
    with json_receiver("hooks/receiver") as received:
        yield received


@pytest.fixture
def trickler() -> Iterator[tuple[str, list[bytes]]]:
    """A receiver that takes the request and never finishes its answer: one byte of its
    status line every half second, so no socket read ever times out."""
    requests: list[bytes] = []
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn:
            requests.append(conn.recv(65536))
            for byte in b"HTTP/1.1 200 OK still thinking" * 1000:
                if stop.wait(0.5):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"json://127.0.0.1:{listener.getsockname()[1]}/hooks/trickle", requests
    stop.set()
    listener.close()


def _issue(certherd: Certherd, env: dict[str, str]) -> None:
    notify = ["--notify-env", "CERTHERD_TEST_NOTIFY", "--notify-expiry-days", "1"]
    certherd("--json", "issue", "-d", NAME, *certherd.http, *certherd.ca, *notify, env=env)
    # The renewal must prove the name again (and fail on the taken port).
    server = certherd.server
    forget_authorizations(certherd.config_dir, server.directory_url, server.ca_bundle)


def _daemon(certherd: Certherd, env: dict[str, str]) -> tuple[Running, str]:
    port = free_port()
    args = ["--metrics", str(port), "--min-interval", "0.5", "--max-interval", "1"]
    running = certherd.start("run", *args, env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2, trust_env=False).status_code > 0
        except httpx.HTTPError:
            return False

    wait_until(up, 20, "the daemon's /healthz")
    return running, base


def _squat(port: int) -> socket.socket:
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    return squatter


def _titles(posts: list[dict[str, Any]]) -> list[str]:
    return [post["title"] for post in posts]


def test_the_daemon_tells_expiring_once_even_across_a_restart(
    certherd: Certherd, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, posts = receiver
    env = {"CERTHERD_TEST_NOTIFY": url}
    _issue(certherd, env)
    expiring = f"certherd: certificate expires soon: {NAME}"
    with _squat(certherd.server.options.http_port):
        running, base = _daemon(certherd, env)
        wait_until(lambda: expiring in _titles(posts), 30, "the expiring-soon message")
        [told] = [post for post in posts if post["title"] == expiring]
        assert "was not renewed" in told["message"], told
        assert "attempts failed in a row: 1" in told["message"], told
        assert f"certherd: renewal failed: {NAME}" in _titles(posts)
        running.process.send_signal(signal.SIGTERM)
        assert running.wait(timeout=40).code == 0
        record = json.loads((certherd.config_dir / "notify" / f"{NAME}.json").read_text())
        assert set(record) == {"failed", "expiring"}, record
        seen = list(posts)

        # A new daemon: the certificate is still failing, soon expired; nothing is told
        # again within the interval (the cycles below run every second).
        running, base = _daemon(certherd, env)
        wait_until(
            lambda: httpx.get(f"{base}/healthz", trust_env=False).status_code == 503,
            30,
            "the certificate to expire",
        )
        time.sleep(3)  # three more cycles
        running.process.send_signal(signal.SIGTERM)
        assert running.wait(timeout=40).code == 0
    assert posts == seen, _titles(posts)


def test_a_receiver_that_hangs_holds_up_neither_other_targets_nor_the_stop(
    certherd: Certherd,
    receiver: tuple[str, list[dict[str, Any]]],
    trickler: tuple[str, list[bytes]],
) -> None:
    working, posts = receiver
    hanging, requests = trickler
    env = {"CERTHERD_TEST_NOTIFY": hanging}
    _issue(certherd, env)
    # Both targets, the hanging one first: certherd.toml takes several.
    server = certherd.server
    listen = f"127.0.0.1:{server.options.http_port}"
    (certherd.config_dir / "certherd.toml").write_text(
        f'[[certificate]]\ndomains = ["{NAME}"]\n'
        'notify = [{ env = "CERTHERD_TEST_NOTIFY" }, { env = "CERTHERD_TEST_WORKING" }]\n'
        f"notify_expiry_days = 1\nnotify_timeout = {SEND_TIMEOUT}\n"
        f'solver = "http"\nsolver_options = {{ listen = "{listen}" }}\n'
        f'server = "{server.directory_url}"\nca_bundle = "{server.ca_bundle}"\n'
        'email = "e2e@example.com"\nagree_tos = true\n'
    )
    env["CERTHERD_TEST_WORKING"] = working
    with _squat(certherd.server.options.http_port):
        running, _ = _daemon(certherd, env)
        failed = f"certherd: renewal failed: {NAME}"
        # The working target is told at once, while the other still hangs (before: it
        # waited behind it for ever).
        wait_until(lambda: failed in _titles(posts), 30, "the failure at the working target")
        assert requests, "the hanging receiver was never asked"
        stopping = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        # The daemon ends (before: never, its exit waited for the hanging thread).
        result = running.wait(timeout=SEND_TIMEOUT + 40)
    assert result.code == 0, result.describe()
    assert time.monotonic() - stopping < SEND_TIMEOUT + 35
    lines = [line for line in result.stderr.splitlines() if "notification to notify[0]" in line]
    assert lines, result.stderr
    assert f"no answer within {SEND_TIMEOUT:g} s" in lines[0], lines
    # A later message of the same cycle skips it while it hangs; the other target has it.
    assert "an earlier message to it has not returned yet: skipped" in lines[1], lines
    assert f"certherd: certificate expires soon: {NAME}" in _titles(posts)
    assert "trickle" not in result.stderr  # the URL is never shown
