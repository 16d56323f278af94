"""Retry and polling schedules, written as data, and the injectable clock.

RFC 8555 §6.5: a badNonce is retried with the nonce from the error response. §8.2 and
RFC 9773 §4.3: Retry-After tells a client when to ask again. Every wait is capped and
every loop is bounded, so a CA that misbehaves ends in a clear error, not a hang.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "PollPolicy", "RetryPolicy", "SystemClock", "parse_retry_after"]


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


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried.

    - ``bad_nonce_attempts``: signed POSTs re-sent after badNonce (§6.5).
    - ``server_error_attempts``: tries on 429/500/502/503/504.
    - ``connection_attempts``: tries on a connection error, with exponential backoff
      from ``backoff_base`` doubling to ``backoff_cap``, each with full jitter.
    - ``retry_after_cap``: the longest single wait we accept from a Retry-After; a longer
      one ends the request with a clear error instead of a hang.
    - ``total_budget``: seconds one request may take across all its retries.
    """

    bad_nonce_attempts: int = 20
    server_error_attempts: int = 5
    connection_attempts: int = 5
    backoff_base: float = 0.25
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0
    total_budget: float = 180.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th retry (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2.0 ** (attempt - 1)))
        source: random.Random = rng or random.Random()
        return source.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class PollPolicy:
    """How an order or authorization is polled until it leaves pending/processing.

    Poll at once, then ``first_interval`` doubling to ``max_interval``; a Retry-After
    from the CA replaces the interval (capped at ``retry_after_cap``). After ``timeout``
    seconds the poll ends in PollTimeoutError.
    """

    first_interval: float = 0.025
    max_interval: float = 2.0
    retry_after_cap: float = 30.0
    timeout: float = 300.0

    def interval(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return min(self.max_interval, self.first_interval * (2.0 ** max(0, attempt - 1)))


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None if absent/unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())
