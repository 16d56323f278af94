"""The daemon's HTTP surface on aiohttp: ``/metrics``, ``/healthz`` (and its old name
``/health``), the status page (:mod:`certherd.daemon.page`), bounded by
:mod:`certherd.daemon.guard`.

Only ``GET`` and ``HEAD`` are known; each connection carries one request and is closed
after its answer (``Connection: close``), so the guard's head deadline covers every
request. Answers are never cached and never sniffed (``Cache-Control: no-store``,
``X-Content-Type-Options: nosniff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import generate_latest

from certherd.addresses import bind_failure
from certherd.daemon.guard import ConnectionGuard, GuardLimits
from certherd.daemon.metrics import (
    CONTENT_TYPE,
    HealthCheck,
    LineageCollector,
    LineageMetrics,
    registry_of,
)
from certherd.errors import ConfigError, safe_text

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from certherd.daemon.page import BasicAuth
    from certherd.daemon.status import StatusSource

__all__ = ["HEAD_TIMEOUT", "MAX_CONNECTIONS", "WRITE_TIMEOUT", "MetricsServer"]

MAX_CONNECTIONS: Final = 64
"""Connections served at once; more are refused with 503 (Prometheus scrapes one at a time)."""
HEAD_TIMEOUT: Final = 5.0
"""Seconds from accepting a connection to the end of its request head."""
WRITE_TIMEOUT: Final = 10.0
"""Seconds a client that fell behind has to take the rest of the answer."""
ALLOWED: Final = "GET, HEAD"

log = logging.getLogger(__name__)


class _ClientFaults(logging.Filter):
    """aiohttp logs a malformed request (a client's fault, a port scanner's daily bread)
    as an error with a traceback: here it is one debug line, so a daemon's log does not
    fill with them. A failing handler of ours is logged by :func:`_bounded` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("bad request: %s", safe_text(record.getMessage(), 300))
        return False


_aiohttp_log = log.getChild("requests")
_aiohttp_log.addFilter(_ClientFaults())
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


@web.middleware
async def _bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One request per connection, only GET and HEAD, plain-text errors, no caching."""
    if request.method not in ("GET", "HEAD"):
        response: web.StreamResponse = _text(405, "use GET\n", Allow=ALLOWED)
    else:
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = _text(404, "not found\n")
        except web.HTTPMethodNotAllowed:
            response = _text(405, "use GET\n", Allow=ALLOWED)
        except web.HTTPException as exc:
            response = _text(exc.status, f"{exc.reason}\n", **dict(exc.headers))
        except Exception:
            log.exception("answering %s %s failed", request.method, request.path)
            response = _text(500, "internal error: see certherd's log\n")
    response.force_close()
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = "certherd"
    return response


class _Collected:
    """Metric families already collected, as ``generate_latest`` reads a registry."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/health`` on ``host:port`` ('' host: all
    addresses).

    ``collect`` is called once per scrape on the event loop: it MUST be quick and MUST NOT
    block (read state kept in memory). ``collectors`` are more ``prometheus_client``
    collectors written after certherd's own (same rule: quick, never blocking). ``health``
    (optional) returns None when healthy or the reason for a 503. An exception in any of
    them is answered with 500 / 503, never raised. ``status``: serve the status page
    (:mod:`certherd.daemon.page`) from this source; ``auth``: ask every path but the
    health checks for HTTP basic auth (an address sending too many wrong credentials is
    answered 429 for a while; its counters are in ``/metrics``). ``max_connections``,
    ``read_timeout`` (for the whole request head) and ``write_timeout`` bound what
    clients can hold (see :mod:`certherd.daemon.guard`); :attr:`refused` counts
    connections turned away at the cap. Port 0 picks a free port; :attr:`port` tells
    which once started. Not reentrant: :meth:`start` once, :meth:`stop` any number of
    times.
    """

    def __init__(
        self,
        host: str,
        port: int,
        collect: Callable[[], Iterable[LineageMetrics]],
        *,
        health: HealthCheck | None = None,
        collectors: Iterable[Collector] = (),
        status: StatusSource | None = None,
        auth: BasicAuth | None = None,
        read_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._health = health
        self._limits = GuardLimits(max_connections, read_timeout, write_timeout)
        own = LineageCollector(collect, refused=lambda: self._limits.refused)
        counters = [auth] if auth is not None else []  # its failures and lockouts
        self._registry = registry_of([own, *counters, *collectors])
        middlewares = [_bounded] if auth is None else [_bounded, auth.middleware]
        self._app = web.Application(middlewares=middlewares, handler_args={"lingering_time": 0})
        if status is not None:
            from certherd.daemon.page import add_status_page

            add_status_page(self._app, status)
        self._app.router.add_get("/metrics", self._metrics)
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/health", self._healthz)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @property
    def app(self) -> web.Application:
        """The aiohttp application: add routes before :meth:`start`."""
        return self._app

    @property
    def refused(self) -> int:
        """Connections turned away at the cap so far."""
        return self._limits.refused

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Start listening; ConfigError (naming the address) if the port cannot be bound."""
        if self._runner is not None:
            raise RuntimeError("the metrics server is already started")
        runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, logger=_aiohttp_log
        )
        await runner.setup()
        self._runner = runner
        handlers = runner.server
        assert handlers is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: ConnectionGuard(self._limits, handlers),
                host=[self.host] if self.host else None,
                port=self._requested_port,
                reuse_address=True,
            )
        except OSError as exc:
            await self.stop()
            where = f"{self.host or '*'}:{self._requested_port}"
            raise ConfigError(
                f"cannot serve metrics on {where}: {bind_failure(exc)}; "
                "choose another address or port as {metrics}",
                settings=("metrics",),
            ) from None

    async def stop(self) -> None:
        """Stop listening and drop the connections still open; safe to call twice."""
        server, self._server = self._server, None
        runner, self._runner = self._runner, None
        if server is not None:
            server.close()
        self._limits.abort_all()
        if runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.cleanup(), 5)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            # Collected here, on the loop, as the state is now; written out in a thread:
            # the text of 10,000 lineages takes prometheus_client ~165 ms, which would
            # otherwise stop the daemon's loop (lease renewals, renewals) at each scrape.
            families = _Collected(list(self._registry.collect()))
            body = await asyncio.to_thread(generate_latest, families)
        except Exception as exc:
            return _text(500, f"collecting metrics failed: {safe_text(exc, 300)}\n")
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
        response.enable_compression()  # Prometheus asks for gzip (as prometheus_client's server)
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            reason = self._health() if self._health is not None else None
        except Exception as exc:
            reason = f"the health check failed: {exc}"
        if reason is None:
            return _text(200, "ok\n")
        return _text(503, f"{safe_text(reason, 1000)}\n")
