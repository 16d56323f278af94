"""http-01 standalone (RFC 8555 §8.3): a small built-in HTTP server for the tokens in play.

It answers ``GET /.well-known/acme-challenge/<token>`` with the key authorization for
the tokens now presented and 404 for everything else. The listener starts with the
first presented token and stops when the last one is cleaned up, so one solver object
(one port) serves any number of concurrent orders.

The port is open to the internet while a challenge is up, in the process that renews
every certificate (the daemon): like the metrics server, it is bounded so that idle or
slow clients cannot take the process's file descriptors. At most :data:`MAX_CONNECTIONS`
at once (more are answered 503 and closed unread: a CA retries, and validates from a
handful of places), the request head within :data:`HEAD_TIMEOUT` seconds and
:data:`MAX_REQUEST_HEAD` bytes, the answer taken within :data:`WRITE_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from certherd.acme.messages import Identifier
from certherd.addresses import bind_failure
from certherd.challenges.base import ChallengeTask, check_token
from certherd.challenges.options import parse_listen_address
from certherd.errors import ConfigError

__all__ = ["Http01StandaloneSolver", "parse_listen_address"]

log = logging.getLogger(__name__)

PREFIX = "/.well-known/acme-challenge/"
MAX_REQUEST_HEAD = 8192
MAX_CONNECTIONS = 256
HEAD_TIMEOUT = 5.0
READ_TIMEOUT = HEAD_TIMEOUT
"""The old name of :data:`HEAD_TIMEOUT`."""
WRITE_TIMEOUT = 10.0
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many clients\n"
)


@dataclass(frozen=True)
class _Handle:
    token: str


class Http01StandaloneSolver:
    """http-01 through a built-in listener on ``host:port`` (IPv4 or IPv6)."""

    challenge_type = "http-01"

    def __init__(self, port: int = 80, host: str = "") -> None:
        self.host = host
        self.port = port
        self._responses: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()
        self._connections = 0
        self.requests_served = 0
        self.refused = 0

    def supports(self, identifier: Identifier) -> bool:
        # RFC 8555 §7.1.3 / §8.3: wildcard names cannot be proven over http-01.
        return not identifier.is_wildcard

    async def present(self, task: ChallengeTask) -> object:
        token = check_token(task.challenge.token)
        async with self._lock:
            self._responses[token] = task.key_authorization
            if self._server is None:
                try:
                    await self._start()
                except BaseException:
                    self._responses.pop(token, None)  # no handle will reach cleanup()
                    raise
        return _Handle(token)

    async def cleanup(self, handle: object) -> None:
        if not isinstance(handle, _Handle):
            return
        async with self._lock:
            self._responses.pop(handle.token, None)
            if not self._responses and self._server is not None:
                server, self._server = self._server, None
                server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)

    async def _response(self, token: str) -> str | None:
        """The key authorization to answer for ``token`` (None: 404)."""
        return self._responses.get(token)

    async def _start(self) -> None:
        hosts = [self.host] if self.host else None
        try:
            self._server = await asyncio.start_server(
                self._serve,
                host=hosts,
                port=self.port,
                reuse_address=True,
                limit=MAX_REQUEST_HEAD,
            )
        except OSError as exc:
            where = f"{self.host or '*'}:{self.port}"
            raise ConfigError(
                f"cannot listen for http-01 on {where}: {bind_failure(exc)}; "
                "free the port, choose another as {http.listen}, or use {webroot.path}",
                settings=("http.listen", "webroot.path"),
            ) from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            self.refused += 1  # refused unread: its descriptor is freed in this loop pass
            with contextlib.suppress(Exception):
                writer.write(_BUSY)
            writer.transport.abort()
            return
        self._connections += 1
        try:
            await self._answer(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._connections -= 1
            writer.transport.abort()  # closed, or given up on: nothing more is waited for

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        status, body = "404 Not Found", b"not found\n"
        answer: str | None = None
        line = head[:MAX_REQUEST_HEAD].split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] in ("GET", "HEAD") and parts[1].startswith(PREFIX):
            answer = await self._response(parts[1][len(PREFIX) :])
            if answer is not None:
                status, body = "200 OK", answer.encode("ascii")
                self.requests_served += 1
            if parts[0] == "HEAD":
                body = b"" if answer is None else body
        peer = writer.get_extra_info("peername")
        log.info(
            "http-01: %s asked %r: %s", peer[0] if peer else "?", line[:200], status.split()[0]
        )
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        writer.write(header + (b"" if parts[0] == "HEAD" else body))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)
