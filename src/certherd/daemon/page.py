"""The status page on the daemon's listener (beside ``/metrics`` and ``/healthz``), and
the optional HTTP basic auth in front of all three.

- ``/`` the page: every certificate with its names, CA, expiry, next renewal and why,
  last error and the node holding it; a timeline of expiries and renewals; a filter and a
  search. Everything it needs is served here (``/static/status.js``,
  ``/static/status.css``): no CDN, no font, no request leaves the browser for another
  host (``Content-Security-Policy: default-src 'none'`` with ``'self'`` for script,
  style, images and ``connect``). The script writes CA and user data into the page as
  text only (``textContent``), never as HTML.
- ``/status.json`` what the page shows (:mod:`certherd.daemon.status`), for scripts.

Basic auth (RFC 7617) comes from a file of ``user:password`` lines (``#`` comments and
blank lines ignored), which must be readable by its owner only, like every secret
certherd reads. With it, every path asks for it except ``/healthz`` and ``/health``
(probes rarely carry credentials, and they say no more than "ok" or the reason).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from certherd.daemon.throttle import AuthThrottle
from certherd.errors import ConfigError, safe_text

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from certherd.daemon.status import StatusSource
    from certherd.daemon.web import Handler

__all__ = ["BasicAuth", "add_status_page", "read_users"]

MAX_AUTH_FILE: Final = 64 * 1024
OPEN_PATHS: Final = frozenset({"/healthz", "/health"})
POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS: Final = {
    "/": ("status.html", "text/html"),
    "/static/status.js": ("status.js", "text/javascript"),
    "/static/status.css": ("status.css", "text/css"),
    "/static/icon.svg": ("icon.svg", "image/svg+xml"),
    "/favicon.ico": ("icon.svg", "image/svg+xml"),
}


def _refused(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"{{metrics_auth}} {path}: {problem}", settings=("metrics_auth",))


def read_users(path: Path) -> dict[str, bytes]:
    """``{user: password}`` from ``path``; ConfigError naming the file and the fix."""
    # O_NONBLOCK: a FIFO given by mistake would otherwise block the open until a writer
    # comes (for ever, in a daemon's start); it is refused below as not a regular file.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "is a symbolic link: give the file it points to") from None
        problem = f"cannot be read: {exc.strerror or exc}; give a file of user:password lines"
        raise _refused(path, problem) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refused(path, "not a regular file: give a file of user:password lines")
        if stat.S_IMODE(mode) & 0o077:
            problem = f"users other than its owner may read it (mode {stat.S_IMODE(mode):04o})"
            raise _refused(path, f"{problem}: chmod 600 it")
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read(MAX_AUTH_FILE + 1)
    except OSError as exc:
        raise _refused(path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_AUTH_FILE:
        raise _refused(path, "larger than 64 KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(path, "not UTF-8 text") from None
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not colon or not user or not password:
            raise _refused(path, f"line {number} is not user:password (both non-empty)")
        users[user] = password.encode("utf-8")
    if not users:
        raise _refused(path, "names no user: write user:password lines into it")
    return users


class BasicAuth:
    """Checks ``Authorization: Basic`` against :func:`read_users`'s map in constant time
    (SHA-256 digests compared with :func:`hmac.compare_digest`, for a known user or not,
    so neither the time nor a length tells which users exist or how long a password
    is), and turns away an address that sent too many wrong credentials
    (:class:`~certherd.daemon.throttle.AuthThrottle`: 429 with ``Retry-After``).
    :meth:`collect` gives the throttle's counters for ``/metrics``."""

    def __init__(self, users: dict[str, bytes], throttle: AuthThrottle | None = None) -> None:
        self._digests = {user: hashlib.sha256(word).digest() for user, word in users.items()}
        self._unknown = hashlib.sha256(secrets.token_bytes(32)).digest()
        self.throttle = throttle if throttle is not None else AuthThrottle()

    def allows(self, header: str | None) -> bool:
        if header is None or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        known = self._digests.get(user.decode("utf-8", "replace"))
        # Compared even for an unknown user, so the time does not tell which users exist.
        expected = known if known is not None else self._unknown
        same = hmac.compare_digest(hashlib.sha256(password).digest(), expected)
        return bool(colon) and same and known is not None

    def collect(self) -> Iterator[Metric]:
        return self.throttle.collect()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        address = request.remote
        wait = self.throttle.wait(address)
        if wait > 0:
            return web.Response(
                status=429,
                text="certherd: too many wrong credentials from this address: try later\n",
                headers={"Retry-After": self.throttle.retry_after(wait)},
            )
        header = request.headers.get("Authorization")
        if self.allows(header):
            return await handler(request)
        if header is not None:  # a request without credentials is no wrong guess
            self.throttle.failed(address)
        return web.Response(
            status=401,
            text="certherd: log in\n",
            headers={"WWW-Authenticate": 'Basic realm="certherd", charset="UTF-8"'},
        )


def _asset(name: str) -> bytes:
    return resources.files("certherd.daemon").joinpath("static", name).read_bytes()


def add_status_page(app: web.Application, source: StatusSource) -> None:
    """Add ``/``, ``/status.json`` and the page's static files to ``app``."""
    assets = {path: (_asset(name), kind) for path, (name, kind) in _ASSETS.items()}

    async def asset(request: web.Request) -> web.Response:
        body, kind = assets[request.path]
        return web.Response(
            body=body,
            content_type=kind,
            charset="utf-8",
            headers={"Content-Security-Policy": POLICY, "Referrer-Policy": "no-referrer"},
        )

    encoded: list[tuple[dict[str, Any], bytes]] = []  # the last document, as sent

    async def document(request: web.Request) -> web.Response:
        try:
            data = await source.document()
        except Exception as exc:
            return web.Response(status=503, text=f"status unavailable: {safe_text(exc, 300)}\n")
        if not encoded or encoded[0][0] is not data:  # a new document: encode it once
            encoded[:] = [(data, json.dumps(data, separators=(",", ":")).encode("utf-8"))]
        response = web.Response(
            body=encoded[0][1],
            content_type="application/json",
            headers={"Content-Security-Policy": POLICY},
        )
        # gzip when the client takes it (browsers do): 10,000 lineages are 5.8 MB of JSON,
        # too much for a slow link within the guard's write timeout.
        response.enable_compression()
        return response

    for path in assets:
        app.router.add_get(path, asset)
    app.router.add_get("/status.json", document)
