"""Tidying after killed runs (certherd.manager.hygiene): exact, and never under a live holder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from certherd.manager.hygiene import clear_interrupted, partial_versions, tidy_lineage
from certherd.storage import FilesystemStorage
from certherd.storage.base import has_value
from certherd.storage.layout import FILES, archive_file
from certherd.storage.leases import holding
from certherd.storage.lineages import publish
from certherd.storage.memory import MemoryStorage


async def _write(
    storage: FilesystemStorage | MemoryStorage, version: int, files: tuple[str, ...]
) -> None:
    for file in files:
        await storage.write(archive_file("example.com", file, version), b"x")


async def test_only_incomplete_versions_newer_than_the_live_one_are_partial() -> None:
    storage = MemoryStorage()
    await _write(storage, 1, ("cert.pem", "chain.pem"))  # old and odd: history, kept
    await _write(storage, 2, FILES)
    await publish(storage, "example.com", 2)
    await _write(storage, 3, FILES)  # complete but never published: an issued certificate
    await _write(storage, 4, ("cert.pem", "chain.pem", "fullchain.pem"))  # killed before the key
    partial = await partial_versions(storage, "example.com")
    assert partial == {
        4: sorted(
            archive_file("example.com", f, 4) for f in ("cert.pem", "chain.pem", "fullchain.pem")
        )
    }
    removed = await tidy_lineage(storage, "example.com")
    assert sorted(removed) == partial[4]
    assert await partial_versions(storage, "example.com") == {}
    assert await has_value(storage, archive_file("example.com", "cert.pem", 3))
    assert await has_value(storage, archive_file("example.com", "cert.pem", 1))


async def test_a_lineage_held_by_a_live_process_is_not_tidied(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    await _write(storage, 1, ("cert.pem",))
    leftover = tmp_path / "archive/example.com/.chain1.pem.0123456789abcdef.tmp"
    leftover.write_bytes(b"x")
    async with holding(storage, "example.com"):  # a run at work (its marker is there)
        assert await storage.interrupted() == ["example.com"]
        assert await clear_interrupted(storage, before=time.time() + 60) == {}
        assert leftover.exists()
        assert await has_value(storage, archive_file("example.com", "cert.pem", 1))


async def test_old_temporary_files_of_the_index_are_cleared(tmp_path: Path) -> None:
    """index.json is written without a lock: only a temporary file older than a minute
    before this process started is taken as a killed run's."""
    storage = FilesystemStorage(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    old = tmp_path / ".index.json.0123456789abcdef.tmp"
    recent = tmp_path / ".index.json.fedcba9876543210.tmp"
    other = tmp_path / ".index.json.swp"
    for path in (old, recent, other):
        path.write_bytes(b"{}")
    now = time.time()
    os.utime(old, (now - 3600, now - 3600))
    cleared = await clear_interrupted(storage, before=now)
    assert cleared == {"index.json": [old.name]}
    assert not old.exists()
    assert recent.exists()
    assert other.exists()
