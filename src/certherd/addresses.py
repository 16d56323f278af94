"""The one parser of ``HOST:PORT`` text: listen addresses, DNS resolvers, the metrics
address, test servers. Imports nothing but certherd's errors."""

from __future__ import annotations

import errno
import os

from certherd.errors import ConfigError

__all__ = ["bind_failure", "split_host_port"]

_MAX_PORT = 65535


def split_host_port(
    text: str,
    *,
    what: str,
    default_port: int | None = None,
    default_host: str | None = None,
) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port); ConfigError naming ``what``.

    With ``default_port``, ``HOST``, ``[V6]`` and a bare IPv6 address (two colons or
    more, no brackets) are accepted too, with that port. With ``default_host`` (a listen
    address), a bare ``PORT`` is accepted with that host, and so is an empty host
    (``:PORT``, meaning every address).
    """
    value = text.strip()
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not closed or not (rest.startswith(":") or (not rest and default_port is not None)):
            raise ConfigError(f"{what} {text!r}: write an IPv6 address as [ADDR]:PORT")
        port_text = rest[1:] if rest else str(default_port)
    elif value.count(":") > 1 and default_port is not None:
        host, port_text = value, str(default_port)
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
    elif default_host is not None:
        host, port_text = default_host, value
    elif default_port is not None:
        host, port_text = value, str(default_port)
    else:
        raise ConfigError(f"{what} {text!r}: write HOST:PORT")
    if not host and default_host is None:
        raise ConfigError(f"{what} {text!r}: the host is missing (write HOST:PORT)")
    # isascii: str.isdigit() is true for "²", which int() refuses; five digits at most.
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not (
        0 < int(port_text) <= _MAX_PORT
    ):
        raise ConfigError(f"{what} {text!r}: the port must be a number from 1 to {_MAX_PORT}")
    return host, int(port_text)


_BIND_HINTS = {
    errno.EADDRINUSE: "another program listens there (`ss -ltnp` names it)",
    errno.EADDRNOTAVAIL: "no interface of this host has that address",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
}


def bind_failure(exc: OSError) -> str:
    """Why a listening socket could not be bound, in a few words: the system's reason and
    what it usually means. asyncio's ``create_server`` wraps the error in a long text
    repeating the address; only its errno is used here."""
    if exc.errno is None:
        return str(exc.strerror or exc).lower()
    reason = os.strerror(exc.errno).lower()
    hint = _BIND_HINTS.get(exc.errno)
    return f"{reason}: {hint}" if hint else reason
