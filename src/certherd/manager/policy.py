"""When is a certificate due for renewal, and why: a pure function of facts and time.

- RFC 9773 ARI: when the CA suggests a window, renew at a random moment inside it,
  chosen once and stored (so every node of a cluster agrees), and ask again after the
  server's Retry-After.
- Without ARI: when a third of the lifetime remains. That is day 60 of 90, day 30 of 45
  and day 4 of 6, where "30 days before expiry" fails short-lived certificates.
- After failures: back off by the table below, never hammering the CA, but never waiting
  past the point where the certificate would expire without another try.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = [
    "FAILURE_BACKOFF",
    "RenewalDecision",
    "failure_backoff",
    "needs_renewal",
    "renewal_threshold",
]

FAILURE_BACKOFF: tuple[dt.timedelta, ...] = (
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=15),
    dt.timedelta(hours=1),
    dt.timedelta(hours=2),
    dt.timedelta(hours=4),
    dt.timedelta(hours=8),
    dt.timedelta(hours=12),
)
"""Wait after the 1st, 2nd, ... consecutive failure; the last entry is the cap."""


@dataclass(frozen=True)
class RenewalDecision:
    """Whether to renew now, the reason in words, and when to look again if not."""

    due: bool
    reason: str
    next_check: dt.datetime


def renewal_threshold(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """The moment a third of the lifetime remains: when a certificate is due without ARI.

    Day 60 of a 90-day certificate, day 30 of 45, day 4 of 6: a fixed "30 days before
    expiry" would renew a short-lived certificate at once, or never in time.
    """
    return not_after - (not_after - not_before) / 3


def failure_backoff(failures: int) -> dt.timedelta:
    """How long to wait after ``failures`` consecutive failures (0: no wait)."""
    if failures <= 0:
        return dt.timedelta(0)
    return FAILURE_BACKOFF[min(failures, len(FAILURE_BACKOFF)) - 1]


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def needs_renewal(
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    ari_start: dt.datetime | None = None,
    ari_end: dt.datetime | None = None,
    ari_pick: dt.datetime | None = None,
    failures: int = 0,
    last_failure: dt.datetime | None = None,
    force: bool = False,
    revoked_at: dt.datetime | None = None,
) -> RenewalDecision:
    """Decide for one certificate. ``ari_pick`` is the stored moment inside the window.

    Failures only delay a renewal that is due; a certificate that is not due yet says
    so, whatever failed before (a forced run that failed, say). A revoked certificate
    (``revoked_at``) is due at once.
    """
    if force:
        return RenewalDecision(True, "renewal forced", now)
    if revoked_at is not None:
        # A revoked certificate is as good as expired: replace it now (issue 10.5).
        decision = RenewalDecision(True, f"the certificate was revoked ({_stamp(revoked_at)})", now)
    else:
        decision = _due(not_before, not_after, now, ari_start, ari_end, ari_pick)
    if decision.due and failures > 0 and last_failure is not None:
        retry_at = last_failure + failure_backoff(failures)
        # Never back off past expiry: a last try just before is better than none.
        retry_at = min(retry_at, max(now, not_after - dt.timedelta(minutes=1)))
        if now < retry_at:
            return RenewalDecision(
                False,
                f"backing off after {failures} failed attempt(s) until {_stamp(retry_at)}",
                retry_at,
            )
    return decision


def _due(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    ari_start: dt.datetime | None,
    ari_end: dt.datetime | None,
    ari_pick: dt.datetime | None,
) -> RenewalDecision:
    if now >= not_after:
        return RenewalDecision(True, f"expired at {_stamp(not_after)}", now)
    if ari_start is not None and ari_end is not None and ari_end > not_after:
        # A window that ends after the certificate expires cannot be followed to its end
        # (RFC 9773 §4.2: the client SHOULD renew before expiry): our own rule decides,
        # so a broken or hostile renewalInfo never lets a certificate lapse.
        ari_start = ari_end = ari_pick = None
    if ari_start is not None and ari_end is not None:
        pick = ari_pick if ari_pick is not None else ari_start
        window = f"the CA's renewal window ({_stamp(ari_start)} to {_stamp(ari_end)})"
        if now >= pick or now >= ari_end:
            return RenewalDecision(True, f"inside {window}", now)
        return RenewalDecision(False, f"waiting for {window}, renewing at {_stamp(pick)}", pick)
    threshold = renewal_threshold(not_before, not_after)
    if now >= threshold:
        return RenewalDecision(
            True, f"a third of the lifetime remains (expires {_stamp(not_after)})", now
        )
    return RenewalDecision(
        False, f"not due until {_stamp(threshold)} (a third of the lifetime left)", threshold
    )
