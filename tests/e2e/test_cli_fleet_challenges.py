"""http-01 and tls-alpn-01 answered by another certherd process than the one that ordered
(issue 12 item 5): ``issue --fleet-solver`` writes the key authorization into the
storage, and a ``run --http-serve`` / ``--tls-alpn-serve`` process answers Pebble's real
validation. The issuing process listens on nothing (the port is the other process's).

The same across hosts, on PostgreSQL, with each node in its own network namespace, is
tests/e2e/test_cli_fleet_netns.py.
"""

from __future__ import annotations

import contextlib
import re
import socket

import httpx
import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd, Running

from certherd.testing.pebble import PebbleServer


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(certherd: Certherd, *flags: str) -> Running:
    running = certherd.start("run", "--min-interval", "60", *flags)
    return running


@pytest.mark.parametrize(
    ("challenge", "flag", "port_of"),
    [
        ("http-01", "--http-serve", lambda p: p.options.http_port),
        ("tls-alpn-01", "--tls-alpn-serve", lambda p: p.options.tls_port),
    ],
)
def test_a_challenge_answered_by_the_serving_process_not_the_ordering_one(
    certherd: Certherd, pebble: PebbleServer, challenge: str, flag: str, port_of: object
) -> None:
    port = port_of(pebble)  # type: ignore[operator]
    metrics = free_port()
    server = serve(certherd, flag, f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{metrics}")
    wait_until(lambda: listening(port) and listening(metrics), 20, f"{flag} listening")
    name = f"{challenge.replace('-', '')}.shared.test"
    result = certherd(
        "--json", "issue", "-d", name, "--fleet-solver", challenge, *certherd.ca, "--force"
    )
    assert [r["action"] for r in result.json()["results"]] == ["issued"], result.describe()
    assert (certherd.live(name) / "fullchain.pem").is_file()
    # The records are gone once the order is done.
    assert not list((certherd.config_dir / "challenges" / challenge).rglob("*.json"))
    assert server.process.poll() is None, server.stderr_so_far()
    assert f"{challenge} answered on 127.0.0.1:{port}" in server.stderr_so_far()
    # /metrics counts what the listener answered (Pebble asks from 1 to 3 times).
    text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    found = re.search(
        rf'certherd_fleet_challenge_requests_total{{challenge="{challenge}",'
        r'result="answered"} (\d+)',
        text,
    )
    assert found, text
    assert int(found.group(1)) >= 1


def test_without_a_serving_node_nothing_is_presented_and_it_says_so(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    result = certherd(
        "--json", "issue", "-d", "nobody.shared.test", "--fleet-solver", "http-01",
        *certherd.ca, check=False,
    )  # fmt: skip
    assert result.code == 1, result.describe()
    assert [r["action"] for r in result.json()["results"]] == ["failed"]
    # Refused before the CA was told to validate: no failed validation at the CA.
    assert "no node of the fleet answers http-01" in result.stderr
    assert "--http-serve" in result.stderr


def test_a_serve_port_in_use_is_one_line_naming_the_flag_exit_2(certherd: Certherd) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = certherd("run", "--http-serve", f"127.0.0.1:{port}", check=False, timeout=30)
    assert result.code == 2, result.describe()
    errors = [line for line in result.stderr.splitlines() if line.startswith("certherd: error")]
    assert len(errors) == 1, result.stderr
    assert "--http-serve" in errors[0]
    assert "address already in use" in errors[0]
    assert "Traceback" not in result.stderr
    bad = certherd("run", "--tls-alpn-serve", "127.0.0.1:notaport", check=False, timeout=30)
    assert bad.code == 2, bad.describe()
    assert "--tls-alpn-serve" in bad.stderr


def test_check_fetches_the_probe_through_the_fleet_listener_and_fails_without_one(
    certherd: Certherd, pebble: PebbleServer
) -> None:
    port = pebble.options.http_port
    server = serve(certherd, "--http-serve", f"127.0.0.1:{port}")
    wait_until(lambda: listening(port), 20, f"--http-serve listening on {port}")
    certherd("--json", "issue", "-d", "127.0.0.1", "--fleet-solver", "http-01", *certherd.ca)
    served = certherd("check", "127.0.0.1", "--http-port", str(port), check=False)
    line = next(x for x in served.stdout.splitlines() if "http-01 127.0.0.1" in x)
    assert "  ok  " in line, served.describe()
    server.process.terminate()
    server.wait()
    # No node serves any more (it said goodbye in the storage): check fails that line.
    unserved = certherd("check", "127.0.0.1", "--http-port", str(port), check=False)
    assert unserved.code == 1, unserved.describe()
    line = next(x for x in unserved.stdout.splitlines() if "http-01 127.0.0.1" in x)
    assert "  FAIL  " in line, unserved.describe()
    assert "no node of the fleet answers http-01" in line
    assert not list((certherd.config_dir / "challenges").rglob("*.json"))
