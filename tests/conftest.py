"""Fixtures shared by every test folder: local Pebble CAs started on demand.

``pebble`` is one Pebble for the whole session with the default options (5% of good nonces
refused as badNonce, authorization reuse 50%, no validation sleeps). ``pebble_factory``
starts more with other options; they too run until the session ends, so each test uses its
own ACME account. A missing ``pebble`` fails the tests that need it with the install hint:
it is never a skip.

``postgres`` is one PostgreSQL server for the session (initdb in a temporary folder, a
unix socket only, about half a second to start): ``postgres.database()`` makes a fresh
database for a test. A missing PostgreSQL fails the tests that need it with the install hint.

On pytest-xdist workers (``scripts/test`` runs the whole suite with ``-n 2``), each test
file is run by one worker, so its module fixtures are made once; the acme2certifier tests
are all run by one worker: their validator and mock DNS use the fixed ports 53, 80 and 443
(:func:`pytest_xdist_make_scheduler`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.servers.net import ServerStartError, free_http_port
from tests.servers.postgres import PostgresServer

from certherd.errors import UnavailableError
from certherd.testing.pebble import PebbleOptions, PebbleServer

pytest_plugins = ["pytester"]

FIXED_PORTS_FOLDER = "tests/integration/a2c/"
"""Test files under this folder share fixed ports (53, 80, 443): one worker runs them all."""


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: -n N
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each test file to one worker, and the fixed-ports folder as if it were one file
    (xdist's own ``--dist loadgroup`` does not group under this pytest)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return FIXED_PORTS_FOLDER if path.startswith(FIXED_PORTS_FOLDER) else path

    return ByFile(config, log)

PebbleFactory = Callable[..., PebbleServer]


def _start(options: PebbleOptions) -> PebbleServer:
    """Start a server, or fail (never skip) the asking test with the install hint."""
    server = PebbleServer(options)
    try:
        server.start()
    except UnavailableError as err:
        problem = str(err)
    else:
        return server
    pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
def pebble() -> Iterator[PebbleServer]:
    """A Pebble with default options (plus challtestsrv as its DNS), shared by the session."""
    # Free ports, not Pebble's 5002/5001 defaults: two test runs at once must not collide.
    server = _start(PebbleOptions(http_port=free_http_port(), tls_port=free_http_port()))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pebble_factory() -> Iterator[PebbleFactory]:
    """Start another Pebble: ``pebble_factory(eab_keys={...}, alternate_roots=1, ...)``.

    Keywords are :class:`PebbleOptions` fields. Each call starts a new server; all of them
    are stopped when the session ends.
    """
    servers: list[PebbleServer] = []

    def start(**options: Any) -> PebbleServer:
        options.setdefault("http_port", free_http_port())
        options.setdefault("tls_port", free_http_port())
        server = _start(PebbleOptions(**options))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the session (stopped at its end); never a skip."""
    server = PostgresServer()
    try:
        server.start()
    except ServerStartError as err:
        problem = str(err)
    else:
        yield server
        server.stop()
        return
    pytest.fail(problem, pytrace=False)
