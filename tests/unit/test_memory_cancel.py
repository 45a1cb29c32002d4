"""Cancellation on the in-memory bus: a cancelled execution stops at its next step.

MemoryBus has no cancel bucket of its own; a :class:`CancelWatcher` whose set the test fills
stands in for the KV watch that a host keeps on a server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from nanoservice.runtime.cancel import CancelWatcher
from nanoservice.runtime.host import Host, select_steps
from nanoservice.runtime.step_base import Services
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
    bus.provision(table)
    cancels = CancelWatcher()
    services = Services(bus, joins=None, calls=bus.calls, cancels=cancels)
    host = Host(bus, registry, select_steps([table]), services=services)
    await host.start()
    try:
        running = asyncio.create_task(bus.run("stop", {"n": 1}, execution="doomed"))
        await asyncio.wait_for(started.wait(), 10)
        cancels.cancelled.add("stop.doomed")
        release.set()
        outcome = await asyncio.wait_for(running, 10)
        other = await bus.run("stop", {"n": 2}, execution="fine")  # not cancelled: runs on
    finally:
        await host.stop(drain_timeout=2)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error["type"] == "Cancelled" and outcome.step == "b"
    assert ran[("doomed", "a")] == 1 and ran[("doomed", "b")] == 0
    assert other.ok and other.output == {"n": 2} and ran[("fine", "b")] == 1
    assert bus.messages("NANO_STOP", "nano.stop._done.doomed") == []
