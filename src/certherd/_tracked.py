"""The manager of :class:`certherd.app.Certherd`: it also tells when each certificate's
work starts and ends (``started`` and ``finished`` events), for progress displays."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from certherd.errors import safe_text
from certherd.manager.outcome import Outcome
from certherd.manager.service import Manager

if TYPE_CHECKING:
    from certherd.app import Event, EventKind

__all__ = ["TrackedManager"]


class TrackedManager(Manager):
    """A Manager that tells ``tell`` (an ``on_event`` of :class:`~certherd.app.Certherd`)
    when each certificate starts and ends."""

    def __init__(
        self, *args: Any, tell: Callable[[Event], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._tell = tell

    def _event(self, kind: EventKind, lineage: str, outcome: Outcome | None = None) -> None:
        if self._tell is not None:
            from certherd.app import Event

            self._tell(Event(kind, lineage=lineage, outcome=outcome))

    async def renew_one(self, name: str, *, force: bool = False, dry_run: bool = False) -> Outcome:
        self._event("started", name)
        outcome = await super().renew_one(name, force=force, dry_run=dry_run)
        self._event("finished", name, outcome)
        return outcome

    async def issue(self, settings: Any, ca: Any, *, precondition: Any = None) -> Outcome:
        self._event("started", settings.name)
        try:
            outcome = await super().issue(settings, ca, precondition=precondition)
        except Exception as exc:
            failed = Outcome(settings.name, "failed", "requested", error=safe_text(exc, 300))
            self._event("finished", settings.name, failed)
            raise
        self._event("finished", settings.name, outcome)
        return outcome
