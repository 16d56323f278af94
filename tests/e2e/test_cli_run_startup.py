"""``certherd run`` that cannot start: one line naming what is wrong and how to fix it,
exit 2 (configuration), no traceback, and no "daemon stopped" for a daemon that never
started (nor the notices of listeners it took down again).

Each case runs the real CLI in a subprocess; a port "in use" is held by a real socket.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd, Result
from tests.servers.net import free_port

from certherd.daemon.throttle import LOCKOUT, MAX_FAILURES

STARTUP_TIMEOUT = 60.0
"""Seconds: each of these runs ends on its own, at once; a hang fails the test."""


@pytest.fixture
def held() -> Iterator[int]:
    """A port on 127.0.0.1 (and every address) that another program listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _auth_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "users"
    path.write_text("ops:correct horse battery\n")
    path.chmod(mode)
    return path


def _failed_to_start(result: Result, *words: str) -> str:
    """The one line of a run that could not start, checked."""
    assert result.code == 2, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("certherd: error: "), result.describe()
    assert "stopped" not in result.stderr, result.describe()
    assert "started" not in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    for word in words:
        assert word in lines[0], result.describe()
    assert result.stdout == "", result.describe()
    return lines[0]


def _run(certherd: Certherd, *args: str) -> Result:
    try:
        return certherd("run", *args, check=False, timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"certherd run {' '.join(args)} did not end: it must refuse to start")


def test_a_metrics_port_in_use(certherd: Certherd, held: int) -> None:
    line = _failed_to_start(_run(certherd, "--metrics", f"127.0.0.1:{held}"), "--metrics")
    assert f"127.0.0.1:{held}" in line, line
    assert "address already in use" in line, line
    assert "another program listens there" in line, line
    assert "error while attempting to bind" not in line, line  # asyncio's wording, once


def test_a_metrics_address_not_of_this_host(certherd: Certherd) -> None:
    line = _failed_to_start(_run(certherd, "--metrics", "192.0.2.1:9469"), "--metrics")
    assert "no interface of this host has that address" in line, line


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "[::1"])
def test_a_metrics_address_that_is_no_address(certherd: Certherd, address: str) -> None:
    _failed_to_start(_run(certherd, "--metrics", address), "--metrics", repr(address))


def test_a_challenge_listener_port_in_use(certherd: Certherd, held: int) -> None:
    # The metrics listener would start after it: nothing may be told of either.
    metrics = str(free_port())
    for flag in ("--http-serve", "--tls-alpn-serve"):
        result = _run(certherd, flag, f"127.0.0.1:{held}", "--metrics", metrics)
        line = _failed_to_start(result, flag, "address already in use")
        assert "answered on" not in line, line


def test_a_metrics_port_in_use_after_a_challenge_listener_started(
    certherd: Certherd, held: int
) -> None:
    """The http-01 listener started, then --metrics failed: one line, no notice of the
    listener that was taken down again."""
    result = _run(certherd, "--http-serve", f"127.0.0.1:{free_port()}", "--metrics", str(held))
    _failed_to_start(result, "--metrics", "address already in use")


def test_metrics_auth_files_that_cannot_serve(certherd: Certherd, tmp_path: Path) -> None:
    port = str(free_port())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # opened naively, this blocks the start for ever
    link = tmp_path / "link"
    link.symlink_to(_auth_file(tmp_path))
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    empty.chmod(0o600)
    cases = {
        str(tmp_path / "missing"): "cannot be read: No such file or directory",
        str(tmp_path): "not a regular file",
        str(fifo): "not a regular file",
        str(link): "is a symbolic link",
        str(empty): "names no user",
    }
    for path, problem in cases.items():
        result = _run(certherd, "--metrics", port, "--metrics-auth", path)
        _failed_to_start(result, "--metrics-auth", path, problem)
    loose = _auth_file(tmp_path, 0o644)
    result = _run(certherd, "--metrics", port, "--metrics-auth", str(loose))
    _failed_to_start(result, "--metrics-auth", "chmod 600")


def test_a_broken_certherd_toml_stops_the_start(certherd: Certherd) -> None:
    """A certherd.toml that does not load would fail every cycle: run refuses to start
    (before: the daemon started and failed a cycle every 5 minutes)."""
    certherd.config_dir.mkdir(mode=0o700)
    (certherd.config_dir / "certherd.toml").write_text("[[certificate]]\ndomains = 5\n")
    _failed_to_start(_run(certherd, "--metrics", str(free_port())), "certherd.toml:2")


def test_a_config_dir_others_may_change_stops_the_start(certherd: Certherd) -> None:
    certherd.config_dir.mkdir()
    certherd.config_dir.chmod(0o777)
    _failed_to_start(_run(certherd), "not safe for keys and hooks", "mode 0777")


def test_a_running_daemon_turns_away_an_address_guessing_passwords(
    certherd: Certherd, tmp_path: Path
) -> None:
    """The real daemon: 10 wrong credentials from one address, then 429 with Retry-After
    for that address (right credentials included), other addresses and /healthz served,
    and the counts in /metrics."""
    users = _auth_file(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    running = certherd.start("run", "--metrics", str(port), "--metrics-auth", str(users))

    def get(path: str, source: str = "127.0.0.1", **options: object) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, trust_env=False, timeout=5) as client:
            return client.get(f"{base}{path}", **options)  # type: ignore[arg-type]

    def up() -> bool:
        try:
            return get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 20, "the daemon's /healthz")
    right = ("ops", "correct horse battery")
    for attempt in range(MAX_FAILURES):
        assert get("/", auth=("ops", f"guess {attempt}")).status_code == 401, attempt
    refused = get("/metrics", auth=right)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == str(int(LOCKOUT))
    assert get("/healthz").status_code == 200
    scraped = get("/metrics", "127.0.0.3", auth=right)
    assert scraped.status_code == 200, scraped.text
    assert "certherd_http_auth_failures_total 10.0" in scraped.text, scraped.text
    assert "certherd_http_auth_lockouts_total 1.0" in scraped.text, scraped.text
    assert "certherd_http_auth_throttled_total 1.0" in scraped.text, scraped.text
    running.process.terminate()
    assert running.wait(timeout=30).code == 0
