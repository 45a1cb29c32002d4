"""Cancellation on the in-memory bus: a cancelled execution stops at its next step.

The test writes the key `nano cancel` writes into the memory backend's ``nano_cancel``
bucket; the host's KV watch picks it up as it does on a server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from nanoservice import subjects
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.compiler import compile_text

ran: Counter[tuple[str, str]] = Counter()
started = asyncio.Event()
release = asyncio.Event()


@node("gate")
async def gate(ctx: Context, input: Any) -> Any:
    """Holds the first step until the test has cancelled the execution."""
    ran[(ctx.execution_id, ctx.step)] += 1
    started.set()
    await release.wait()
    return input


@node("count")
async def count(ctx: Context, input: Any) -> Any:
    ran[(ctx.execution_id, ctx.step)] += 1
    return input


WORKFLOW = "name: stop\nsteps:\n  a: {node: gate, next: b}\n  b: {node: count}\n"


async def test_a_cancelled_execution_stops_at_its_next_step() -> None:
    registry = Registry([gate, count])
    table = compile_text(WORKFLOW, registry)
    bus = MemoryBus()
    async with bus.hosting([table], registry):
        running = asyncio.create_task(bus.run("stop", {"n": 1}, execution="doomed"))
        await asyncio.wait_for(started.wait(), 10)
        await bus.bucket(subjects.CANCEL).put("stop.doomed", b"cancelled")
        await asyncio.sleep(0)  # the host's watch sees it
        release.set()
        outcome = await asyncio.wait_for(running, 10)
        other = await bus.run("stop", {"n": 2}, execution="fine")  # not cancelled: runs on
    assert not outcome.ok and outcome.error is not None
    assert outcome.error["type"] == "Cancelled" and outcome.step == "b"
    assert ran[("doomed", "a")] == 1 and ran[("doomed", "b")] == 0
    assert other.ok and other.output == {"n": 2} and ran[("fine", "b")] == 1
    assert bus.messages("NANO_STOP", "nano.stop._done.doomed") == []
