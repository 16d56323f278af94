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
from certherd.manager.outcome import describe_failure
from certherd.manager.policy import needs_renewal
from certherd.settings import LineageSettings
from certherd.storage.base import Storage

__all__ = ["note_unexpected", "record_failure", "tell_failure"]

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
