"""What a fleet of certherd nodes shares beyond values and leases: the renewal schedule,
the work split, and the CAs that asked to be left alone (an optional ability of a
shared store; :mod:`certherd.storage.pgfleet` implements it in PostgreSQL).

The schedule has one row per lineage, kept by the store itself in the transaction of
each write (no caller can forget it): writing a lineage's settings makes it due now (new
or changed desired state), writing its state sets when it is due next (the state's
``next_check``, which holds the renewal moment picked once inside the CA's ARI window,
so every node agrees on it), writing its live record notes the live version and
when and by which lease holder it was obtained.

A node **claims** due lineages: one statement picks due rows nobody holds a lease on
(``FOR UPDATE SKIP LOCKED``: two nodes claiming at once get disjoint rows, neither
waits) and grants their leases, with fencing tokens, in the same transaction. It works
on each under that lease (:func:`certherd.storage.leases.holding` with ``granted=``),
then **settles** it: due again at the state's moment, never sooner than ``floor``
seconds from now (a lineage whose check changed nothing is not claimed in a loop).

**Shared backoff**: a node that a CA answers ``rateLimited`` (RFC 8555 §6.7) holds
every node back from that CA until its Retry-After: lineages whose only CA it is are not
claimed meanwhile, and obtaining skips it (on to the next CA of the lineage's list).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from certherd.storage.base import Lease

__all__ = ["CaBackoff", "Fleet", "ScheduleEntry", "fleet_of", "node_of"]


@dataclass(frozen=True)
class ScheduleEntry:
    """One lineage's row of the schedule."""

    lineage: str
    due: dt.datetime
    """When a node looks at it next (renews it, or checks its renewal info)."""
    ca: str | None
    """The directory URL of its CA when it has only one (shared backoff), else None."""
    live: int | None
    """Its live version (None: none yet)."""
    not_after: dt.datetime | None
    """When its live certificate expires (from its state)."""
    obtained: dt.datetime | None
    """When its live version was made live."""
    obtained_by: str | None
    """The lease holder that made it live (``node/pid/random``; :func:`node_of`)."""


@dataclass(frozen=True)
class CaBackoff:
    """A CA every node leaves alone until ``until`` (it answered rateLimited)."""

    ca: str
    until: dt.datetime
    reason: str
    by: str
    """The holder that was told (``node/pid``)."""


def node_of(holder: str | None) -> str | None:
    """The node (or host) part of a lease holder ``node/pid/random``."""
    return None if not holder else holder.split("/", 1)[0]


@runtime_checkable
class Fleet(Protocol):
    """An optional ability of a shared store: the schedule, claims and CA backoff."""

    @property
    def node(self) -> str:
        """This process's name in the fleet (the first part of its lease holders)."""
        ...

    async def claim(self, *, limit: int, ttl: float) -> list[Lease]:
        """Up to ``limit`` due lineages nobody holds, oldest due first, whose only CA is
        not held back: their leases (``ttl`` seconds), granted in one statement."""
        ...

    async def settle(
        self, lineage: str, *, floor: float, fence: Lease | None = None, release: bool = False
    ) -> dt.datetime | None:
        """Schedule ``lineage`` from its state, at least ``floor`` seconds from now; the
        moment (None: no such lineage, or ``fence`` given and its name granted again
        since: a holder that lost the lineage leaves its schedule to the next one).
        ``release``: give ``fence`` back in the same statement (a node's last word on a
        lineage it worked on: one round trip instead of two)."""
        ...

    async def schedule(self, lineages: list[str] | None = None) -> dict[str, ScheduleEntry]:
        """The schedule's rows (of ``lineages``, or all)."""
        ...

    async def due_in(self) -> float | None:
        """Seconds until the earliest due lineage that can be claimed (0 when one is due
        now; None when there is none)."""
        ...

    async def changes(
        self,
        on_change: Callable[[str, str], None],
        *,
        ready: asyncio.Event | None = None,
        channels: Sequence[str] = ("certherd_schedule", "certherd_live"),
    ) -> None:
        """Call ``on_change(channel, lineage)`` for every change other nodes make
        (``certherd_schedule``: desired state; ``certherd_live``: a live version) until
        cancelled; StorageError when the store cannot be listened to (poll meanwhile).
        ``channels``: those to listen to (``certherd_challenges``: the key of each key
        authorization written or deleted, where the store has ``notifies_challenges``)."""
        ...

    async def hold_back(self, ca: str, *, seconds: float, reason: str) -> None:
        """Keep every node away from the CA ``ca`` for ``seconds`` (a longer backoff
        already stored stays)."""
        ...

    async def held_back(self) -> dict[str, CaBackoff]:
        """The CAs held back now, by directory URL."""
        ...


def fleet_of(storage: object) -> Fleet | None:
    """The fleet ability of ``storage`` (or of the shared store behind this host's live
    files, :class:`~certherd.storage.hostfiles.HostFiles`), if it has one."""
    shared = getattr(storage, "shared", storage)
    return shared if isinstance(shared, Fleet) else None
