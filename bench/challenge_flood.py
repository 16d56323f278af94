"""What a flood of made-up http-01 tokens costs the fleet's database, and how fast a real
key authorization is answered (``run --http-serve`` on PostgreSQL).

    python bench/challenge_flood.py [--source SRC] [--requests 1000]

``--source``: the ``src`` folder of the certherd to measure (default: this checkout's);
give an older one (``git archive OLD src | tar -x -C /tmp/old``) to compare. Starts its
own PostgreSQL with pg_stat_statements (Debian's ``postgresql``), one listener process
(``certherd --storage URL run --http-serve``), writes one key authorization straight
into the database, then:

- sends ``--requests`` GETs of random base64url tokens (200 at a time) and counts the
  statements certherd's role ran meanwhile (pg_stat_statements);
- GETs the real token ``--requests`` times, one after the other: median and p95 latency.

Prints one JSON object. Loopback only; stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.servers.postgres import PostgresServer  # noqa: E402

THUMBPRINT = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def count(server: PostgresServer, database: str) -> dict[str, int]:
    rows = server.execute(
        "SELECT s.query, s.calls FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid"
        f" WHERE r.rolname = 'certherd' AND d.datname = '{database}'",
        database,
    )
    return {str(query): int(calls) for query, calls in rows}


async def flood(port: int, requests: int) -> list[int]:
    import httpx

    limit = asyncio.Semaphore(200)

    async def one(client: httpx.AsyncClient) -> int:
        async with limit:
            token = secrets.token_urlsafe(32)
            url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
            return (await client.get(url)).status_code

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(requests))))


def latencies(port: int, token: str, requests: int) -> list[float]:
    import httpx

    taken = []
    url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
    with httpx.Client(timeout=30) as client:
        for _ in range(requests):
            start = time.perf_counter()
            answer = client.get(url)
            taken.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise SystemExit(f"the real token got {answer.status_code}")
    return taken


def insert(server: PostgresServer, database: str) -> str:
    """A key authorization written straight into the database (as a node's solver does)."""
    token = secrets.token_urlsafe(32)
    record = {
        "challenge": "http-01",
        "token": token,
        "key_authorization": f"{token}.{THUMBPRINT}",
        "identifier": "bench.test",
        "lineage": "bench.test",
        "expires": time.time() + 3600,
    }
    data = json.dumps(record).encode()
    server.execute(
        "INSERT INTO certherd_values (key, data, size, private, modified, version) VALUES"
        f" ('challenges/http-01/{token}.json', '\\x{data.hex()}'::bytea, {len(data)},"
        " false, now(), nextval('certherd_value_versions'))",
        database,
    )
    return token


def new_record_served(server: PostgresServer, database: str, port: int) -> float:
    """Seconds from a key authorization's commit until the listener answers it."""
    import httpx

    with httpx.Client(timeout=30) as client:
        client.get(f"http://127.0.0.1:{port}/")  # the client ready before the clock starts
        token = insert(server, database)
        start = time.perf_counter()
        url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
        while client.get(url).status_code != 200:
            if time.perf_counter() - start > 10:
                raise SystemExit("a new key authorization was not answered within 10 s")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO / "src")
    parser.add_argument("--requests", type=int, default=1000)
    options = parser.parse_args()
    server = PostgresServer(preload=("pg_stat_statements",))
    server.start()
    listener: subprocess.Popen[bytes] | None = None
    try:
        database = server.database()
        server.execute("CREATE EXTENSION pg_stat_statements", database)
        url = server.url(database)
        port = free_port()
        folder = Path(tempfile.mkdtemp(prefix="certherd-flood-"))
        env = dict(os.environ, PYTHONPATH=str(options.source.resolve()))
        listener = subprocess.Popen(
            [sys.executable, "-m", "certherd", "--storage", url, "--config-dir", str(folder),
             "run", "--min-interval", "60", "--http-serve", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(port)
        time.sleep(2)  # the listener's first look and LISTEN, where it has them
        token = insert(server, database)
        time.sleep(0.5)
        server.execute("SELECT pg_stat_statements_reset()", database)
        started = time.perf_counter()
        answers = asyncio.run(flood(port, options.requests))
        flood_seconds = time.perf_counter() - started
        during = count(server, database)
        taken = sorted(latencies(port, token, options.requests))
        served = [new_record_served(server, database, port) for _ in range(20)]
        print(
            json.dumps(
                {
                    "source": str(options.source),
                    "random_token_requests": options.requests,
                    "answers": sorted(set(answers)),
                    "flood_seconds": round(flood_seconds, 2),
                    "statements_during_flood": sum(during.values()),
                    "statements": during,
                    "real_token_ms_median": round(statistics.median(taken) * 1000, 3),
                    "real_token_ms_p95": round(taken[int(len(taken) * 0.95)] * 1000, 3),
                    "new_record_served_ms_median": round(statistics.median(served) * 1000, 2),
                    "new_record_served_ms_max": round(max(served) * 1000, 2),
                },
                indent=1,
            )
        )
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(20)
        server.stop()


if __name__ == "__main__":
    main()
