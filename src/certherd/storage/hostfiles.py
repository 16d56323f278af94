"""A shared store (PostgreSQL) with this host's live files.

Every value, lease and live version is the shared store's; what this host adds is a copy
of each published version in its own config dir (a :class:`FilesystemStorage`): the
version's files under ``archive/<lineage>/`` and ``live/<lineage>/*.pem`` switched to them
atomically, as with the filesystem storage, so web servers and deploy hooks read files on
this host (``CERTHERD_LIVE_DIR``).

Publishing writes the shared live record first (fenced: a holder that lost its lease
changes nothing, here or there), then this host's copy. When this host's copy is behind
the shared live version (another host obtained it, or a copy failed), :meth:`sync`
brings it up to date (``certherd renew`` calls it); reads never write.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from certherd.errors import ConfigError, NotFoundError, SealedError, StorageError
from certherd.storage.base import Lease, LeaseListing, Stat, Storage, stat_below
from certherd.storage.filesystem import FilesystemStorage
from certherd.storage.layout import FILES, archive_file, check_name, live_record

__all__ = ["HostFiles"]

log = logging.getLogger(__name__)

Names = list[str]  # (the class's ``list`` method hides the builtin in its body)


class HostFiles:
    """``shared`` for everything; ``local`` (this host's config dir) for live files."""

    def __init__(self, shared: Storage, local: FilesystemStorage) -> None:
        self.shared = shared
        self.local = local

    def __repr__(self) -> str:
        return f"HostFiles({self.shared!r}, live files in {self.local.root})"

    async def aclose(self) -> None:
        closing = getattr(self.shared, "aclose", None)
        if closing is not None:
            await closing()

    # -- the shared store -----------------------------------------------------------------

    async def read(self, key: str) -> bytes:
        return await self.shared.read(key)

    async def write(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        await self.shared.write(key, data, private=private, fence=fence)

    async def delete(self, key: str, *, fence: Lease | None = None) -> None:
        await self.shared.delete(key, fence=fence)
        if key.startswith("archive/"):  # this host's copy goes with it
            await self.local.delete(key)

    async def list(self, prefix: str) -> Names:
        return await self.shared.list(prefix)

    async def stat(self, key: str) -> Stat:
        return await self.shared.stat(key)

    async def stat_all(self, prefix: str) -> dict[str, Stat]:
        return await stat_below(self.shared, prefix)

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        return await self.shared.acquire(name, ttl=ttl, wait=wait)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        return await self.shared.renew(lease, ttl=ttl)

    async def release(self, lease: Lease) -> None:
        await self.shared.release(lease)

    async def held(self) -> dict[str, Lease]:
        return await self.shared.held() if isinstance(self.shared, LeaseListing) else {}

    # -- live versions: shared record, files on this host --------------------------------

    async def publish(
        self, lineage: str, version: int, files: tuple[str, ...], *, fence: Lease | None = None
    ) -> None:
        contents = await self._version(lineage, version, files)
        record = json.dumps({"version": version}).encode()
        await self.shared.write(live_record(lineage), record, fence=fence)
        await self._copy(lineage, version, contents)

    async def unpublish(self, lineage: str, *, fence: Lease | None = None) -> None:
        await self.shared.delete(live_record(lineage), fence=fence)
        await self.local.unpublish(lineage)

    async def live_version(self, lineage: str) -> int | None:
        """The shared live version (this host's copy may be behind: :meth:`sync`)."""
        try:
            data: Any = json.loads(await self.shared.read(live_record(check_name(lineage))))
        except (NotFoundError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, int) and version >= 1 else None

    async def sync(self) -> dict[str, int]:
        """Bring this host's live files up to the shared live version of every lineage
        whose copy is behind (or missing); which lineages moved, to which version. A
        lineage that cannot be copied is logged and left for the next run."""
        moved: dict[str, int] = {}
        from certherd.storage.fleet import fleet_of

        fleet = fleet_of(self.shared)
        known: dict[str, int | None] = {}
        if fleet is not None:  # every live version in one query, this host's in one scan
            here = await self.local.live_versions()
            known = {name: entry.live for name, entry in (await fleet.schedule()).items()}
            keys = [live_record(name) for name, live in known.items() if here.get(name) != live]
        else:
            keys = await self.shared.list("live")
        for key in keys:
            lineage = key.removeprefix("live/").removesuffix(".json")
            if "/" in lineage or not key.endswith(".json"):
                continue
            try:
                version = known[lineage] if fleet is not None else await self.live_version(lineage)
                if version is None or await self.local.live_version(lineage) == version:
                    continue
                await self._copy(lineage, version, await self._version(lineage, version, FILES))
            except SealedError:
                raise  # this host lacks the storage key: every lineage would fail alike
            except (ConfigError, StorageError) as exc:
                log.warning("cannot bring the live files of %s on this host up to date: %s",
                            lineage, exc)  # fmt: skip
                continue
            moved[lineage] = version
        return moved

    async def copy_live(self, lineage: str, version: int) -> None:
        """This host's copy of ``lineage``'s ``version`` (read from the shared store),
        made live here (a fleet node, when the shared live version moved)."""
        await self._copy(lineage, version, await self._version(lineage, version, FILES))

    def live_dir(self, lineage: str) -> Path:
        return self.local.live_dir(lineage)

    async def _version(
        self, lineage: str, version: int, files: tuple[str, ...]
    ) -> dict[str, bytes]:
        contents = {}
        for file in files:
            key = archive_file(lineage, file, version)
            try:
                contents[key] = await self.shared.read(key)
            except NotFoundError:
                raise StorageError(
                    f"cannot publish {lineage} v{version}: {file} is missing"
                ) from None
        return contents

    async def _copy(self, lineage: str, version: int, contents: dict[str, bytes]) -> None:
        """This host's copy of ``version``: its files, then the live links switched."""
        for key, data in contents.items():
            await self.local.write(key, data, private=key.rsplit("/", 1)[-1].startswith("privkey"))
        await self.local.publish(lineage, version, FILES)
