"""``certherd check``'s clock line against the real Pebble's ``Date`` header, with this
host's clock (the injected one) two hours ahead, then right."""

from __future__ import annotations

import datetime as dt

import pytest
from tests.unit.fakes import FakeClock

from certherd.app import Certherd
from certherd.storage.memory import MemoryStorage
from certherd.testing.pebble import PebbleServer

pytestmark = pytest.mark.integration


async def test_a_clock_two_hours_ahead_of_the_cas_is_told(pebble: PebbleServer) -> None:
    storage = MemoryStorage()
    async with Certherd(storage) as right:
        await right.issue(
            ["127.0.0.1"],
            solvers=[{"kind": "http", "listen": f"127.0.0.1:{pebble.options.http_port}"}],
            directory_url=pebble.directory_url,
            ca_bundle=str(pebble.ca_bundle),
            email="admin@certherd.test",
            agree_tos=True,
        )
        [clock] = [f for f in await right.check(http_port=pebble.options.http_port)
                   if f.check == "clock"]  # fmt: skip
        assert clock.status == "ok", clock

    ahead = FakeClock(start=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    async with Certherd(storage, clock=ahead) as skewed:
        found = await skewed.check(http_port=pebble.options.http_port)
    [clock] = [f for f in found if f.check == "clock"]
    assert clock.status == "warn", clock
    assert "s ahead of the CA's: sync it (NTP)" in clock.text, clock
    seconds = int(clock.text.split("clock is ")[1].split(" s ")[0])
    assert 7190 <= seconds <= 7210, clock
    # Only the clock line: the CA, its account and the solver are still fine.
    assert {f.check: f.status for f in found if f.check != "clock"}["account"] == "ok"
