"""The fleet's challenge listeners are no lever on the database (issue 12 item 5).

``run --http-serve`` / ``--tls-alpn-serve`` face the public load balancer. A flood of
made-up tokens (or SNI names) must not become database load: the listeners answer from
an in-memory view of the pending key authorizations that follows the database by
LISTEN/NOTIFY (certherd.challenges.view). Counted on a real PostgreSQL with
pg_stat_statements (every statement certherd's role ran on the database), and then a
real validation by Pebble (which validates at once) still succeeds through the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from e2e_helpers import wait_until
from e2e_runner import Certherd
from tests.servers.net import ServerStartError
from tests.servers.postgres import PostgresServer

from certherd.testing.pebble import PebbleServer

FLOOD = 1000


@pytest.fixture(scope="module")
def counted() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own that counts every statement (pg_stat_statements)."""
    server = PostgresServer(preload=("pg_stat_statements",))
    try:
        server.start()
    except ServerStartError as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def metric(port: int, name: str, labels: str = "") -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def statements(server: PostgresServer, database: str) -> dict[str, int]:
    """Calls of each statement certherd's role ran on ``database`` since the reset."""
    rows = server.execute(
        "SELECT s.query, s.calls FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid"
        f" WHERE r.rolname = 'certherd' AND d.datname = '{database}'",
        database,
    )
    return {str(query): int(calls) for query, calls in rows}


def reads_of_values(counts: dict[str, int]) -> int:
    """Statements that read certherd_values (a record looked up, or listed)."""
    return sum(
        calls
        for query, calls in counts.items()
        if "certherd_values" in query and query.lstrip().upper().startswith("SELECT")
    )


async def flood_http(port: int) -> list[int]:
    tokens = [secrets.token_urlsafe(32) for _ in range(FLOOD)]  # 43 base64url characters
    tokens += ["..%2f..%2frenewal", "short", "x" * 600, "a.b" * 10]  # not tokens at all
    limit = asyncio.Semaphore(200)

    async def one(client: httpx.AsyncClient, token: str) -> int:
        async with limit:
            url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
            return (await client.get(url)).status_code

    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=200)) as client:
        return list(await asyncio.gather(*(one(client, token) for token in tokens)))


def handshake(port: int, name: str) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["acme-tls/1"])
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return "certificate"
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


def flood_tls(port: int, count: int) -> list[str]:
    names = [f"{secrets.token_hex(8)}.flood.test" for _ in range(count)]
    with ThreadPoolExecutor(50) as pool:
        return list(pool.map(lambda name: handshake(port, name), names))


@pytest.mark.parametrize(
    ("challenge", "flag"), [("http-01", "--http-serve"), ("tls-alpn-01", "--tls-alpn-serve")]
)
def test_a_flood_of_made_up_tokens_reads_nothing_and_a_real_validation_succeeds(
    certherd: Certherd, pebble: PebbleServer, counted: PostgresServer, challenge: str, flag: str
) -> None:
    database = counted.database()
    counted.execute("CREATE EXTENSION pg_stat_statements", database)
    url = counted.url(database)
    port = pebble.options.http_port if challenge == "http-01" else pebble.options.tls_port
    metrics = free_port()
    server = certherd.start(
        "--storage", url, "run", "--min-interval", "60",
        flag, f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{metrics}",
    )  # fmt: skip
    wait_until(lambda: listening(port) and listening(metrics), 30, f"{flag} listening")
    # The listener hears of new key authorizations by notification, not by polling.
    wait_until(
        lambda: metric(metrics, "certherd_fleet_challenge_notified") == 1.0,
        30,
        "the challenge view listening",
    )
    calls_before = metric(metrics, "certherd_fleet_challenge_storage_calls_total")
    counted.execute("SELECT pg_stat_statements_reset()", database)

    if challenge == "http-01":
        answers = asyncio.run(flood_http(port))
        assert set(answers) == {404}, answers[:10]
    else:
        refused = flood_tls(port, FLOOD // 5)
        assert "certificate" not in refused, refused[:10]
    counts = statements(counted, database)
    # Before the view: one read per request (1,000 for http-01, 200 listings for
    # tls-alpn-01). Now none; the view's 30 s safety-net look may fall in the window.
    assert reads_of_values(counts) <= 1, counts
    assert metric(metrics, "certherd_fleet_challenge_storage_calls_total") <= calls_before + 1
    assert server.process.poll() is None, server.stderr_so_far()

    # A real validation right after the key authorization is written (Pebble does not wait).
    name = f"{challenge.replace('-', '')}.flood.test"
    issued = certherd(
        "--json", "--storage", url, "issue", "-d", name, "--fleet-solver", challenge,
        *certherd.ca, "--force", check=False,
    )  # fmt: skip
    outcome = [r["action"] for r in issued.json()["results"]]
    assert outcome == ["issued"], issued.describe() + server.stderr_so_far()[-2000:]
    labels = f'{{challenge="{challenge}",result="answered"}}'
    assert metric(metrics, "certherd_fleet_challenge_requests_total", labels) >= 1
