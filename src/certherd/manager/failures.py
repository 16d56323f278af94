"""A lineage's failed attempt: counted on its state (with backoff) and told to its hooks.

Used by ``issue`` and ``renew`` alike. A failure never touches ``live/``: only the state
learns of it (the failure count, the last error and when to try again), and the failure
hooks (notifications) get the error, how many in a row, and when the live certificate
expires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import replace

from certherd.errors import CertherdError, StorageError
from certherd.manager.hooks import run_lineage_hooks
from certherd.manager.lineage import LineageState
from certherd.manager.notify import NotifyHost, notify_event
from certherd.manager.outcome import Outcome, describe_failure
from certherd.manager.policy import needs_renewal
from certherd.settings import LineageSettings
from certherd.storage.base import Storage

__all__ = [
    "note_unexpected",
    "notify_expiring",
    "notify_failure",
    "notify_recovery",
    "record_failure",
    "tell_failure",
]

log = logging.getLogger(__name__)


def note_unexpected(name: str, error: BaseException) -> None:
    """Keep the traceback of an error that is not certherd's own (``-v`` shows it)."""
    if not isinstance(error, CertherdError):
        log.debug("lineage %s: unexpected error", name, exc_info=error)


async def record_failure(
    storage: Storage, state: LineageState, error: BaseException, now: dt.datetime
) -> LineageState:
    """Count the failure on the stored state (under the lineage lock): it may hold more
    than ``state`` does now (an open order, a version stored meanwhile). The next check
    follows the failure backoff; a version stored but not made live is retried at once."""
    with contextlib.suppress(CertherdError):
        stored = await LineageState.load(storage, state.name)
        if stored.version == state.version:
            state = stored
    failed = state.with_failure(describe_failure(error), now)
    if failed.not_before and failed.not_after:
        decision = needs_renewal(
            not_before=failed.not_before,
            not_after=failed.not_after,
            now=now,
            failures=failed.failures,
            last_failure=failed.last_failure,
        )
        failed = replace(failed, next_check=decision.next_check)
    if failed.stored_version is not None and failed.stored_version != failed.version:
        # An issued certificate waits in the archive: making it live needs no CA,
        # so the next run does it at once (issue 10.2).
        failed = replace(failed, next_check=now)
    with contextlib.suppress(StorageError):
        await failed.save(storage)
    return failed


async def tell_failure(
    storage: Storage, settings: LineageSettings, state: LineageState, error: BaseException
) -> list[str]:
    """Run the failure hooks (notifications); returns what went wrong running them."""
    if not settings.hooks.failure:
        return []
    extra = {
        "CERTHERD_ERROR": describe_failure(error, 1000),
        "CERTHERD_FAILURES": str(max(state.failures, 1)),
        "CERTHERD_NOT_AFTER": state.not_after.isoformat() if state.not_after else "",
    }
    return await run_lineage_hooks("failure", settings, storage, state.version, extra)


def _expiry(state: LineageState) -> str:
    if state.not_after is None:
        return "no certificate yet"
    return state.not_after.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def notify_failure(
    host: NotifyHost, settings: LineageSettings, state: LineageState, error: BaseException
) -> None:
    """Tell the lineage's notify targets (once per interval) that obtaining failed: the
    CA's problem (certherd's one line for it), attempts so far, the live expiry."""
    await notify_event(
        host,
        settings,
        "failed",
        describe_failure(error, 1000),
        details={
            "attempts failed in a row": str(max(state.failures, 1)),
            "live certificate expires": _expiry(state),
        },
    )


async def notify_recovery(
    host: NotifyHost, settings: LineageSettings, before: LineageState, outcome: Outcome
) -> None:
    """After failures (``before.failures``), the first success is told."""
    if before.failures <= 0 or outcome.action not in ("issued", "renewed"):
        return
    expires = "unknown"
    if outcome.not_after is not None:
        expires = outcome.not_after.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    await notify_event(
        host,
        settings,
        "recovered",
        f"{settings.name} was {outcome.action} (version {outcome.version}) after "
        f"{before.failures} failed attempts",
        details={"new certificate expires": expires},
    )


async def notify_expiring(
    host: NotifyHost, settings: LineageSettings, state: LineageState, outcome: Outcome
) -> bool:
    """The live certificate expires within ``settings.notify_expiry_days`` (and past the
    point where a healthy renewal happens: a third of its lifetime left) and this run
    did not renew it: tell, with why."""
    now = host.clock.now()
    if state.not_after is None or state.not_before is None or not settings.notify:
        return False
    left = state.not_after - now
    third = (state.not_after - state.not_before) / 3
    if left > min(dt.timedelta(days=settings.notify_expiry_days), third):
        return False
    days = left.total_seconds() / 86400
    when = "has expired" if days <= 0 else f"expires in {days:.1f} days"
    why = outcome.error or outcome.reason
    return await notify_event(
        host,
        settings,
        "expiring",
        f"the certificate of {settings.name} {when} and was not renewed: {why}",
        details={
            "expires": _expiry(state),
            "attempts failed in a row": str(state.failures),
            "last error": state.last_error or "none",
        },
    )
