"""The manager of :class:`~certherd.app.entry.Certherd`: it also tells when each certificate's
work starts and ends (its ``started`` and ``finished`` events, for progress displays)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.service import Manager

__all__ = ["TrackedManager"]


class TrackedManager(Manager):
    """A Manager that calls ``on_start(lineage)`` and ``on_finish(outcome)`` around the
    work on each certificate (a renewal check, an issuance)."""

    def __init__(
        self,
        *args: Any,
        on_start: Callable[[str], None] | None = None,
        on_finish: Callable[[Outcome], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_start = on_start
        self._on_finish = on_finish

    def _started(self, lineage: str) -> None:
        if self._on_start is not None:
            self._on_start(lineage)

    def _finished(self, outcome: Outcome) -> None:
        if self._on_finish is not None:
            self._on_finish(outcome)

    async def _after_deploy(self, settings: Any) -> list[str]:
        from certherd.app.installing import after_deploy
        from certherd.storage.base import LocalPaths

        local = isinstance(self.storage, LocalPaths)
        live = self.storage.live_dir(settings.name) if local else None  # type: ignore[attr-defined]
        return await after_deploy(settings, live)

    async def renew_one(self, name: str, *, force: bool = False, dry_run: bool = False) -> Outcome:
        self._started(name)
        outcome = await super().renew_one(name, force=force, dry_run=dry_run)
        self._finished(outcome)
        return outcome

    async def issue(
        self, settings: Any, *, precondition: Any = None, unless: Any = None
    ) -> Outcome:
        self._started(settings.name)
        try:
            outcome = await super().issue(settings, precondition=precondition, unless=unless)
        except Exception as exc:
            failed = Outcome(settings.name, "failed", "requested", error=describe_failure(exc, 300))
            self._finished(failed)
            raise
        self._finished(outcome)
        return outcome
