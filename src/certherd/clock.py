"""The injectable clock: wall time, monotonic time and sleeping, as one protocol.

Everything that waits or reads the time (the ACME client's retries and polls, DNS
propagation checks, the manager's renewal schedule) takes a :class:`Clock`, so tests
inject a fake one and never sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Time as the client sees it; tests inject a fake one and never sleep.

    ``sleep`` MUST be cancellable. ``monotonic`` is in seconds.
    """

    def now(self) -> dt.datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
