"""What :class:`~certherd.app.entry.Certherd` tells while it works, and what some of its
calls return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from certherd.manager.lineage import LineageState
    from certherd.manager.outcome import Outcome
    from certherd.settings import LineageSettings

__all__ = ["Event", "EventKind", "LineageRecord", "Revocation"]

EventKind = Literal["planned", "started", "step", "finished", "propagation", "warning", "notice"]
"""``planned``: how many certificates a run will work on (``total``); ``started`` and
``finished`` (with its ``outcome``): one certificate's work; ``step``: a step of one
lineage's work; ``propagation``: a DNS record's propagation round; ``warning``: about
the configuration (each told once per :class:`Certherd`); ``notice``: the daemon's news."""


@dataclass(frozen=True)
class Event:
    """Something :class:`Certherd` tells while it works (``on_event``)."""

    kind: EventKind
    text: str = ""
    lineage: str = ""
    outcome: Outcome | None = None
    total: int = 0


@dataclass(frozen=True)
class LineageRecord:
    """One stored lineage as ``certherd list`` shows it: its settings and state, or why
    they cannot be read (``error``: a damaged file; the others still list)."""

    name: str
    settings: LineageSettings | None
    state: LineageState | None
    error: str | None = None


@dataclass(frozen=True)
class Revocation:
    """A revoked lineage's state after :meth:`Certherd.revoke`; ``deleted_files``: how
    many files ``delete=True`` removed (None: the lineage was kept)."""

    state: LineageState
    deleted_files: int | None = None
