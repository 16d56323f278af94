"""pytest glue for the launchers: a server that cannot start fails the test, never skips it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest
from tests.servers.net import ServerStartError
from tests.servers.process import Launcher

__all__ = ["serve", "start_or_fail"]

ServerT = TypeVar("ServerT", bound=Launcher)


def start_or_fail(server: ServerT) -> ServerT:
    """Start *server* and return it; fail the asking test with the reason if it cannot start."""
    try:
        server.start()
    except ServerStartError as err:
        problem = str(err)
    else:
        return server
    pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback


def serve(server: ServerT) -> Iterator[ServerT]:
    """For a fixture: ``yield from serve(server)`` starts it, yields it, and stops it after."""
    start_or_fail(server)
    try:
        yield server
    finally:
        server.stop()
