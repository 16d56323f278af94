"""Lineage ideas above the key-value store: which lineages exist, their archive
versions, and the live one (publish, unpublish). Keys come from
:mod:`certherd.storage.layout` only.

On a store with the :class:`~certherd.storage.base.LivePublisher` ability (the
filesystem: ``live/<lineage>/*.pem`` symlinks that web servers read) publishing is
delegated to it; on any other store (memory, a database) the live version is the small
value ``live/<lineage>.json``. Writes take ``fence=``: the lease of the lineage.
"""

from __future__ import annotations

import json

from certherd.errors import NotFoundError, StorageError
from certherd.storage.base import KeyValueStore, Lease, LivePublisher, has_value
from certherd.storage.layout import (
    FILES,
    SETTINGS_FOLDER,
    archive_file,
    archive_folder,
    archive_version,
    check_name,
    lineage_of_settings,
    live_record,
)

__all__ = [
    "archive_keys",
    "archive_versions",
    "lineage_names",
    "live_version",
    "publish",
    "unpublish",
]


async def lineage_names(store: KeyValueStore) -> list[str]:
    """Every lineage (one with a settings value), sorted."""
    keys = await store.list(SETTINGS_FOLDER)
    return sorted(name for key in keys if (name := lineage_of_settings(key)) is not None)


async def archive_keys(store: KeyValueStore, lineage: str) -> list[str]:
    """Every key of ``lineage``'s archive (versions and pending key), sorted."""
    return await store.list(archive_folder(lineage))


async def archive_versions(store: KeyValueStore, lineage: str) -> dict[int, list[str]]:
    """The archive's version numbers, each with the keys of its files present."""
    found: dict[int, list[str]] = {}
    for key in await archive_keys(store, lineage):
        parsed = archive_version(key)
        if parsed is not None:
            found.setdefault(parsed[1], []).append(key)
    return found


async def publish(
    store: KeyValueStore, lineage: str, version: int, *, fence: Lease | None = None
) -> None:
    """Make archive ``version`` of ``lineage`` the live one: every file of it, or
    nothing (StorageError naming the lineage if a file is missing)."""
    check_name(lineage)
    if isinstance(store, LivePublisher):
        await store.publish(lineage, version, FILES, fence=fence)
        return
    for file in FILES:
        if not await has_value(store, archive_file(lineage, file, version)):
            raise StorageError(f"cannot publish {lineage} v{version}: {file} is missing")
    record = json.dumps({"version": version}).encode()
    await store.write(live_record(lineage), record, fence=fence)


async def unpublish(store: KeyValueStore, lineage: str, *, fence: Lease | None = None) -> None:
    """Remove the live version of ``lineage`` (its archive stays)."""
    check_name(lineage)
    if isinstance(store, LivePublisher):
        await store.unpublish(lineage, fence=fence)
    else:
        await store.delete(live_record(lineage), fence=fence)


async def live_version(store: KeyValueStore, lineage: str) -> int | None:
    """The live version of ``lineage``, or None if it has none (or an unreadable one)."""
    check_name(lineage)
    if isinstance(store, LivePublisher):
        return await store.live_version(lineage)
    try:
        data = json.loads(await store.read(live_record(lineage)))
    except NotFoundError:
        return None
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, int) and version >= 1 else None
