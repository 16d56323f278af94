"""Retry and polling schedules, written as data.

RFC 8555 §6.5: a badNonce is retried with the nonce from the error response. §8.2 and
RFC 9773 §4.3: Retry-After tells a client when to ask again. Every wait is capped and
every loop is bounded, so a CA that misbehaves ends in a clear error, not a hang.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import email.utils
import random
from dataclasses import dataclass
from types import TracebackType

from certherd.clock import Clock, SystemClock
from certherd.errors import MAX_RETRY_AFTER, DeadlineExceededError, safe_text

__all__ = [
    "MAX_RETRY_AFTER",
    "CommandDeadline",
    "PollPolicy",
    "RetryPolicy",
    "check_wait",
    "current_deadline",
    "parse_retry_after",
]


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
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None if absent/unreadable.

    The result is clamped to ``[0, MAX_RETRY_AFTER]`` (ten years), so every caller can add
    it to a datetime or build a timedelta from it: 309 digits do not overflow a float, 20
    do not overflow a timedelta, and a date in year 9999 (or past) is just "far" (or 0).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # More digits than MAX_RETRY_AFTER has is "far": never hand them to int().
        if len(text) > len(str(int(MAX_RETRY_AFTER))):
            return MAX_RETRY_AFTER
        return min(float(int(text)), MAX_RETRY_AFTER)
    if len(text) > 64 or not text.isascii():
        return None  # an IMF-fixdate is 29 characters
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


# -- deadlines ------------------------------------------------------------------------------


class CommandDeadline:
    """``async with CommandDeadline(seconds, clock):`` bounds everything inside in time.

    Every ACME request sent inside the block gets at most the time left (so a CA that
    trickles its answer cannot outlast it), every wait for a Retry-After or a poll that
    would reach past the deadline ends at once, and, as a backstop for awaits that are
    not ACME requests (solvers, hooks), the whole block is cancelled when the deadline
    passes on the event loop's clock. All of these end in :class:`DeadlineExceededError`.

    The deadline is task-local (a context variable), so concurrent commands on one client
    each keep their own; nested deadlines keep the earliest. Re-entering is not allowed.
    """

    def __init__(self, seconds: float, clock: Clock | None = None) -> None:
        if not seconds > 0:
            raise ValueError("a deadline needs a positive number of seconds")
        self.seconds = seconds
        self.clock: Clock = clock or SystemClock()
        self.until = 0.0
        self._token: contextvars.Token[CommandDeadline | None] | None = None
        self._backstop: asyncio.Timeout | None = None

    def remaining(self) -> float:
        """Seconds left, measured on the clock that set the deadline (0 or less: passed)."""
        return self.until - self.clock.monotonic()

    def exceeded(self, what: str) -> DeadlineExceededError:
        """The error for ``what`` (one line, already escaped) running out of this deadline."""
        return DeadlineExceededError(
            f"{what}: the {self.seconds:g}s deadline given for this command has passed",
            seconds=self.seconds,
        )

    async def __aenter__(self) -> CommandDeadline:
        if self._token is not None:
            raise RuntimeError("a CommandDeadline cannot be entered twice")
        self.until = self.clock.monotonic() + self.seconds
        outer = _DEADLINE.get()
        effective = self if outer is None or outer.remaining() > self.seconds else outer
        self._token = _DEADLINE.set(effective)
        self._backstop = asyncio.timeout(self.seconds)
        await self._backstop.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._token is not None
        assert self._backstop is not None
        _DEADLINE.reset(self._token)
        self._token = None
        try:
            await self._backstop.__aexit__(kind, error, traceback)
        except TimeoutError:
            if self._backstop.expired():
                raise self.exceeded("the command did not finish in time") from None
            raise


_DEADLINE: contextvars.ContextVar[CommandDeadline | None] = contextvars.ContextVar(
    "certherd_command_deadline", default=None
)


def current_deadline() -> CommandDeadline | None:
    """The innermost command deadline of the running task, or None."""
    return _DEADLINE.get()


def check_wait(delay: float, what: str) -> None:
    """Raise DeadlineExceededError now if waiting ``delay`` seconds would pass the deadline.

    ``what`` names the wait in the error (it is escaped here).
    """
    deadline = _DEADLINE.get()
    if deadline is not None and delay >= deadline.remaining():
        raise deadline.exceeded(
            f"{safe_text(what, 300)} would wait {delay:.0f}s, past the time left"
        )
