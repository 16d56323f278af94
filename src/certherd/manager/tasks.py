"""Working on many lineages at once: every one finishes, and on a stop every one cleans up.

``asyncio.gather`` is the wrong tool for independent lineages. Cancelled (Ctrl-C,
SIGTERM), it cancels its children but ends as soon as the *first* of them has stopped;
the command then unwinds, and ``asyncio.run`` cancels the others a second time, in the
middle of their clean-up: DNS records and challenge files of those lineages stay behind,
their clean-up hooks are killed. :func:`finish_all` waits for every child instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["CLEANUP_DEADLINE", "finish_all"]

T = TypeVar("T")

log = logging.getLogger(__name__)

CLEANUP_DEADLINE = 60.0
"""Seconds the lineages of a stopped command get, together, to clean up (remove challenge
records, run their clean-up hooks, release locks) before they are cancelled again."""


async def finish_all(
    coroutines: Iterable[Coroutine[Any, Any, T]], *, cleanup_deadline: float = CLEANUP_DEADLINE
) -> list[T]:
    """Run ``coroutines`` concurrently; their results in order once every one has ended.

    An exception from one does not stop the others: the first (in order) is raised once
    all have ended. If the caller is cancelled, each child is cancelled once and then
    waited for, up to ``cleanup_deadline`` seconds (further cancellations meanwhile are
    held back: the clean-ups must not be cut short), so each runs its clean-up to the end;
    then CancelledError goes on. Children still running at the deadline are cancelled again.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await _wait_bounded(tasks, cleanup_deadline)
        raise
    for task in tasks:
        _retrieve(task)
    return [task.result() for task in tasks]  # raises the first failure, in order


async def _wait_bounded(tasks: Sequence[asyncio.Future[Any]], deadline: float) -> None:
    """Wait for ``tasks`` to end, at most ``deadline`` seconds, whatever cancels us."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    pending = {task for task in tasks if not task.done()}
    if pending:
        log.warning(
            "stopping: %d of %d certificate(s) still cleaning up (challenge records, hooks); "
            "waiting up to %.0f s",
            len(pending),
            len(tasks),
            deadline,
        )
    while pending:
        left = end - loop.time()
        if left <= 0:
            break
        try:
            _, pending = await asyncio.wait(pending, timeout=left)
        except asyncio.CancelledError:
            continue  # asked again to stop: the clean-ups still get their (bounded) time
    if pending:
        log.error(
            "stopping: %d certificate(s) did not finish cleaning up within %.0f s and were "
            "cut short: check for challenge records or files left behind",
            len(pending),
            deadline,
        )
    for task in pending:
        task.cancel()
    for task in tasks:
        task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Read a finished child's exception, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
