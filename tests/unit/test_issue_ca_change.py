"""A lineage moved to another CA (staging -> production) is not a renewal of the old one.

RFC 9773 §5: ``replaces`` names a certificate *this* CA issued; sent to another CA, a
CA such as Let's Encrypt refuses the order, so switching a lineage from staging to
production (``issue`` with the other CA reissues at once) would fail every time. Same
CA: ``replaces`` is sent, so the test can tell.
"""

from __future__ import annotations

import asyncio

from fakes import FakeClock, HostileAcmeServer

from certherd.acme import AcmeClient
from certherd.challenges.spec import SolverSpec
from certherd.manager.accounts import CaOptions
from certherd.manager.lineage import LineageState
from certherd.manager.service import Manager
from certherd.settings import LineageSettings
from certherd.storage import MemoryStorage
from certherd.storage.base import Storage

NAME = "moving.test"


def _server(base: str) -> HostileAcmeServer:
    server = HostileAcmeServer(base)
    server.directory["renewalInfo"] = server.url("/renewal-info")  # RFC 9773: ARI offered
    return server


def _settings(server: HostileAcmeServer) -> LineageSettings:
    return LineageSettings(
        name=NAME,
        names=(NAME,),
        directory_url=server.url("/directory"),
        # Never run: the authorizations are valid already.
        solvers=(SolverSpec("hook", {"challenge": "http-01", "command": "/bin/false"}),),
    )


def _replaces_sent(server: HostileAcmeServer) -> list[str | None]:
    return [seen.payload.get("replaces") for seen in server.requests_to("/new-order", "POST")]


def test_replaces_goes_only_to_the_ca_that_issued_the_certificate() -> None:
    clock = FakeClock()
    staging, production = _server("https://staging.test"), _server("https://production.test")

    async def open_client(storage: Storage, options: CaOptions) -> AcmeClient:
        server = staging if options.directory_url.startswith(staging.base_url) else production
        return server.client(clock=clock)

    async def run() -> None:
        manager = Manager(MemoryStorage(), clock=clock, client_factory=open_client)
        try:
            for settings in (_settings(staging), _settings(staging), _settings(production)):
                outcome = await manager.issue(settings)
                assert not outcome.failed, outcome
                if settings.directory_url.startswith(staging.base_url):
                    state = await LineageState.load(manager.storage, NAME)
                    assert state.certificate_id is not None  # there is something to replace
        finally:
            await manager.aclose()

    asyncio.run(run())
    first, renewal = _replaces_sent(staging)
    assert first is None
    assert renewal is not None  # the same CA: its own certificate is replaced
    assert _replaces_sent(production) == [None]
