"""Storage in memory, for tests and for library users who keep state elsewhere.

One process only: leases exclude the tasks of this process (any event loop, one at a
time); a lease whose holder forgets it (a task that never releases) is free at expiry.
The live version is a small value kept by :mod:`certherd.storage.lineages`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import replace

from certherd.errors import FencedError, LeaseLostError, LockTimeoutError, NotFoundError
from certherd.storage.base import Lease, Stat
from certherd.storage.layout import check_name

__all__ = ["MemoryStorage"]

_POLL = 0.01


class MemoryStorage:
    """A dict with the Storage contract; leases per process."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.private: set[str] = set()
        self._stats: dict[str, Stat] = {}
        self._writes = itertools.count(1)
        self._leases: dict[str, Lease] = {}
        """The latest grant of each name (kept after release, for its token)."""
        self._released: set[tuple[str, int]] = set()

    # -- values -------------------------------------------------------------------------

    def _check_fence(self, fence: Lease | None) -> None:
        if fence is None:
            return
        latest = self._leases.get(fence.name)
        if latest is not None and fence.token < latest.token:
            raise FencedError(
                f"refused a write under the lease of {fence.name} with token {fence.token}: "
                f"it was granted again since (token {latest.token})"
            )

    async def read(self, key: str) -> bytes:
        try:
            return self.values[key]
        except KeyError:
            raise NotFoundError(f"{key} not found in memory storage") from None

    async def write(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        self._check_fence(fence)  # no await between the check and the change
        self.values[key] = bytes(data)
        self._stats[key] = Stat(len(data), time.time(), str(next(self._writes)))
        if private:
            self.private.add(key)
        else:
            self.private.discard(key)

    async def delete(self, key: str, *, fence: Lease | None = None) -> None:
        self._check_fence(fence)
        self.values.pop(key, None)
        self._stats.pop(key, None)
        self.private.discard(key)

    async def list(self, prefix: str) -> list[str]:
        start = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        return sorted(k for k in self.values if k.startswith(start))

    async def stat(self, key: str) -> Stat:
        try:
            return self._stats[key]
        except KeyError:
            raise NotFoundError(f"{key} not found in memory storage") from None

    async def stat_all(self, prefix: str) -> dict[str, Stat]:
        return {key: self._stats[key] for key in await self.list(prefix)}

    # -- leases -------------------------------------------------------------------------

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        check_name(name, "lock name")
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            latest = self._leases.get(name)
            now = time.time()
            if latest is None or (name, latest.token) in self._released or now >= latest.expires:
                token = (latest.token if latest else 0) + 1
                if latest is not None:
                    self._released.discard((name, latest.token))
                holder = f"memory/{os.getpid()}/{os.urandom(4).hex()}"
                lease = Lease(name, holder, token, now + ttl)
                self._leases[name] = lease
                return lease
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"another holder ({latest.holder}) holds {name} for more than "
                    f"{wait:.0f}s: wait for it to finish"
                )
            await asyncio.sleep(_POLL)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        latest = self._leases.get(lease.name)
        if (
            latest is None
            or latest.token != lease.token
            or ((lease.name, lease.token) in self._released)
        ):
            holder = f" to {latest.holder} (token {latest.token})" if latest else ""
            raise LeaseLostError(
                f"the lease of {lease.name} (token {lease.token}) ran out and was granted"
                f"{holder}: stop working on it"
            )
        renewed = replace(lease, expires=time.time() + ttl)
        self._leases[lease.name] = renewed
        return renewed

    async def release(self, lease: Lease) -> None:
        latest = self._leases.get(lease.name)
        if latest is not None and latest.token == lease.token:
            self._released.add((lease.name, lease.token))
