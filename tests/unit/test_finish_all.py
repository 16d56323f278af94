"""finish_all: every lineage's task ends, and a stop lets every clean-up finish (bounded)."""

from __future__ import annotations

import asyncio

import pytest

from certherd.manager.tasks import finish_all


async def _lineage(name: str, cleanup_steps: int, log: list[str]) -> str:
    """Works until cancelled, then cleans up over ``cleanup_steps`` loop turns."""
    try:
        await asyncio.sleep(3600)
    finally:
        for _ in range(cleanup_steps):
            await asyncio.sleep(0)
        log.append(name)
    return name


async def test_results_in_order_and_the_first_failure_after_all_ended() -> None:
    log: list[str] = []

    async def fails() -> str:
        raise ValueError("one lineage broke")

    async def slow() -> str:
        await asyncio.sleep(0.01)
        log.append("slow finished")
        return "slow"

    assert await finish_all(asyncio.sleep(0, result=n) for n in ("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="one lineage broke"):
        await finish_all([fails(), slow()])
    assert log == ["slow finished"]  # not abandoned when the other failed
    assert await finish_all([]) == []


async def test_a_cancellation_waits_for_every_clean_up() -> None:
    """gather would end at the first child stopped; the others' clean-ups must finish."""
    log: list[str] = []
    runner = asyncio.ensure_future(
        finish_all(_lineage(n, steps, log) for n, steps in (("a", 0), ("b", 5), ("c", 50)))
    )
    await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.sleep(0)
    runner.cancel()  # a second stop (SIGTERM again) does not cut the clean-ups short
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert sorted(log) == ["a", "b", "c"]


async def test_clean_ups_past_the_deadline_are_cancelled() -> None:
    log: list[str] = []

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("stuck cancelled at the deadline")
                raise

    runner = asyncio.ensure_future(finish_all([stuck()], cleanup_deadline=0.05))
    await asyncio.sleep(0.01)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await asyncio.sleep(0)
    assert log == ["stuck cancelled at the deadline"]
