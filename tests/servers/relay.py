"""Two small loopback servers for fail-over tests: a TCP relay that can be stopped and
started again on the same port (a CA going down and coming back), and a real HTTP
listener in front of the scripted hostile ACME server of the unit tests (a CA answering
what a test scripts, 429 rateLimited say).

Both run in a thread of the test process and are stopped by the test (``stop()``).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import socketserver
import threading
from typing import Any

import httpx

__all__ = ["HostileHttpServer", "TcpRelay", "UnixRelay"]


class TcpRelay:
    """Forwards ``127.0.0.1:port`` to ``target`` byte for byte (TLS passes through).

    ``stop()`` closes the listener and every open connection, so the port refuses
    connections (a CA that is down); ``start()`` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.frozen = threading.Event()
        """Set: connections stay open but nothing passes (a hung server)."""

    def start(self) -> TcpRelay:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = self._connect()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _connect(self) -> socket.socket:
        return socket.create_connection(self.target, timeout=5)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():  # a server that hangs: bytes go nowhere
                    threading.Event().wait(0.02)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class UnixRelay(TcpRelay):
    """Forwards the unix socket ``path`` to the unix socket ``target`` (a PostgreSQL
    that listens on a socket only: certherd's URL names the relay's folder), with
    :class:`TcpRelay`'s ``stop()``, ``start()`` and ``frozen``."""

    def __init__(self, path: str, target: str) -> None:
        super().__init__(("", 0))
        self.path = path
        self.socket_target = target

    def start(self) -> UnixRelay:
        import os

        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        import os

        super().stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _connect(self) -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.settimeout(5)
        upstream.connect(self.socket_target)
        upstream.settimeout(None)
        return upstream


class HostileHttpServer:
    """A real HTTP listener on 127.0.0.1 answering through ``handler`` (an
    ``httpx.MockTransport`` handler: the unit tests' HostileAcmeServer). An exception in
    the handler (one of its protocol assertions) is answered 500 and kept in ``errors``."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.errors: list[BaseException] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = f"http://127.0.0.1:{outer.port}{self.path}"
                request = httpx.Request(self.command, url, headers=dict(self.headers), content=body)
                try:
                    response = outer.handler(request)
                    content = response.read()
                    status, headers = response.status_code, response.headers
                except Exception as exc:
                    outer.errors.append(exc)
                    status, headers, content = 500, httpx.Headers(), b""
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_HEAD = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileHttpServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
