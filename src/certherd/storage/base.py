"""The storage contract: a key-value store and a locker with leases (CertMagic's shape).

Two small protocols, :class:`KeyValueStore` and :class:`Locker`; a backend implements
both (:class:`Storage`). Lineage ideas (versions, the live one, publishing) live above
them in :mod:`certherd.storage.lineages`, and every key is built by
:mod:`certherd.storage.layout` (never from CA input).

Values
------
A backend MUST:

- make every ``write`` atomic (a reader sees the old value or the new one, never a mix)
  and durable before returning (temp file, fsync, rename; or a committed transaction);
- keep ``private=True`` values readable by their owner only (files 0600; rows no other
  database role can read);
- raise :class:`~certherd.errors.NotFoundError` for a missing key on ``read`` and
  ``stat`` (a "folder" above keys is no value), and
  :class:`~certherd.errors.StorageError` (one line: what, where, why) for any failure;
- give every write a new :attr:`Stat.token` (an inode and mtime, a row version...), so
  callers can keep a cache of parsed values and notice any change, even one within the
  resolution of a clock.

Calls may run concurrently from tasks of one event loop; cancellation during a write
leaves the old value or the new one in place.

Leases
------
``acquire(name, ttl=, wait=)`` grants the lease ``name`` to one holder at a time, for
``ttl`` seconds, waiting up to ``wait`` seconds (then
:class:`~certherd.errors.LockTimeoutError`). Every grant of a name carries a **fencing
token** greater than that of any earlier grant of the name (in this store: across
processes, and across machines for a shared backend). ``renew`` extends a lease while
the work lasts; it raises :class:`~certherd.errors.LeaseLostError` once another holder
was granted the name (a lease that ran out but was not granted again is extended).
``release`` gives it up (a lease already lost is ignored). Callers use
:func:`certherd.storage.leases.holding`, which renews in the background every ttl/3;
after taking a lease they read storage again: the work may have been done meanwhile.

**Fencing.** ``write`` and ``delete`` accept ``fence=lease``: the backend refuses
(:class:`~certherd.errors.FencedError`, nothing changed) when a grant of
``lease.name`` newer than ``lease.token`` exists, and decides this atomically with
respect to new grants (no grant can slip between the check and the change).

**A holder that dies** (kill -9, OOM, power loss): on the filesystem its lease is free
at once (the kernel drops the ``flock`` the holder kept on its marker file), at the latest
at expiry; in memory (one process) at expiry; a shared backend frees it at expiry.

**A holder that pauses past its ttl** (SIGSTOP, a VM frozen, a stalled event loop): once
the lease expired, another holder may be granted the name with a higher token. When the
paused holder wakes, its ``renew`` raises LeaseLostError and its fenced writes are
refused, so it cannot overwrite the new holder's work. (On the filesystem, a holder
paused in the middle of one fenced write, a few milliseconds, holds up grants of that
name until it resumes: the check and the write are one critical section.)

**Clocks.** Expiry is wall-clock time (``time.time()``) of the machine running the
store's processes: the filesystem and memory backends run on one machine, so every
holder reads the same clock; a step of that clock moves every expiry alike. A shared
backend MUST decide expiry on one clock of its own (the database server's ``now()``),
never by comparing the clocks of its clients, and MUST derive tokens from one sequence
in the same transaction as the grant. Tokens, not clocks, guarantee safety: a write
carries the token it was granted with, so a wrong clock can end a lease early or late
but never lets two holders' fenced writes interleave.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from certherd.errors import NotFoundError

__all__ = [
    "KeyValueStore",
    "Lease",
    "LeaseListing",
    "Leftovers",
    "LivePublisher",
    "LocalPaths",
    "Locker",
    "Stat",
    "StatListing",
    "Storage",
    "has_value",
    "stat_below",
]


class Stat(NamedTuple):
    """What a store knows of a value without reading it (a tuple: cheap to make by the
    ten thousand in one listing)."""

    size: int
    """Bytes."""
    modified: float
    """When it was last written, seconds since the epoch."""
    token: str
    """Changes with every write of the key (even of the same bytes); opaque."""


@dataclass(frozen=True)
class Lease:
    """A grant of the lock ``name`` to ``holder`` until ``expires`` (``time.time()``)."""

    name: str
    holder: str
    """Who holds it: host, process and a random part (for logs and ``list``)."""
    token: int
    """The fencing token: greater than that of every earlier grant of ``name``."""
    expires: float


@runtime_checkable
class KeyValueStore(Protocol):
    """Bytes at ``/``-separated keys: read, write atomically, delete, list, stat."""

    async def read(self, key: str) -> bytes:
        """The value at ``key``; NotFoundError if there is none."""
        ...

    async def write(
        self, key: str, data: bytes, *, private: bool = False, fence: Lease | None = None
    ) -> None:
        """Store ``data`` at ``key`` atomically; ``private`` for secrets (owner-only).
        With ``fence``, FencedError (nothing written) if the lease was granted again."""
        ...

    async def delete(self, key: str, *, fence: Lease | None = None) -> None:
        """Remove ``key``; a missing key counts as removed. ``fence`` as for ``write``."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Every key below ``prefix`` (recursively; ``""`` for all), sorted."""
        ...

    async def stat(self, key: str) -> Stat:
        """Size, modification time and change token of ``key``; NotFoundError if none."""
        ...


@runtime_checkable
class Locker(Protocol):
    """Leases on names (checked with :func:`certherd.storage.layout.check_name`)."""

    async def acquire(self, name: str, *, ttl: float, wait: float) -> Lease:
        """The lease ``name`` for ``ttl`` seconds, waiting up to ``wait`` seconds for the
        current holder to release it or let it expire; LockTimeoutError after that.
        Cancelling a waiter leaves no grant behind."""
        ...

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """``lease`` extended to ``ttl`` seconds from now (same token); LeaseLostError
        if the name was granted to another holder since."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` up; nothing happens if it was lost to another holder."""
        ...


@runtime_checkable
class Storage(KeyValueStore, Locker, Protocol):
    """Where certherd keeps accounts, keys, certificates, settings and state."""


@runtime_checkable
class StatListing(Protocol):
    """An optional ability: the stat of every key below a prefix in one listing (one
    directory scan, one query), much faster than ``list`` + ``stat`` of each key."""

    async def stat_all(self, prefix: str) -> dict[str, Stat]:
        """Every key below ``prefix`` (recursively) with its :class:`Stat`."""
        ...


@runtime_checkable
class LeaseListing(Protocol):
    """An optional ability of a shared store: which leases are held now (``list`` shows
    which node works on a lineage)."""

    async def held(self) -> dict[str, Lease]:
        """Every lease granted and neither released nor expired (by the store's clock)."""
        ...


@runtime_checkable
class LivePublisher(Protocol):
    """An optional ability: the live version is materialised where programs read it
    (the filesystem's ``live/<lineage>/*.pem`` symlinks). Without it, the lineage layer
    keeps the live version as a small value (``live/<lineage>.json``)."""

    async def publish(
        self, lineage: str, version: int, files: tuple[str, ...], *, fence: Lease | None = None
    ) -> None:
        """Make archive version ``version`` of ``lineage`` the live one, all files or none
        (StorageError if one is missing). ``fence`` as for ``write``."""
        ...

    async def unpublish(self, lineage: str, *, fence: Lease | None = None) -> None:
        """Remove the live version of ``lineage`` (its archive stays)."""
        ...

    async def live_version(self, lineage: str) -> int | None:
        """The live version of ``lineage``, or None if it has none."""
        ...


@runtime_checkable
class LocalPaths(Protocol):
    """An optional ability: live files exist as paths on this machine (for hooks)."""

    def live_dir(self, lineage: str) -> Path:
        """The folder holding ``cert.pem``, ``chain.pem``, ``fullchain.pem``, ``privkey.pem``."""
        ...


@runtime_checkable
class Leftovers(Protocol):
    """An optional ability: clearing what a killed certherd leaves beside the values
    (temporary files, staging folders, lock files), which a backend without files lacks.

    Only certherd's own leftovers are touched, matched by their exact names. Callers MUST
    hold the lease of the lineage (or account) concerned, so no live process uses them.
    """

    async def interrupted(self) -> list[str]:
        """Lock names whose holder ended without releasing them (kill -9, power loss).
        A name may be held again by a live process meanwhile: take its lease first."""
        ...

    async def clear_leftovers(self, lineage: str, *, before: float) -> list[str]:
        """Remove ``lineage``'s temporary files and staging folders older than ``before``
        (``time.time()`` when this process started); returns what was removed."""
        ...

    async def clear_temporary(self, key: str, *, before: float) -> list[str]:
        """Remove temporary files of interrupted writes of ``key`` older than ``before``."""
        ...

    async def forget(self, lineage: str, *, fence: Lease | None = None) -> None:
        """Remove what a lineage without values leaves: its empty ``archive`` folder and
        its lock files (while holding its lease, given as ``fence``: FencedError, nothing
        removed, if it was granted to another holder since)."""
        ...

    async def forget_lock(self, name: str, *, fence: Lease | None = None) -> None:
        """Remove the lock files of the lease ``name`` alone (an account's, held as
        ``fence``: FencedError, nothing removed, if it was granted again since)."""
        ...


async def has_value(store: KeyValueStore, key: str) -> bool:
    """Whether ``key`` holds a value (``stat`` without NotFoundError)."""
    try:
        await store.stat(key)
    except NotFoundError:
        return False
    return True


async def stat_below(store: KeyValueStore, prefix: str) -> dict[str, Stat]:
    """Every key below ``prefix`` with its Stat: in one listing where the store can
    (:class:`StatListing`), else ``list`` and one ``stat`` per key."""
    if isinstance(store, StatListing):
        return await store.stat_all(prefix)
    found: dict[str, Stat] = {}
    for key in await store.list(prefix):
        try:
            found[key] = await store.stat(key)
        except NotFoundError:
            continue  # deleted since the listing
    return found
