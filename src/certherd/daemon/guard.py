"""Bounds around aiohttp's connections: how many, how long a request head may take, how
long a client may take to read the answer.

aiohttp bounds the size of a request line and of each header, but neither the number of
connections nor the time a client takes to send its request head (it waits for a first
request as long as its keep-alive time, 75 s), nor the time a client that stops reading
holds an answer. A daemon guarding production certificates must not let a port scan or a
slow client starve it of descriptors, memory or time (issue 9, item 8), so every
connection first meets a :class:`ConnectionGuard`, a thin asyncio protocol in front of
aiohttp's own:

- at most ``max_connections`` connections are served at once; one more is answered
  ``503`` (``Retry-After: 1``) and closed at once, without reading it and without
  reaching aiohttp;
- the whole request head must arrive within ``head_timeout`` seconds of the connection,
  however it trickles in, and be at most :data:`MAX_REQUEST_HEAD` bytes (else ``431``);
- once the client falls behind in reading the answer (the transport's buffer is full),
  it has ``write_timeout`` seconds to take the rest, else the connection is aborted (its
  buffer dropped, its descriptor freed).

Each connection carries one request (the server answers ``Connection: close``), so the
head deadline covers every request served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ["MAX_REQUEST_HEAD", "ConnectionGuard", "GuardLimits"]

MAX_REQUEST_HEAD: Final = 8192
"""Bytes of request line and headers accepted (a scrape sends about 200, a browser 700)."""
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 17\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many clients\n"
)
_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
    b"charset=utf-8\r\nContent-Length: 18\r\nConnection: close\r\n\r\nrequest too large\n"
)


class GuardLimits:
    """The bounds and the live count shared by every :class:`ConnectionGuard` of a server."""

    def __init__(self, max_connections: int, head_timeout: float, write_timeout: float) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self.open: set[ConnectionGuard] = set()
        self.refused = 0

    def abort_all(self) -> None:
        """Drop every open connection now (the server is stopping)."""
        for guard in list(self.open):
            guard.abort()


class ConnectionGuard(asyncio.Protocol):
    """One connection: checked against :class:`GuardLimits`, then handed to ``inner``.

    ``inner`` makes the protocol that serves the connection (aiohttp's request handler);
    it is made only for a connection within the cap.
    """

    def __init__(self, limits: GuardLimits, inner: Callable[[], asyncio.Protocol]) -> None:
        self._limits = limits
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._head_seen = 0
        self._head_done = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        limits = self._limits
        if len(limits.open) >= limits.max_connections:
            # Refused at once, before reading: its descriptor is freed in this loop pass.
            limits.refused += 1
            transport.write(_BUSY)  # fits the socket buffer: sent without waiting
            transport.abort()
            return
        limits.open.add(self)
        self._timer = asyncio.get_running_loop().call_later(limits.head_timeout, self.abort)
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._head_done:
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            if end >= 0:
                length = self._head_seen - len(self._tail) + end + 4
            else:
                length = self._head_seen + len(data)
            if length > MAX_REQUEST_HEAD:
                self._refuse(_TOO_LARGE)
                return
            if end >= 0:
                self._head_done = True
                self._cancel_timer()  # the answer's time is bounded by write_timeout
            else:
                self._head_seen += len(data)
                self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        # The client stopped taking the answer as fast as it is written: from now on it
        # has write_timeout seconds to take it all (a resume does not restart the clock).
        if self._timer is None and self._inner is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._limits.write_timeout, self.abort)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._limits.open.discard(self)
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def abort(self) -> None:
        """Drop the connection now: nothing more is read or sent."""
        self._cancel_timer()
        self._limits.open.discard(self)
        if self._transport is not None:
            self._transport.abort()

    def _refuse(self, answer: bytes) -> None:
        self._cancel_timer()
        assert self._transport is not None
        self._transport.write(answer)
        self._transport.close()  # sends the answer, then closes
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.write_timeout, self.abort)
        self._head_done = True
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
