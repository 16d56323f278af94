"""Storage in memory, for tests and for library users who keep state elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from certherd.errors import LockTimeoutError, NotFoundError, StorageError
from certherd.storage.layout import archive_file, check_name

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A dict with the Storage contract; locks are per process (asyncio)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.private: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._live: dict[str, int] = {}

    async def read(self, key: str) -> bytes:
        try:
            return self.values[key]
        except KeyError:
            raise NotFoundError(f"{key} not found in memory storage") from None

    async def write(self, key: str, data: bytes, *, private: bool = False) -> None:
        self.values[key] = bytes(data)
        if private:
            self.private.add(key)

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)
        self.private.discard(key)

    async def exists(self, key: str) -> bool:
        return key in self.values

    async def list(self, prefix: str) -> list[str]:
        start = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        return sorted(k for k in self.values if k.startswith(start))

    async def fingerprints(self, prefix: str) -> dict[str, str]:
        start = prefix.strip("/") + "/"
        return {
            k: f"{id(v)}:{len(v)}:{hash(v)}"
            for k, v in self.values.items()
            if k.startswith(start) and "/" not in k[len(start) :]
        }

    @contextlib.asynccontextmanager
    async def lock(self, name: str, *, timeout: float = 300.0) -> AsyncIterator[None]:
        lock = self._locks.setdefault(check_name(name, "lock name"), asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            raise LockTimeoutError(f"lock {name} held for more than {timeout:.0f}s") from None
        try:
            yield
        finally:
            lock.release()

    async def publish(self, lineage: str, version: int, files: tuple[str, ...]) -> None:
        for file in files:
            if archive_file(lineage, file, version) not in self.values:
                raise StorageError(f"cannot publish {lineage} v{version}: {file} is missing")
        self._live[lineage] = version

    async def unpublish(self, lineage: str) -> None:
        self._live.pop(check_name(lineage), None)

    async def live_version(self, lineage: str) -> int | None:
        return self._live.get(check_name(lineage))
