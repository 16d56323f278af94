"""storage.leases.holding beyond the contract suite: a release that fails never hides how
the block ended, and a renewal that finds the lease lost is logged, not raised."""

from __future__ import annotations

import asyncio

import pytest

from certherd.errors import LeaseLostError, StorageError
from certherd.storage import Lease, MemoryStorage, holding
from certherd.storage.leases import held_lease


class LostOnRenewal(MemoryStorage):
    """Every renewal finds the name granted to another holder (as after a pause)."""

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        raise LeaseLostError(f"the lease of {lease.name} ran out and was granted to another")


class BrokenRelease(MemoryStorage):
    async def release(self, lease: Lease) -> None:
        raise StorageError("the store went away")


async def test_a_failed_release_does_not_hide_the_blocks_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(RuntimeError, match="the block's own"):
        async with holding(BrokenRelease(), "example.com"):
            raise RuntimeError("the block's own error")
    assert "cannot release the lease of example.com" in caplog.text
    assert "the store went away" in caplog.text


async def test_a_lost_lease_is_logged_and_the_block_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with holding(LostOnRenewal(), "example.com", ttl=0.3) as lease:
        await asyncio.sleep(0.25)  # past the first renewal, at ttl / 3
        assert held_lease("example.com") == lease
    assert "ran out and was granted" in caplog.text
    assert "what this run still writes to example.com is refused" in caplog.text
