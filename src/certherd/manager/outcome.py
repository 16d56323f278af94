"""What happened to one lineage in one run (kept light: the no-op renew path uses it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "Outcome"]

Action = Literal[
    "issued", "renewed", "deployed", "not-due", "failed", "would-renew", "would-deploy", "skipped"
]


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
