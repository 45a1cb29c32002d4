"""Nodes run eagerly, with a timer only when they wait: same results, same timeouts."""

from __future__ import annotations

import asyncio

import pytest

from nanoservice.runtime.eager import run_with_timeout, start_eagerly


async def test_a_coroutine_that_never_waits_returns_its_value() -> None:
    async def quick() -> int:
        return 42

    assert await run_with_timeout(quick(), 1.0) == 42


async def test_a_coroutine_that_waits_is_resumed_and_returns() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return "done"

    assert await run_with_timeout(slow(), 5.0) == "done"


async def test_a_coroutine_that_waits_too_long_times_out_and_is_cancelled() -> None:
    cleaned = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError):
        await run_with_timeout(stuck(), 0.05)
    assert cleaned.is_set()


async def test_exceptions_come_through_from_either_part() -> None:
    async def fails_at_once() -> None:
        raise ValueError("now")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="now"):
        await run_with_timeout(fails_at_once(), 1.0)
    with pytest.raises(KeyError, match="later"):
        await run_with_timeout(fails_later(), 1.0)


async def test_a_node_catching_its_cancellation_can_clean_up_and_return() -> None:
    async def polite() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "stopped"
        return "finished"

    task = asyncio.ensure_future(run_with_timeout(polite(), 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task == "stopped"


async def test_start_eagerly_runs_inline_or_hands_over_to_a_task() -> None:
    seen: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def quick() -> None:
        seen.append("quick")

    async def waits() -> None:
        seen.append("before")
        await asyncio.sleep(0.01)
        seen.append("after")

    assert start_eagerly(quick(), tasks.append) is True
    assert seen == ["quick"] and not tasks
    assert start_eagerly(waits(), tasks.append) is False
    assert seen == ["quick", "before"]  # ran inline up to its first wait
    await tasks[0]
    assert seen == ["quick", "before", "after"]


async def test_a_timeout_started_eagerly_cancels_only_its_own_work() -> None:
    # The eager part runs in *this* task; the timer must not cancel this task.
    tasks: list[asyncio.Task[None]] = []
    outcome: list[str] = []

    async def handler() -> None:
        async def slow() -> None:
            await asyncio.sleep(10)

        try:
            await run_with_timeout(slow(), 0.05)
        except TimeoutError:
            outcome.append("timed out")

    start_eagerly(handler(), tasks.append)
    try:
        await asyncio.wait_for(asyncio.shield(tasks[0]), 2)
        await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        outcome.append("the caller's task was cancelled")
    assert outcome == ["timed out"]
