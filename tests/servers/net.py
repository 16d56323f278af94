"""Loopback port helpers shared by the test server launchers."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

__all__ = ["ServerStartError", "ensure_port_free", "free_port", "log_tail"]

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A test server could not be started; the message says why and what to do."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on *host* that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(port: int, *, why: str, host: str = LOOPBACK, udp: bool = False) -> None:
    """Raise `ServerStartError` unless *host*:*port* can be bound now (TCP, and UDP if asked).

    *why* names the user of the port, for the message.
    """
    kinds = [("TCP", socket.SOCK_STREAM)] + ([("UDP", socket.SOCK_DGRAM)] if udp else [])
    for name, kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except PermissionError as err:
                raise ServerStartError(
                    f"cannot bind {name} {host}:{port} ({why}): {err}; binding a port below "
                    "1024 needs root or CAP_NET_BIND_SERVICE"
                ) from err
            except OSError as err:
                raise ServerStartError(
                    f"{name} {host}:{port} is already in use ({why}): {err}; stop whatever "
                    f"listens there (see `ss -lntup | grep :{port}`)"
                ) from err


def tcp_answers(host: str, port: int) -> bool:
    """Return whether a TCP connection to *host*:*port* is accepted."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def log_tail(log: Path | None, lines: int = 40) -> str:
    """Return the last *lines* of *log*, formatted to be appended to an error message."""
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last {len(tail)} lines of {log} ---\n" + "\n".join(tail)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (the solver released its listener)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_http_port() -> int:
    """A free port below the ephemeral range, for a Pebble's ``http_port``.

    Every Pebble defaults to 5002; a test run started while another one runs (or a
    Pebble's own ports, taken from the ephemeral range) would collide there.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port_is_free(port):
            return port
    raise RuntimeError("no free port for http-01 between 20000 and 32000")
