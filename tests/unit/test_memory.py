"""The in-memory bus keeps the JetStream behaviours the engine relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus, MemoryKV, matches
from nanoservice.testing.memory_stream import MemoryPublishError as PublishError
from nanoservice.types import KeyExistsError, KeyNotFoundError
from nanoservice.workflow.compiler import compile_text

attempts: dict[str, int] = {}


@node("shout", pure=True)
async def shout(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    return {"name": str(input["name"]).upper()}


@node("twice")
async def twice(ctx: Context, input: Any) -> Any:
    attempts[ctx.execution_id] = ctx.attempt
    if ctx.attempt < 2:
        raise RuntimeError("not yet")
    return input


REGISTRY = Registry([shout, twice])
TABLE = compile_text(
    "name: mem\nsteps:\n  a: {node: twice, retry: {backoff: [0.01]}, next: b}\n"
    "  b: {node: shout}\n",
    REGISTRY,
)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [("a.*.c", "a.b.c", True), ("a.>", "a.b.c", True), ("a.>", "a", False),
     ("a.*", "a.b.c", False), ("a.b", "a.b", True), ("a.b", "a.c", False)],
)  # fmt: skip
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


async def test_a_workflow_runs_with_retries_and_gives_one_result() -> None:
    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY):
        outcome = await bus.run("mem", {"name": "ada"}, timeout=5)
    assert outcome.ok and outcome.output == {"name": "ADA"}
    assert attempts[outcome.execution] == 2
    assert [s for s, _ in bus.messages("NANO_MEM", "nano.mem.b.*")] == [
        f"nano.mem.b.{outcome.execution}"
    ]


async def test_duplicates_and_second_results_are_refused() -> None:
    bus = MemoryBus()
    bus.provision(TABLE)
    first = await (await bus.publish("nano.mem.b.e1", b"{}", {"Nats-Msg-Id": "x"}))
    again = await (await bus.publish("nano.mem.b.e1", b"{}", {"Nats-Msg-Id": "x"}))
    assert first == again and len(bus.messages("NANO_MEM")) == 1
    done = {"Nats-Expected-Last-Subject-Sequence": "0"}
    await (await bus.publish("nano.mem._done.e1", b"{}", done))
    with pytest.raises(PublishError) as info:
        await (await bus.publish("nano.mem._done.e1", b"{}", done))
    assert info.value.code == 10071
    with pytest.raises(PublishError, match="no stream"):
        await (await bus.publish("elsewhere", b"{}"))


async def test_unacked_messages_come_back_after_ack_wait_until_max_deliver() -> None:
    bus = MemoryBus()
    table = compile_text(
        "name: slow\nsteps:\n  a: {node: shout, ack_wait: 1, retry: {max_attempts: 2}}\n",
        REGISTRY,
    )
    bus.provision(table)
    seen: list[tuple[str, int]] = []
    third = {"e1": asyncio.Event(), "e2": asyncio.Event()}

    async def never_ack(delivery: Any) -> None:
        execution = delivery.subject.rsplit(".", 1)[-1]
        seen.append((execution, delivery.delivered))
        if delivery.delivered == 3:
            third[execution].set()

    pull = await bus.consume("NANO_SLOW", "a", never_ack, max_inflight=5)
    await bus.publish("nano.slow._start.e1", b"{}")
    await asyncio.wait_for(third["e1"].wait(), 20)
    # e2's third delivery comes an ack_wait after e1's fourth would have: wait for it.
    await bus.publish("nano.slow._start.e2", b"{}")
    await asyncio.wait_for(third["e2"].wait(), 20)
    await pull.stop()
    # max_deliver = attempts + 1, then the server gives up
    assert [n for e, n in seen if e == "e1"] == [1, 2, 3]


async def test_kv_compare_and_set() -> None:
    kv = MemoryKV("b")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    rev = await kv.create("k", b"1")
    with pytest.raises(KeyExistsError):
        await kv.create("k", b"2")
    with pytest.raises(KeyExistsError):
        await kv.update("k", b"2", last=rev + 7)
    await kv.update("k", b"2", last=rev)
    assert (await kv.get("k")).value == b"2"


async def test_outcome_unwrap_gives_the_output_or_raises_the_failure() -> None:
    from nanoservice import ExecutionFailed

    bus = MemoryBus()
    failing = compile_text("name: bad\nsteps:\n  a: {node: shout}\n", REGISTRY)
    async with bus.hosting([TABLE, failing], REGISTRY):
        good = await bus.run("mem", {"name": "x"}, timeout=5)
        bad = await bus.run("bad", {"nom": "x"}, timeout=5)
    assert good.unwrap() == {"name": "X"}
    with pytest.raises(ExecutionFailed, match="failed at step 'a': KeyError: 'name'") as info:
        bad.unwrap()
    assert info.value.step == "a" and info.value.execution == bad.execution


async def test_kv_delete_and_watch() -> None:
    kv = MemoryKV("b")
    await kv.put("old", b"1")
    seen: list[tuple[str, bytes | None] | None] = []

    async def follow() -> None:
        async for entry in kv.watch():
            seen.append(None if entry is None else (entry.key, entry.value))
            if len(seen) == 4:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    await kv.put("new", b"2")
    await kv.delete("old")
    await asyncio.wait_for(task, 2)
    assert seen == [("old", b"1"), None, ("new", b"2"), ("old", None)]
    with pytest.raises(KeyNotFoundError):
        await kv.get("old")


async def test_a_delivery_settled_twice_is_a_violation() -> None:
    bus = MemoryBus()
    bus.provision(TABLE)

    async def ack_twice(delivery: Any) -> None:
        await delivery.ack()
        await delivery.nak()

    pull = await bus.consume("NANO_MEM", "a", ack_twice, max_inflight=5)
    await bus.publish("nano.mem._start.e1", b"{}")
    for _ in range(100):
        if bus.violations:
            break
        await asyncio.sleep(0.01)
    await pull.stop()
    assert len(bus.violations) == 1 and "settled twice: ack, nak" in bus.violations[0]
