"""The metrics endpoint: the Prometheus 0.0.4 text format, /health, and a bounded server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import resource
import socket
import time
from collections.abc import Callable, Iterable

import httpx
import pytest

from certherd.daemon.guard import MAX_REQUEST_HEAD
from certherd.daemon.loop import raise_open_file_limit
from certherd.daemon.metrics import CONTENT_TYPE, LineageMetrics, render_metrics
from certherd.daemon.web import MetricsServer
from certherd.errors import ConfigError

NOT_AFTER = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NEXT = dt.datetime(2026, 11, 1, 12, 30, tzinfo=dt.UTC)
SUCCESS = dt.datetime(2026, 9, 1, 0, 0, 0, 500000, tzinfo=dt.UTC)
AWKWARD = 'we"ird\\name\nline'

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{lineage="((?:[^"\\]|\\.)*)"\})? (\S+)$')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Parsed = dict[str, dict[str | None, float]]


def parse(text: str) -> tuple[Parsed, dict[str, str]]:
    """A strict reader of what certherd writes: samples by family and label, and the types.

    It checks that every family has HELP then TYPE before its samples and that each
    family's lines are one contiguous group, as the 0.0.4 format requires.
    """
    assert text.endswith("\n")
    samples: Parsed = {}
    types: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in types, f"{current} appears in two groups"
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label, value = match.groups()
            assert name == current, f"{name} outside its group"
            assert name in types, f"{name} has no TYPE line"
            if label is not None:
                label = re.sub(r"\\.", lambda m: UNESCAPE[m.group(0)], label)
            assert label not in samples.setdefault(name, {}), f"duplicate series {line!r}"
            samples[name][label] = float(value)
    return samples, types


def sample_metrics() -> list[LineageMetrics]:
    return [
        LineageMetrics("example.com", NOT_AFTER, NEXT, 0, SUCCESS),
        LineageMetrics(AWKWARD, NOT_AFTER, None, 3, None),
        LineageMetrics("naive.example", dt.datetime(2026, 12, 1), None, 1, None),
    ]


def test_render_has_every_family_typed_and_escaped() -> None:
    samples, types = parse(render_metrics(sample_metrics()))
    assert types == {
        "certherd_certificate_expiry_timestamp_seconds": "gauge",
        "certherd_certificate_next_renewal_timestamp_seconds": "gauge",
        "certherd_renewal_failures_total": "counter",
        "certherd_last_renewal_success_timestamp_seconds": "gauge",
        "certherd_up": "gauge",
    }
    assert samples["certherd_certificate_expiry_timestamp_seconds"] == {
        "example.com": NOT_AFTER.timestamp(),
        AWKWARD: NOT_AFTER.timestamp(),
        "naive.example": NOT_AFTER.timestamp(),  # a naive datetime is UTC
    }
    # Unknown values are left out, never written as 0.
    assert samples["certherd_certificate_next_renewal_timestamp_seconds"] == {
        "example.com": NEXT.timestamp()
    }
    assert samples["certherd_renewal_failures_total"] == {
        "example.com": 0,
        AWKWARD: 3,
        "naive.example": 1,
    }
    assert samples["certherd_last_renewal_success_timestamp_seconds"] == {
        "example.com": SUCCESS.timestamp()
    }
    assert samples["certherd_up"] == {None: 1}


def test_label_escaping_is_exact() -> None:
    text = render_metrics([LineageMetrics(AWKWARD, None, None, 2, None)])
    assert 'certherd_renewal_failures_total{lineage="we\\"ird\\\\name\\nline"} 2.0\n' in text
    assert text.count("\n") == len(text.splitlines())  # no raw newline inside a label


def test_values_keep_their_precision_and_order_is_stable() -> None:
    text = render_metrics(reversed(sample_metrics()))
    assert text == render_metrics(sample_metrics())
    samples, _ = parse(text)
    success = samples["certherd_last_renewal_success_timestamp_seconds"]["example.com"]
    assert success == SUCCESS.timestamp()  # to the microsecond
    assert 'seconds{lineage="example.com"} 1.7960832e+09\n' in text  # as Go's ParseFloat reads


def test_a_lineage_given_twice_keeps_the_last_entry() -> None:
    first = LineageMetrics("a.example", None, None, 1, None)
    second = LineageMetrics("a.example", None, None, 5, None)
    samples, _ = parse(render_metrics([first, second]))
    assert samples["certherd_renewal_failures_total"] == {"a.example": 5}


def test_no_lineages_is_still_a_valid_page() -> None:
    samples, types = parse(render_metrics([]))
    assert samples == {"certherd_up": {None: 1}}
    assert len(types) == 5


def start(
    collect: Callable[[], Iterable[LineageMetrics]] = sample_metrics,
    **options: object,
) -> MetricsServer:
    return MetricsServer("127.0.0.1", 0, collect, **options)  # type: ignore[arg-type]


def client(server: MetricsServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False)


async def test_metrics_over_http() -> None:
    async with start() as server, client(server) as http:
        assert server.port != 0
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE
        samples, _ = parse(response.text)
        assert samples["certherd_renewal_failures_total"][AWKWARD] == 3
        assert samples["certherd_up"] == {None: 1}

        with_query = await http.get("/metrics?name[]=certherd_up")
        assert with_query.status_code == 200

        scraped = await http.get("/metrics", headers={"Accept-Encoding": "gzip"})  # as Prometheus
        assert scraped.headers["content-encoding"] == "gzip"
        assert scraped.content == response.content  # as decoded by httpx
        plain = await http.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == response.content

        head = await http.head("/metrics", headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(response.content)


async def test_each_scrape_collects_again() -> None:
    failures = [0]

    def collect() -> list[LineageMetrics]:
        failures[0] += 1
        return [LineageMetrics("a.example", None, None, failures[0], None)]

    async with start(collect) as server, client(server) as http:
        for expected in (1, 2):
            samples, _ = parse((await http.get("/metrics")).text)
            assert samples["certherd_renewal_failures_total"] == {"a.example": expected}


async def test_health() -> None:
    reason: list[str | None] = [None]
    async with start(health=lambda: reason[0]) as server, client(server) as http:
        ok = await http.get("/health")
        assert (ok.status_code, ok.text) == (200, "ok\n")
        reason[0] = "storage unreachable:\x1b[31m /var/lib/certherd"
        down = await http.get("/health")
        assert down.status_code == 503
        assert down.text == "storage unreachable:\\x1b[31m /var/lib/certherd\n"


async def test_health_without_a_check_is_ok() -> None:
    async with start() as server, client(server) as http:
        response = await http.get("/health")
        assert (response.status_code, response.text) == (200, "ok\n")


async def test_failing_callbacks_are_answered_not_raised() -> None:
    def broken() -> list[LineageMetrics]:
        raise RuntimeError("state file unreadable")

    def broken_health() -> str | None:
        raise OSError("disk gone")

    async with start(broken, health=broken_health) as server, client(server) as http:
        metrics = await http.get("/metrics")
        assert metrics.status_code == 500
        assert "state file unreadable" in metrics.text
        health = await http.get("/health")
        assert health.status_code == 503
        assert "disk gone" in health.text


async def test_other_paths_and_methods() -> None:
    async with start() as server, client(server) as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/metrics/extra")).status_code == 404
        posted = await http.post("/metrics", content=b"x")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET, HEAD"


async def raw_exchange(server: MetricsServer, data: bytes, within: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_request_head_is_capped() -> None:
    async with start() as server:
        big = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * MAX_REQUEST_HEAD + b"\r\n\r\n"
        answer = await raw_exchange(server, big)
        assert answer.startswith(b"HTTP/1.1 431 ")


async def test_garbage_is_a_bad_request() -> None:
    async with start() as server:
        answer = await raw_exchange(server, b"hello\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", answer)


async def test_a_silent_client_is_dropped_after_the_read_timeout() -> None:
    async with start(read_timeout=0.2) as server:
        started = time.monotonic()
        answer = await raw_exchange(server, b"GET /metr", within=5.0)
        assert answer == b""
        assert time.monotonic() - started < 3


async def test_stop_drops_open_connections_and_is_idempotent() -> None:
    server = start()
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finished
    await writer.drain()
    await asyncio.sleep(0)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await writer.wait_closed()
    await server.stop()


async def test_a_busy_port_is_a_config_error() -> None:
    async with start() as first:
        second = MetricsServer("127.0.0.1", first.port, sample_metrics)
        with pytest.raises(
            ConfigError, match=rf"cannot serve metrics on 127\.0\.0\.1:{first.port}"
        ):
            await second.start()


# -- bounds: no client can hold the daemon's descriptors (issue 9, item 8) ----------------


async def test_connections_over_the_cap_are_refused_at_once() -> None:
    async with start(max_connections=2) as server, client(server) as http:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)  # both accepted and waiting for a request head
        answer = await raw_exchange(server, b"", within=2.0)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 1\r\n" in answer
        assert server.refused == 1
        # One idle client goes away: its slot is free for the next scrape at once.
        idle[0][1].close()
        await idle[0][1].wait_closed()
        await asyncio.sleep(0.05)
        assert (await http.get("/metrics")).status_code == 200
        idle[1][1].close()
        await idle[1][1].wait_closed()


async def test_a_trickled_head_is_cut_at_the_head_deadline() -> None:
    """The timeout covers the whole head, not each read: one byte every 0.1 s is dropped."""
    async with start(read_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
                if reader.at_eof():
                    break
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 5
        writer.close()


async def test_a_client_that_never_reads_is_aborted_and_frees_its_slot() -> None:
    many = [LineageMetrics(f"{n:06d}.example", NOT_AFTER, NEXT, 0, SUCCESS) for n in range(30000)]
    options = {"max_connections": 1, "write_timeout": 0.3}
    async with start(lambda: many, **options) as server, client(server) as http:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its window stays small
        sock.connect(("127.0.0.1", server.port))
        stalled_reader, stalled = await asyncio.open_connection(sock=sock)
        stalled.transport.pause_reading()  # and it never reads: the answer cannot all go
        stalled.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await stalled.drain()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            response = await http.get("/health")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200, "the stalled client still holds the only slot"

        # The server gave up on it: what it finally reads is cut short (or reset).
        stalled.transport.resume_reading()
        received = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(stalled_reader.read(1 << 20), 5):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"Content-Length: (\d+)", head)
        assert length is None or len(body) < int(length.group(1))
        stalled.close()


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        before, after = raise_open_file_limit(cap=4096)
        expected = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        assert (before, after) == (256, expected)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
        assert raise_open_file_limit(cap=300) == (expected, expected)  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_healthz_extra_collectors_and_the_refused_counter() -> None:
    """/healthz is /health's new name; other parts of certherd add prometheus_client
    collectors beside certherd's own; each answer closes its connection."""
    from prometheus_client.core import GaugeMetricFamily

    class Database:
        def collect(self) -> Iterable[GaugeMetricFamily]:
            yield GaugeMetricFamily("certherd_test_database_up", "A collector of another part.", 1)

    async with (
        start(collectors=[Database()], max_connections=1) as server,
        client(server) as http,
    ):
        healthz = await http.get("/healthz")
        assert (healthz.status_code, healthz.text) == (200, "ok\n")
        assert healthz.headers["connection"] == "close"
        assert healthz.headers["cache-control"] == "no-store"
        idle = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        assert (await raw_exchange(server, b"", within=2.0)).startswith(b"HTTP/1.1 503 ")
        idle[1].close()
        await idle[1].wait_closed()
        await asyncio.sleep(0.05)
        samples, types = parse((await http.get("/metrics")).text)
        assert samples["certherd_test_database_up"] == {None: 1}
        assert samples["certherd_http_connections_refused_total"] == {None: 1}
        assert types["certherd_http_connections_refused_total"] == "counter"
