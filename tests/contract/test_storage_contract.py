"""The contract every Storage backend must pass (see `certherd.storage.base`).

One suite, run against each backend: values, listing, fingerprints, locks and publishing
a lineage's live version. Anything a single backend does beyond the contract (file modes,
symlinks, locks across processes) is tested in that backend's own unit tests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from certherd.errors import ConfigError, LockTimeoutError, NotFoundError, StorageError
from certherd.storage import FilesystemStorage, MemoryStorage, Storage
from certherd.storage.layout import FILES, archive_file


@dataclass
class Backend:
    """A storage under test, and how to leave what an interrupted write leaves behind."""

    storage: Storage
    leave_debris: Callable[[str], None]


def _no_debris(key: str) -> None:
    """A backend with transactions leaves nothing behind a failed write."""


def _filesystem(root: Path) -> Backend:
    def leave_debris(key: str) -> None:
        # atomic_write's temp file, as left by a crash between write and rename.
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f".{path.name}.0123456789abcdef.tmp").write_bytes(b"half")

    return Backend(FilesystemStorage(root), leave_debris)


@pytest.fixture(params=["filesystem", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "filesystem":
        return _filesystem(tmp_path / "store")
    return Backend(MemoryStorage(), _no_debris)


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


async def write_version(storage: Storage, lineage: str, version: int) -> None:
    """Archive files of one version, each holding its own name."""
    for file in FILES:
        key = archive_file(lineage, file, version)
        await storage.write(key, key.encode(), private=file == "privkey.pem")


def test_backend_satisfies_the_protocol(storage: Storage) -> None:
    assert isinstance(storage, Storage)


# -- values ---------------------------------------------------------------------------


async def test_reading_a_missing_key_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.read("state/nothing.json")


async def test_a_folder_is_not_a_value(storage: Storage) -> None:
    await storage.write("state/a.json", b"{}")
    assert not await storage.exists("state")
    with pytest.raises(NotFoundError):
        await storage.read("state")


async def test_a_value_below_a_value_is_not_found(storage: Storage) -> None:
    await storage.write("state/a.json", b"{}")
    with pytest.raises(NotFoundError):
        await storage.read("state/a.json/deeper")


@pytest.mark.parametrize(
    "data", [b"", b"{}", bytes(range(256)), b"\0" * 10, b"x" * 300_000], ids=len
)
async def test_write_then_read_round_trips(storage: Storage, data: bytes) -> None:
    await storage.write("archive/example.com/cert1.pem", data)
    assert await storage.read("archive/example.com/cert1.pem") == data


async def test_private_values_read_back(storage: Storage) -> None:
    await storage.write("accounts/ca-1/default/key.pem", b"secret", private=True)
    assert await storage.read("accounts/ca-1/default/key.pem") == b"secret"


async def test_write_copies_mutable_data(storage: Storage) -> None:
    data = bytearray(b"before")
    await storage.write("state/a.json", data)  # type: ignore[arg-type]
    data[:] = b"after!"
    assert await storage.read("state/a.json") == b"before"


async def test_overwrite_replaces_the_value(storage: Storage) -> None:
    await storage.write("state/a.json", b"a longer first value")
    await storage.write("state/a.json", b"short")
    assert await storage.read("state/a.json") == b"short"
    assert await storage.list("state") == ["state/a.json"]


async def test_delete_removes_and_a_missing_key_is_fine(storage: Storage) -> None:
    await storage.write("state/a.json", b"{}")
    await storage.write("state/b.json", b"{}")
    await storage.delete("state/a.json")
    await storage.delete("state/a.json")
    await storage.delete("state/never.json")
    await storage.delete("nowhere/at/all.json")
    assert not await storage.exists("state/a.json")
    with pytest.raises(NotFoundError):
        await storage.read("state/a.json")
    assert await storage.list("state") == ["state/b.json"]


async def test_exists(storage: Storage) -> None:
    assert not await storage.exists("renewal/a.json")
    await storage.write("renewal/a.json", b"")
    assert await storage.exists("renewal/a.json")
    assert not await storage.exists("renewal/b.json")


async def test_concurrent_writes_leave_one_whole_value(storage: Storage) -> None:
    values = [bytes([n]) * 10_000 for n in range(20)]
    await asyncio.gather(*(storage.write("state/race.json", v) for v in values))
    assert await storage.read("state/race.json") in values


# -- listing --------------------------------------------------------------------------


async def test_list_is_recursive_and_sorted(storage: Storage) -> None:
    keys = [
        "archive/b.example/cert1.pem",
        "archive/a.example/privkey2.pem",
        "archive/a.example/cert10.pem",
        "archive/a.example/cert2.pem",
        "archiveish/x.pem",
        "renewal/a.example.json",
    ]
    for key in keys:
        await storage.write(key, b"-")
    expected = sorted(k for k in keys if k.startswith("archive/"))
    assert await storage.list("archive") == expected
    assert await storage.list("archive/") == expected
    assert await storage.list("archive/a.example") == expected[:3]
    assert await storage.list("") == sorted(keys)


async def test_list_of_a_missing_prefix_is_empty(storage: Storage) -> None:
    assert await storage.list("renewal") == []
    await storage.write("renewal-old/a.json", b"-")
    assert await storage.list("renewal") == []


async def test_list_and_fingerprints_skip_interrupted_writes(backend: Backend) -> None:
    storage = backend.storage
    await storage.write("state/a.json", b"{}")
    backend.leave_debris("state/a.json")
    backend.leave_debris("state/b.json")
    assert await storage.list("state") == ["state/a.json"]
    assert set(await storage.fingerprints("state")) == {"state/a.json"}
    assert await storage.read("state/a.json") == b"{}"


# -- fingerprints ---------------------------------------------------------------------


async def test_fingerprints_list_only_direct_children(storage: Storage) -> None:
    for key in ("state/a.json", "state/b.json", "state/deeper/c.json", "stateful/d.json"):
        await storage.write(key, b"{}")
    assert set(await storage.fingerprints("state")) == {"state/a.json", "state/b.json"}
    assert set(await storage.fingerprints("state/")) == {"state/a.json", "state/b.json"}
    assert await storage.fingerprints("nothing") == {}


async def test_a_fingerprint_changes_with_its_value_only(storage: Storage) -> None:
    await storage.write("state/a.json", b"aaaa")
    await storage.write("state/b.json", b"bbbb")
    before = await storage.fingerprints("state")
    assert before == await storage.fingerprints("state"), "stable while nothing changes"
    await storage.write("state/a.json", b"AAAA")  # same size, written at once
    after = await storage.fingerprints("state")
    assert after["state/a.json"] != before["state/a.json"]
    assert after["state/b.json"] == before["state/b.json"]
    await storage.write("state/a.json", b"AAAA!")
    assert (await storage.fingerprints("state"))["state/a.json"] != after["state/a.json"]


async def test_a_deleted_value_leaves_the_fingerprints(storage: Storage) -> None:
    await storage.write("state/a.json", b"{}")
    await storage.delete("state/a.json")
    assert await storage.fingerprints("state") == {}


# -- locks ----------------------------------------------------------------------------


async def test_lock_excludes_a_second_holder(storage: Storage) -> None:
    events: list[str] = []
    first_holds = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with storage.lock("example.com", timeout=5):
            events.append("first in")
            first_holds.set()
            await release_first.wait()
            events.append("first out")

    async def second() -> None:
        await first_holds.wait()
        async with storage.lock("example.com", timeout=5):
            events.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_holds.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert events == ["first in"]
    release_first.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert events == ["first in", "first out", "second in"]


async def test_lock_times_out_while_held(storage: Storage) -> None:
    async with storage.lock("example.com"):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match=r"example\.com"):
            async with storage.lock("example.com", timeout=0.1):
                pytest.fail("a second holder got the lock")
        assert 0.09 <= time.monotonic() - started < 2
        async with storage.lock("other.example", timeout=0.1):
            pass  # other names are independent
    async with storage.lock("example.com", timeout=0.1):
        pass  # the timed-out waiter left nothing behind


async def test_lock_is_released_when_the_block_raises(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with storage.lock("example.com"):
            raise RuntimeError("boom")
    async with storage.lock("example.com", timeout=0.1):
        pass


async def test_a_cancelled_waiter_does_not_keep_the_lock(storage: Storage) -> None:
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with storage.lock("example.com"):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with storage.lock("example.com", timeout=30):
            pytest.fail("the waiter got the lock")

    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await holding
    async with storage.lock("example.com", timeout=0.5):
        pass


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "a\0b", ".hidden"])
async def test_lock_names_are_checked(storage: Storage, name: str) -> None:
    with pytest.raises(ConfigError):
        async with storage.lock(name, timeout=0.1):
            pass


# -- publishing -----------------------------------------------------------------------


async def test_nothing_is_live_before_publishing(storage: Storage) -> None:
    assert await storage.live_version("example.com") is None
    await write_version(storage, "example.com", 1)
    assert await storage.live_version("example.com") is None


async def test_publish_switches_the_live_version(storage: Storage) -> None:
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    assert await storage.live_version("example.com") == 1
    await write_version(storage, "example.com", 2)
    await storage.publish("example.com", 2, FILES)
    assert await storage.live_version("example.com") == 2
    await storage.publish("example.com", 1, FILES)  # rolling back is publishing too
    assert await storage.live_version("example.com") == 1
    assert await storage.live_version("other.example") is None


async def test_publish_handles_many_digit_versions(storage: Storage) -> None:
    await write_version(storage, "example.com", 12)
    await storage.publish("example.com", 12, FILES)
    assert await storage.live_version("example.com") == 12


async def test_unpublish_keeps_the_archive(storage: Storage) -> None:
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    await storage.unpublish("example.com")
    assert await storage.live_version("example.com") is None
    assert await storage.read(archive_file("example.com", "cert.pem", 1))
    await storage.unpublish("example.com")
    await storage.unpublish("never.example")
    await storage.publish("example.com", 1, FILES)
    assert await storage.live_version("example.com") == 1


async def test_publishing_a_missing_version_fails_and_changes_nothing(storage: Storage) -> None:
    with pytest.raises(StorageError, match=r"example\.com"):
        await storage.publish("example.com", 1, FILES)
    assert await storage.live_version("example.com") is None
    await write_version(storage, "example.com", 1)
    await storage.publish("example.com", 1, FILES)
    # Version 2 is only half there: the live version must stay 1, for every file.
    await storage.write(archive_file("example.com", "cert.pem", 2), b"cert2")
    with pytest.raises(StorageError, match=r"example\.com"):
        await storage.publish("example.com", 2, FILES)
    assert await storage.live_version("example.com") == 1
    if isinstance(storage, FilesystemStorage):
        live = storage.live_dir("example.com")
        for file in FILES:
            assert os.readlink(live / file).endswith(f"{file.removesuffix('.pem')}1.pem")


@pytest.mark.parametrize("lineage", ["..", "../etc", "a/b", ""])
async def test_lineage_names_are_checked_when_publishing(storage: Storage, lineage: str) -> None:
    with pytest.raises((ConfigError, ValueError)):
        await storage.publish(lineage, 1, FILES)
    with pytest.raises((ConfigError, ValueError)):
        await storage.live_version(lineage)
