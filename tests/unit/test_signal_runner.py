"""SIGTERM and SIGHUP during a command: its task is cancelled (clean-ups run, in order),
then Terminated is raised; the handlers are put back afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from certherd.cli import signals
from certherd.cli.signals import STOP_SIGNALS, Terminated, run_async, stop_like_ctrl_c


@pytest.fixture
def ours() -> Iterator[None]:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    stop_like_ctrl_c()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("ours")
@pytest.mark.parametrize("stop", STOP_SIGNALS)
def test_a_stop_signal_cancels_the_command_then_raises(stop: signal.Signals) -> None:
    events: list[str] = []

    async def command() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), stop)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0)  # a clean-up may still await
            events.append("cleaned up")

    with pytest.raises(Terminated) as caught:
        run_async(command())
    assert caught.value.signum == stop
    assert events == ["cancelled", "cleaned up"]
    assert signal.getsignal(stop) is signals._raise_terminated, "handler put back"


@pytest.mark.usefixtures("ours")
def test_a_command_that_ends_normally_returns_its_value() -> None:
    async def command() -> int:
        return 7

    assert run_async(command()) == 7
    for signum in STOP_SIGNALS:
        assert signal.getsignal(signum) is signals._raise_terminated


def test_someone_elses_handler_is_left_alone() -> None:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def theirs(signum: int, frame: object) -> None:
        return None

    signal.signal(signal.SIGHUP, theirs)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        stop_like_ctrl_c()
        assert signal.getsignal(signal.SIGHUP) is theirs
        assert signal.getsignal(signal.SIGTERM) is signals._raise_terminated
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
