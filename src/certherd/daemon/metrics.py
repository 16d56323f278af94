"""A tiny HTTP endpoint for Prometheus: ``/metrics`` and ``/health``, no dependencies.

Since Let's Encrypt stopped sending expiry emails (June 2025, FIELD.md), the client is the
only one who notices a renewal that keeps failing; these metrics let an alert fire on it::

    certherd_certificate_expiry_timestamp_seconds{lineage="example.com"}
    certherd_certificate_next_renewal_timestamp_seconds{lineage="example.com"}
    certherd_renewal_failures_total{lineage="example.com"}
    certherd_last_renewal_success_timestamp_seconds{lineage="example.com"}
    certherd_up

The body is the Prometheus text exposition format, version 0.0.4. The server knows only
``GET`` and ``HEAD``, answers one request per connection and closes it, and is bounded so
that no client can starve the daemon it runs in (of descriptors, memory or time):

- at most :data:`MAX_CONNECTIONS` connections are served at once; one more is answered
  ``503`` (``Retry-After: 1``) and closed at once, without reading it;
- the whole request head (request line and headers) must arrive within
  :data:`HEAD_TIMEOUT` seconds of the connection, however it trickles in, and be at most
  :data:`MAX_REQUEST_HEAD` bytes (else ``431``); a request body is never read;
- the answer must be taken by the client within :data:`WRITE_TIMEOUT` seconds, else the
  connection is aborted (its buffer dropped, its descriptor freed).

Why hand-written rather than aiohttp or uvicorn: neither bounds the time to receive a
request head nor the number of connections (both are the point of this server), so
either would need the same code wrapped around its protocol classes; this server is
small, has no dependency and is only imported by the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from certherd.errors import ConfigError, safe_text

__all__ = [
    "CONTENT_TYPE",
    "HealthCheck",
    "LineageMetrics",
    "MetricsServer",
    "render_metrics",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD: Final = 8192
"""Bytes of request line and headers accepted (a scrape sends about 200)."""
MAX_CONNECTIONS: Final = 64
"""Connections served at once; more are refused with 503 (Prometheus scrapes one at a time)."""
HEAD_TIMEOUT: Final = 5.0
"""Seconds from accepting a connection to the end of its request head."""
READ_TIMEOUT: Final = HEAD_TIMEOUT
"""The old name of :data:`HEAD_TIMEOUT`."""
WRITE_TIMEOUT: Final = 10.0
"""Seconds the client has to take the whole answer."""
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 17\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many clients\n"
)

HealthCheck = Callable[[], str | None]
"""Returns None when healthy, else the reason (the body of a 503 answer)."""


@dataclass(frozen=True)
class LineageMetrics:
    """What the metrics say about one lineage; None means unknown (the sample is left out).

    ``failures`` counts failed renewal attempts and, being a counter, SHOULD only grow
    (it may restart from zero with the process). Naive datetimes are taken as UTC.
    """

    lineage: str
    not_after: dt.datetime | None
    next_renewal: dt.datetime | None
    failures: int
    last_success: dt.datetime | None


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str
    help: str
    value: Callable[[LineageMetrics], float | None]


def _timestamp(moment: dt.datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


_FAMILIES: Final = (
    _Family(
        "certherd_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the live certificate of the lineage expires (notAfter), in Unix seconds.",
        lambda item: _timestamp(item.not_after),
    ),
    _Family(
        "certherd_certificate_next_renewal_timestamp_seconds",
        "gauge",
        "When certherd plans to renew the lineage next, in Unix seconds.",
        lambda item: _timestamp(item.next_renewal),
    ),
    _Family(
        "certherd_renewal_failures_total",
        "counter",
        "Failed renewal attempts of the lineage.",
        lambda item: float(item.failures),
    ),
    _Family(
        "certherd_last_renewal_success_timestamp_seconds",
        "gauge",
        "When the lineage was last obtained or renewed successfully, in Unix seconds.",
        lambda item: _timestamp(item.last_success),
    ),
)


def _escape_label(value: str) -> str:
    """Text format 0.0.4: in a label value, backslash, double quote and line feed are escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    """Text format 0.0.4: in HELP text, backslash and line feed are escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """A sample value as Go's ParseFloat reads it, with NaN and infinities spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_metrics(lineages: Iterable[LineageMetrics]) -> str:
    """The ``/metrics`` body: one HELP/TYPE group per family, lineages sorted by name.

    A lineage given twice keeps its last entry (a series may appear only once).
    """
    latest = {item.lineage: item for item in lineages}
    items = [latest[name] for name in sorted(latest)]
    lines: list[str] = []
    for family in _FAMILIES:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for item in items:
            value = family.value(item)
            if value is not None:
                label = _escape_label(item.lineage)
                lines.append(f'{family.name}{{lineage="{label}"}} {_number(value)}')
    lines.append("# HELP certherd_up Whether certherd's metrics endpoint is serving (always 1).")
    lines.append("# TYPE certherd_up gauge")
    lines.append("certherd_up 1")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``/metrics`` and ``/health`` on ``host:port`` ('' host: all addresses).

    ``collect`` is called once per scrape on the event loop: it MUST be quick and MUST NOT
    block (read state kept in memory). ``health`` (optional) returns None when healthy or
    the reason for a 503. An exception in either is answered with 500 / 503, never raised.
    ``max_connections``, ``read_timeout`` (for the whole request head) and
    ``write_timeout`` bound what clients can hold (see the module docstring);
    :attr:`refused` counts connections turned away at the cap.
    Port 0 picks a free port; :attr:`port` tells which once started. Not reentrant:
    :meth:`start` once, :meth:`stop` any number of times.
    """

    def __init__(
        self,
        host: str,
        port: int,
        collect: Callable[[], Iterable[LineageMetrics]],
        *,
        health: HealthCheck | None = None,
        read_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self._requested_port = port
        self._collect = collect
        self._health = health
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Start listening; ConfigError (naming the address) if the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError("the metrics server is already started")
        hosts = [self.host] if self.host else None
        try:
            self._server = await asyncio.start_server(
                self._serve,
                host=hosts,
                port=self._requested_port,
                reuse_address=True,
                limit=MAX_REQUEST_HEAD,
            )
        except OSError as exc:
            where = f"{self.host or '*'}:{self._requested_port}"
            raise ConfigError(
                f"cannot serve metrics on {where}: {exc.strerror or exc}; "
                "choose another address or port"
            ) from None

    async def stop(self) -> None:
        """Stop listening and drop the connections still open; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self._max_connections:
            # Refused at once, before reading: its descriptor is freed in this loop pass.
            self.refused += 1
            with contextlib.suppress(Exception):
                writer.write(_BUSY)  # fits the socket buffer: sent without waiting
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        clean = False
        try:
            await self._answer(reader, writer)
            clean = True
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            if clean:  # let the end of the answer go out, within the write timeout
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), self._write_timeout)
            writer.transport.abort()  # then (or after a timeout) nothing more is waited for

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout)
        except asyncio.LimitOverrunError:
            await self._send(writer, "431 Request Header Fields Too Large", "request too large\n")
            return
        except (asyncio.IncompleteReadError, TimeoutError):
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._send(writer, "400 Bad Request", "bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._send(
                writer, "405 Method Not Allowed", "use GET\n", extra="Allow: GET, HEAD\r\n"
            )
            return
        body_wanted = method == "GET"
        if target == "/metrics":
            try:
                body = render_metrics(self._collect())
            except Exception as exc:
                message = f"collecting metrics failed: {safe_text(exc, 300)}\n"
                await self._send(writer, "500 Internal Server Error", message, body_wanted)
                return
            await self._send(writer, "200 OK", body, body_wanted, content_type=CONTENT_TYPE)
        elif target == "/health":
            try:
                reason = self._health() if self._health is not None else None
            except Exception as exc:
                reason = f"the health check failed: {exc}"
            if reason is None:
                await self._send(writer, "200 OK", "ok\n", body_wanted)
            else:
                text = f"{safe_text(reason, 1000)}\n"
                await self._send(writer, "503 Service Unavailable", text, body_wanted)
        else:
            await self._send(writer, "404 Not Found", "not found\n", body_wanted)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: str,
        text: str,
        body_wanted: bool = True,
        *,
        content_type: str = "text/plain; charset=utf-8",
        extra: str = "",
    ) -> None:
        body = text.encode("utf-8")
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        ).encode("ascii")
        writer.write(header + (body if body_wanted else b""))
        await asyncio.wait_for(writer.drain(), self._write_timeout)
