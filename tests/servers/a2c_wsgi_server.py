"""Serve acme2certifier's WSGI application over TLS: the child process of the launcher.

Run as ``python a2c_wsgi_server.py --host H --port P --cert C --key K`` with
``ACME_SRV_CONFIGFILE`` in the environment; the application reads its INI file when imported.
One thread per connection, one request per connection (wsgiref speaks HTTP/1.0).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

_TLS_HANDSHAKE_TIMEOUT = 30.0


class _HttpsRequestHandler(WSGIRequestHandler):
    """Mark requests as HTTPS so the application's links start with ``https://``."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        # wsgiref derives environ["wsgi.url_scheme"] from HTTPS (wsgiref.util.guess_scheme).
        environ["HTTPS"] = "on"
        return environ

    def address_string(self) -> str:
        """Log the client address without a reverse DNS look-up."""
        return str(self.client_address[0])


class _ThreadingTlsWsgiServer(ThreadingMixIn, WSGIServer):
    """A threaded wsgiref server that runs the TLS handshake in the connection's thread."""

    daemon_threads = True
    ssl_context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_TLS_HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            sys.stderr.write(f"TLS handshake with {client_address[0]} failed: {err}\n")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM certificate (chain) of the listener")
    parser.add_argument("--key", required=True, help="PEM private key of the listener")
    args = parser.parse_args()

    # Imported here: the import reads ACME_SRV_CONFIGFILE and opens the database.
    from acme2certifier.share.acme2certifier_wsgi import application  # type: ignore[import-untyped]

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    server = make_server(
        args.host,
        args.port,
        application,
        server_class=_ThreadingTlsWsgiServer,
        handler_class=_HttpsRequestHandler,
    )
    assert isinstance(server, _ThreadingTlsWsgiServer)
    server.ssl_context = context
    sys.stderr.write(f"acme2certifier listening on https://{args.host}:{args.port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
