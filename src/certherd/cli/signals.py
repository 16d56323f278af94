"""Stopping the ``certherd`` program: SIGTERM and SIGHUP taken like Ctrl-C.

Without this, ``kill`` or a closed terminal ends the process at once: a webroot keeps the
challenge files written for it, a local Pebble started by ``demo`` keeps running. Here
they become :class:`Terminated` (a KeyboardInterrupt), so they take the path Ctrl-C
takes; inside :func:`run_async` they cancel the command's task the way ``asyncio.run``
treats Ctrl-C, so every clean-up runs in order before Terminated is raised. Kept free of
heavy imports: ``certherd --version`` loads it.
"""

from __future__ import annotations

import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "Terminated", "run_async", "stop_like_ctrl_c"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every clean-up runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def stop_like_ctrl_c() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` (where nobody else handles them).

    The program then ends by that signal once cleaned up (``certherd.cli.main.entry``).
    The daemon installs its own handlers for a graceful stop.
    """
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise_terminated)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; SIGTERM/SIGHUP cancel it, then raise Terminated."""
    import asyncio

    return asyncio.run(_cancelled_on_stop(coroutine))


async def _cancelled_on_stop(coroutine: Coroutine[Any, Any, T]) -> T:
    import asyncio

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    installed = []
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is _raise_terminated:  # ours to take over while we run
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    try:
        return await coroutine
    except asyncio.CancelledError:
        if received:
            raise Terminated(received[0]) from None
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)  # leaves SIG_DFL behind
            signal.signal(signum, _raise_terminated)
