"""What happened to one lineage in one run (kept light: the no-op renew path uses it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from certherd.errors import CertherdError, safe_text

__all__ = ["Action", "Outcome", "describe_failure"]

Action = Literal[
    "issued",
    "renewed",
    "deployed",
    "not-due",
    "failed",
    "would-renew",
    "would-deploy",
    "skipped",
    "waiting",
    "stored",
]
"""``waiting``: an order is open at the CA, which asked to be asked again later (the
reason says when); not a failure: no backoff, no failure hook. ``stored``: the desired
settings were stored for the fleet's nodes to obtain (``apply --defer``)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one lineage in one run."""

    lineage: str
    action: Action
    reason: str
    version: int | None = None
    not_after: dt.datetime | None = None
    error: str | None = None
    hook_errors: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.action == "failed"


def describe_failure(error: BaseException, limit: int = 500) -> str:
    """One line for a lineage's failure: a certherd error as it reads (a
    :class:`~certherd.errors.SettingsText` when it names settings); anything else (a
    bug, or CA data some library choked on) named by its type, so it is not mistaken
    for a message of ours."""
    if isinstance(error, CertherdError):
        return error.text(limit)
    text = safe_text(error, limit)
    kind = type(error).__name__
    return f"unexpected {kind}: {text}" if text else f"unexpected {kind}"
