"""The contract every Storage backend must pass (see `certherd.storage.base`).

One suite, run against each backend of ``storage_backends.BACKENDS``, through both
protocols: the key-value store (atomic put/get/delete, list by prefix, stat, private
values) and the locker (leases, fencing tokens, renewal, expiry, a holder that pauses
past its lease or dies), and the lineage layer above them (publishing). Where the
backend is shared between processes, the second holder is a real child process that
is SIGSTOPped, SIGCONTed and killed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.contract.storage_backends import BACKENDS, Backend, OtherHolder

from certherd.errors import (
    ConfigError,
    FencedError,
    LeaseLostError,
    LockTimeoutError,
    NotFoundError,
    StorageError,
)
from certherd.storage import FilesystemStorage, KeyValueStore, Locker, Storage, holding
from certherd.storage.base import StatListing, has_value
from certherd.storage.layout import FILES, archive_file, live_record
from certherd.storage.leases import held_lease
from certherd.storage.lineages import live_version, publish, unpublish


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made = BACKENDS[request.param](tmp_path / "store", lambda: request.getfixturevalue("postgres"))
    yield made
    if made.close is not None:
        await made.close()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


@pytest.fixture
def other(backend: Backend) -> Iterator[OtherHolder]:
    holder = backend.other_holder()
    try:
        yield holder
    finally:
        holder.close()


async def write_version(storage: Storage, lineage: str, version: int) -> None:
    """Archive files of one version, each holding its own name."""
    for file in FILES:
        key = archive_file(lineage, file, version)
        await storage.write(key, key.encode(), private=file == "privkey.pem")


def test_backend_satisfies_both_protocols(storage: Storage) -> None:
    assert isinstance(storage, KeyValueStore)
    assert isinstance(storage, Locker)
    assert isinstance(storage, Storage)


# -- values ---------------------------------------------------------------------------


async def test_reading_a_missing_key_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.read("state/nothing.json")


async def test_a_folder_is_not_a_value(storage: Storage) -> None:
    await storage.write("state/a.json", b"{}")
    assert not await has_value(storage, "state")
    with pytest.raises(NotFoundError):
        await storage.read("state")
    with pytest.raises(NotFoundError):
        await storage.stat("state")


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


async def test_private_values_read_back_and_only_their_owner_can(backend: Backend) -> None:
    storage = backend.storage
    await storage.write("archive/a.example/privkey1.pem", b"secret", private=True)
    await storage.write("archive/a.example/cert1.pem", b"public")
    assert await storage.read("archive/a.example/privkey1.pem") == b"secret"
    assert backend.is_private("archive/a.example/privkey1.pem")
    assert not backend.is_private("archive/a.example/cert1.pem")
    # Rewritten public, it is public; rewritten private again, private (0600 on disk).
    await storage.write("archive/a.example/privkey1.pem", b"secret2", private=True)
    assert backend.is_private("archive/a.example/privkey1.pem")


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
    with pytest.raises(NotFoundError):
        await storage.stat("state/a.json")
    with pytest.raises(NotFoundError):
        await storage.read("state/a.json")
    assert await storage.list("state") == ["state/b.json"]


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


async def test_list_takes_the_prefix_literally(storage: Storage) -> None:
    """``_`` starts a wildcard's lineage (``_.example.com``) and is a wildcard of SQL's
    LIKE, as is ``%``: a prefix matches itself only."""
    keys = [
        "archive/_.example.com/cert1.pem",
        "archive/a.example.com/cert1.pem",
        "state/100%/a.json",
        "state/1000/a.json",
    ]
    for key in keys:
        await storage.write(key, b"-")
    assert await storage.list("archive/_.example.com") == ["archive/_.example.com/cert1.pem"]
    assert await storage.list("state/100%") == ["state/100%/a.json"]
    if isinstance(storage, StatListing):
        assert list(await storage.stat_all("archive/_.example.com")) == [keys[0]]


async def test_list_of_a_missing_prefix_is_empty(storage: Storage) -> None:
    assert await storage.list("renewal") == []
    await storage.write("renewal-old/a.json", b"-")
    assert await storage.list("renewal") == []


async def test_list_and_stat_skip_interrupted_writes(backend: Backend) -> None:
    storage = backend.storage
    await storage.write("state/a.json", b"{}")
    backend.leave_debris("state/a.json")
    backend.leave_debris("state/b.json")
    assert await storage.list("state") == ["state/a.json"]
    if isinstance(storage, StatListing):
        assert set(await storage.stat_all("state")) == {"state/a.json"}
    assert await storage.read("state/a.json") == b"{}"
    with pytest.raises(NotFoundError):
        await storage.stat("state/b.json")


# -- stat -----------------------------------------------------------------------------


async def test_stat_gives_size_time_and_a_token_that_changes_with_every_write(
    storage: Storage,
) -> None:
    before = time.time()
    await storage.write("state/a.json", b"aaaa")
    await storage.write("state/b.json", b"bbbbbb")
    first = await storage.stat("state/a.json")
    assert first.size == 4
    assert before - 2 <= first.modified <= time.time() + 2
    assert await storage.stat("state/a.json") == first, "stable while nothing changes"
    await storage.write("state/a.json", b"AAAA")  # same size, at once
    second = await storage.stat("state/a.json")
    assert second.token != first.token
    await storage.write("state/a.json", b"AAAA")  # even the same bytes
    third = await storage.stat("state/a.json")
    assert third.token not in (first.token, second.token)
    assert (await storage.stat("state/b.json")).size == 6


async def test_stat_of_a_missing_key_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.stat("state/never.json")
    await storage.write("state/a.json", b"{}")
    with pytest.raises(NotFoundError):
        await storage.stat("state/a.json/deeper")


async def test_stat_all_is_the_stat_of_every_listed_key(storage: Storage) -> None:
    """The optional one-listing stat (the renewal index uses it) agrees with ``stat``."""
    if not isinstance(storage, StatListing):
        return  # an optional ability: the index falls back to list + stat
    for key in ("state/a.json", "state/b.json", "state/deeper/c.json", "stateful/d.json"):
        await storage.write(key, key.encode())
    listed = await storage.stat_all("state")
    assert sorted(listed) == await storage.list("state")
    for key, found in listed.items():
        assert found == await storage.stat(key)
    assert await storage.stat_all("nothing") == {}
    await storage.delete("state/a.json")
    assert "state/a.json" not in await storage.stat_all("state/")


# -- publishing (the lineage layer, certherd.storage.lineages) ----------------------


async def test_nothing_is_live_before_publishing(storage: Storage) -> None:
    assert await live_version(storage, "example.com") is None
    await write_version(storage, "example.com", 1)
    assert await live_version(storage, "example.com") is None


async def test_publish_switches_the_live_version(storage: Storage) -> None:
    await write_version(storage, "example.com", 1)
    await publish(storage, "example.com", 1)
    assert await live_version(storage, "example.com") == 1
    await write_version(storage, "example.com", 2)
    await publish(storage, "example.com", 2)
    assert await live_version(storage, "example.com") == 2
    await publish(storage, "example.com", 1)  # rolling back is publishing too
    assert await live_version(storage, "example.com") == 1
    assert await live_version(storage, "other.example") is None


async def test_publish_handles_many_digit_versions(storage: Storage) -> None:
    await write_version(storage, "example.com", 12)
    await publish(storage, "example.com", 12)
    assert await live_version(storage, "example.com") == 12


async def test_unpublish_keeps_the_archive(storage: Storage) -> None:
    await write_version(storage, "example.com", 1)
    await publish(storage, "example.com", 1)
    await unpublish(storage, "example.com")
    assert await live_version(storage, "example.com") is None
    assert await storage.read(archive_file("example.com", "cert.pem", 1))
    await unpublish(storage, "example.com")
    await unpublish(storage, "never.example")
    await publish(storage, "example.com", 1)
    assert await live_version(storage, "example.com") == 1


async def test_publishing_a_missing_version_fails_and_changes_nothing(storage: Storage) -> None:
    with pytest.raises(StorageError, match=r"example\.com"):
        await publish(storage, "example.com", 1)
    assert await live_version(storage, "example.com") is None
    await write_version(storage, "example.com", 1)
    await publish(storage, "example.com", 1)
    # Version 2 is only half there: the live version must stay 1, for every file.
    await storage.write(archive_file("example.com", "cert.pem", 2), b"cert2")
    with pytest.raises(StorageError, match=r"example\.com"):
        await publish(storage, "example.com", 2)
    assert await live_version(storage, "example.com") == 1
    if isinstance(storage, FilesystemStorage):
        live = storage.live_dir("example.com")
        for file in FILES:
            assert os.readlink(live / file).endswith(f"{file.removesuffix('.pem')}1.pem")


@pytest.mark.parametrize("lineage", ["..", "../etc", "a/b", ""])
async def test_lineage_names_are_checked_when_publishing(storage: Storage, lineage: str) -> None:
    with pytest.raises((ConfigError, ValueError)):
        await publish(storage, lineage, 1)
    with pytest.raises((ConfigError, ValueError)):
        await live_version(storage, lineage)


async def test_a_publish_fenced_by_a_lost_lease_is_refused(storage: Storage) -> None:
    await write_version(storage, "example.com", 1)
    await write_version(storage, "example.com", 2)
    old = await storage.acquire("example.com", ttl=0.2, wait=0)
    await asyncio.sleep(0.3)
    new = await storage.acquire("example.com", ttl=30, wait=0)
    await publish(storage, "example.com", 2, fence=new)
    with pytest.raises(FencedError):
        await publish(storage, "example.com", 1, fence=old)
    with pytest.raises(FencedError):
        await unpublish(storage, "example.com", fence=old)
    assert await live_version(storage, "example.com") == 2
    await storage.release(new)


async def test_the_live_version_of_a_plain_store_is_one_small_value(storage: Storage) -> None:
    """Without live files (memory, a database), the lineage layer keeps the live version
    as ``live/<lineage>.json``; the filesystem's ``live/<lineage>/`` holds symlinks."""
    await write_version(storage, "example.com", 3)
    await publish(storage, "example.com", 3)
    if isinstance(storage, FilesystemStorage):
        live = storage.live_dir("example.com")
        assert sorted(p.name for p in live.iterdir()) == sorted(FILES)
        assert all((live / file).is_symlink() for file in FILES)
    else:
        assert await storage.list("live") == [live_record("example.com")]


# -- leases ---------------------------------------------------------------------------


async def test_a_lease_is_granted_renewed_and_released(storage: Storage) -> None:
    before = time.time()
    lease = await storage.acquire("example.com", ttl=30, wait=0)
    assert lease.name == "example.com"
    assert lease.holder
    assert before + 29 <= lease.expires <= time.time() + 31
    await asyncio.sleep(0.05)
    renewed = await storage.renew(lease, ttl=60)
    assert renewed.token == lease.token
    assert renewed.holder == lease.holder
    assert renewed.expires > lease.expires + 25
    with pytest.raises(LockTimeoutError):
        await storage.acquire("example.com", ttl=30, wait=0)  # held
    other = await storage.acquire("other.example", ttl=30, wait=0)  # names are independent
    await storage.release(renewed)
    again = await storage.acquire("example.com", ttl=30, wait=0)
    assert again.token > lease.token
    await storage.release(again)
    await storage.release(other)


async def test_tokens_strictly_increase_with_every_grant(storage: Storage) -> None:
    tokens = []
    for _ in range(5):
        lease = await storage.acquire("example.com", ttl=30, wait=0)
        tokens.append(lease.token)
        await storage.release(lease)
    expired = await storage.acquire("example.com", ttl=0.1, wait=0)
    tokens.append(expired.token)
    await asyncio.sleep(0.2)
    taken_over = await storage.acquire("example.com", ttl=30, wait=0)  # never released
    tokens.append(taken_over.token)
    assert tokens == sorted(set(tokens)), tokens


async def test_tokens_increase_across_processes(backend: Backend, other: OtherHolder) -> None:
    """Grants from several processes at once: every token distinct, each process's
    growing, and the next grant above all of them."""
    storage = backend.storage
    holders = [other] + [backend.other_holder() for _ in range(2)] if backend.shared else [other]
    try:
        answers = await asyncio.gather(*(h.command("cycle example.com 15") for h in holders))
    finally:
        for holder in holders[1:]:
            holder.close()
    runs = [[int(t) for t in answer.split()] for answer in answers]
    tokens = [t for run in runs for t in run]
    assert len(tokens) == 15 * len(holders)
    assert len(set(tokens)) == len(tokens), "two grants with one token"
    for run in runs:
        assert run == sorted(run)
    last = await storage.acquire("example.com", ttl=30, wait=0)
    assert last.token > max(tokens)


async def test_a_waiter_is_granted_the_lease_when_it_is_released(storage: Storage) -> None:
    first = await storage.acquire("example.com", ttl=30, wait=0)
    waiter = asyncio.create_task(storage.acquire("example.com", ttl=30, wait=10))
    await asyncio.sleep(0.3)
    assert not waiter.done(), "granted while held"
    await storage.release(first)
    second = await asyncio.wait_for(waiter, 5)
    assert second.token > first.token
    await storage.release(second)


async def test_a_waiter_is_granted_the_lease_when_it_expires(storage: Storage) -> None:
    first = await storage.acquire("example.com", ttl=1.0, wait=0)  # never renewed
    waiter = asyncio.create_task(storage.acquire("example.com", ttl=30, wait=10))
    await asyncio.sleep(0.2)
    assert not waiter.done(), "granted before expiry"
    second = await asyncio.wait_for(waiter, 5)
    assert time.time() >= first.expires
    assert second.token > first.token


async def test_acquire_gives_up_after_wait(storage: Storage) -> None:
    held = await storage.acquire("example.com", ttl=30, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeoutError, match=r"example\.com"):
        await storage.acquire("example.com", ttl=30, wait=0.3)
    assert time.monotonic() - started >= 0.29
    await storage.release(held)
    lease = await storage.acquire("example.com", ttl=30, wait=0)  # the waiter left nothing
    await storage.release(lease)


async def test_a_cancelled_waiter_is_granted_nothing(storage: Storage) -> None:
    held = await storage.acquire("example.com", ttl=30, wait=0)
    waiter = asyncio.create_task(storage.acquire("example.com", ttl=30, wait=30))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await storage.release(held)
    lease = await storage.acquire("example.com", ttl=30, wait=0)
    await storage.release(lease)


async def test_renewing_a_lease_granted_again_raises_lease_lost(storage: Storage) -> None:
    old = await storage.acquire("example.com", ttl=0.2, wait=0)
    await asyncio.sleep(0.3)
    quiet = await storage.renew(old, ttl=0.2)  # expired, but nobody took it: extended
    assert quiet.token == old.token
    await asyncio.sleep(0.3)
    new = await storage.acquire("example.com", ttl=30, wait=0)
    assert new.token > old.token
    with pytest.raises(LeaseLostError, match=r"example\.com"):
        await storage.renew(quiet, ttl=30)
    await storage.release(quiet)  # lost: releasing it must not free the new holder's
    with pytest.raises(LockTimeoutError):
        await storage.acquire("example.com", ttl=30, wait=0)
    await storage.renew(new, ttl=30)
    await storage.release(new)


async def test_fenced_writes_of_a_lost_lease_are_refused(storage: Storage) -> None:
    old = await storage.acquire("example.com", ttl=0.2, wait=0)
    await storage.write("state/example.com.json", b"old holder", fence=old)  # current: fine
    await asyncio.sleep(0.3)
    new = await storage.acquire("example.com", ttl=30, wait=0)
    await storage.write("state/example.com.json", b"new holder", fence=new)
    with pytest.raises(FencedError, match=r"example\.com"):
        await storage.write("state/example.com.json", b"old holder again", fence=old)
    with pytest.raises(FencedError):
        await storage.delete("state/example.com.json", fence=old)
    with pytest.raises(FencedError):
        await storage.write("state/other.json", b"new key", fence=old)
    assert await storage.read("state/example.com.json") == b"new holder"
    assert await storage.list("state") == ["state/example.com.json"]
    await storage.release(new)
    await storage.write("state/example.com.json", b"released, still latest", fence=new)
    assert issubclass(FencedError, StorageError)


async def test_a_holder_that_pauses_past_its_lease_loses_it_and_cannot_write(
    backend: Backend, other: OtherHolder
) -> None:
    """The holder (a child process SIGSTOPped, where the backend is shared between
    processes) stops past its ttl; we are granted the lease with a higher token and
    write; it wakes: its renew fails and its fenced write and delete are refused."""
    storage = backend.storage
    paused_token = int(await other.command("acquire example.com 1.5"))  # ttl 1.5 s
    assert await other.command("write state/example.com.json paused-before") == "ok"
    other.pause()
    try:
        with pytest.raises(LockTimeoutError):
            await storage.acquire("example.com", ttl=30, wait=0)  # still within its ttl
        lease = await storage.acquire("example.com", ttl=30, wait=5)
        assert lease.token > paused_token
        await storage.write("state/example.com.json", b"new-holder", fence=lease)
    finally:
        other.resume()
    assert await other.command("renew") == "lost"
    assert await other.command("write state/example.com.json paused-after") == "fenced"
    assert await other.command("delete state/example.com.json") == "fenced"
    assert await storage.read("state/example.com.json") == b"new-holder"
    assert await other.command("release") == "ok"
    renewed = await storage.renew(lease, ttl=30)  # still ours after its release
    assert renewed.token == lease.token
    await storage.release(renewed)


async def test_a_holder_that_dies_frees_the_lease(backend: Backend, other: OtherHolder) -> None:
    """kill -9 of the holder (a child process where the backend is shared): the lease
    is free at once on the filesystem (the kernel drops the dead holder's flock), at
    expiry elsewhere; it is granted again with a higher token."""
    storage = backend.storage
    ttl = 60 if backend.frees_dead_holders_at_once else 0.5
    dead_token = int(await other.command(f"acquire example.com {ttl}"))
    other.kill()
    lease = await storage.acquire("example.com", ttl=30, wait=10)  # well before 60 s
    assert lease.token > dead_token
    await storage.release(lease)


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "a\0b", ".hidden"])
async def test_lock_names_are_checked(storage: Storage, name: str) -> None:
    with pytest.raises(ConfigError):
        await storage.acquire(name, ttl=30, wait=0)


# -- holding: the helper callers use ---------------------------------------------------


async def test_holding_renews_the_lease_in_the_background(storage: Storage) -> None:
    async with holding(storage, "example.com", ttl=0.6) as lease:
        assert held_lease("example.com") == lease
        assert held_lease("other.example") is None
        await asyncio.sleep(2.0)  # over three ttls: without renewal it would have expired
        with pytest.raises(LockTimeoutError):
            await storage.acquire("example.com", ttl=30, wait=0)
        await storage.write("state/example.com.json", b"still ours", fence=lease)
    assert held_lease("example.com") is None
    after = await storage.acquire("example.com", ttl=30, wait=0)  # released at the end
    assert after.token > lease.token
    await storage.release(after)


async def test_holding_releases_when_the_block_raises_or_is_cancelled(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with holding(storage, "example.com"):
            raise RuntimeError("boom")
    entered = asyncio.Event()

    async def work() -> None:
        async with holding(storage, "example.com"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lease = await storage.acquire("example.com", ttl=30, wait=0)
    await storage.release(lease)


async def test_holding_waits_then_times_out(storage: Storage) -> None:
    async with holding(storage, "example.com"):
        with pytest.raises(LockTimeoutError, match=r"example\.com"):
            async with holding(storage, "example.com", wait=0.2):
                pytest.fail("a second holder got the lease")
