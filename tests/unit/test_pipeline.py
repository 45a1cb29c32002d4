"""The step pipeline on the memory backend: middleware, context variables, dead letters that
can be re-driven, and the protocol headers every message carries."""

from __future__ import annotations

import contextvars
from typing import Any

import msgspec

from nanoservice import subjects
from nanoservice.runtime.envelope import decode_dead_letter
from nanoservice.runtime.middleware import Invocation, Middleware, NodeCall
from nanoservice.runtime.outbox import DLQ_DATA_LIMIT
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.types import PARENT, REVISION, STEP
from nanoservice.workflow.compiler import compile_text

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")


@node("whoami", pure=True)
async def whoami(ctx: Context, input: Any) -> Any:
    return {"seen": current.get(), "n": input.get("n", 0)}


@node("picky")
async def picky(ctx: Context, input: dict[str, Any]) -> Any:
    return input["must"]


REGISTRY = Registry([whoami, picky])
TABLE = compile_text(
    "name: ctxwf\nsteps:\n  a: {node: whoami, next: b}\n  b: {node: whoami}\n", REGISTRY
)


class Tagging(Middleware):
    """Sets a context variable around each node call and resets it, as tracing does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    async def node(self, call: Invocation, call_next: NodeCall) -> Any:
        self.calls.append((call.workflow, call.step.name, call.attempt))
        token = current.set(f"{call.step.name}:{call.execution}")
        try:
            return await call_next(call)
        finally:
            current.reset(token)  # fails if the call ran in another context


async def test_middleware_wraps_every_node_call_and_context_vars_stay_put() -> None:
    bus, tagging = MemoryBus(), Tagging()
    async with bus.hosting([TABLE], REGISTRY, middleware=[tagging]):
        outcomes = [await bus.run("ctxwf", {"n": i}, timeout=5) for i in range(5)]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert [o.output for o in outcomes] == [
        {"seen": f"b:{o.execution}", "n": i} for i, o in enumerate(outcomes)
    ]
    assert sorted(tagging.calls) == sorted([("ctxwf", s, 1) for s in "ab"] * 5)
    assert current.get() == "none"  # nothing leaked into the consumer's context


async def test_a_message_middleware_sees_every_decision() -> None:
    decisions: list[str] = []

    class Outcomes(Middleware):
        async def message(self, step: Any, delivery: Any, call_next: Any) -> Any:
            decision = await call_next(delivery)
            decisions.append(f"{step.name}:{type(decision).__name__}")
            return decision

    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY, middleware=[Outcomes()]):
        assert (await bus.run("ctxwf", {}, timeout=5)).ok
    assert decisions == ["a:Publish", "b:Publish"]


async def test_messages_carry_the_revision_and_the_sending_step() -> None:
    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY):
        outcome = await bus.run("ctxwf", {}, timeout=5)
    stream = bus._streams[TABLE.stream.name]
    sent = [m for m in stream.messages.values() if not m.subject.startswith("nano.ctxwf._start")]
    assert [m.subject for m in sent] == [
        f"nano.ctxwf.b.{outcome.execution}",
        f"nano.ctxwf._done.{outcome.execution}",
    ]
    assert all(m.headers[REVISION] == TABLE.revision for m in sent)
    assert [m.headers[STEP] for m in sent] == ["a", "b"]


async def test_a_dead_letter_keeps_the_message_to_re_drive_it_and_cuts_big_bodies() -> None:
    table = compile_text(
        "name: dl\nsteps:\n  a: {node: picky, retry: {max_attempts: 1}}\n", REGISTRY
    )
    bus = MemoryBus()
    big = {"pad": "x" * (DLQ_DATA_LIMIT + 10)}
    async with bus.hosting([table], REGISTRY):
        small_outcome = await bus.run("dl", {"nope": 1}, timeout=5)
        big_outcome = await bus.run("dl", big, timeout=5)
    assert not small_outcome.ok and not big_outcome.ok
    letters = {
        subjects.execution_of(s): decode_dead_letter(d)
        for s, d in bus.messages("NANO_DL", "nano.dl._dlq.*")
    }
    small, cut = letters[small_outcome.execution], letters[big_outcome.execution]
    assert small.data == {"nope": 1} and not small.truncated
    assert small.subject == f"nano.dl._start.{small_outcome.execution}"
    assert small.headers["Nats-Msg-Id"] == f"{small_outcome.execution}:_start"
    assert cut.truncated and len(cut.data) <= 1024 and cut.stream_seq > 0
    original = bus._streams["NANO_DL"].messages[cut.stream_seq]
    assert msgspec.json.decode(original.data) == big  # the full message stays reachable


async def test_a_trigger_cannot_name_an_arbitrary_subject_as_its_parent() -> None:
    other = compile_text("name: victim\nsteps:\n  v: {node: whoami}\n", REGISTRY)
    bus = MemoryBus()
    async with bus.hosting([TABLE, other], REGISTRY):
        fut = await bus.publish("nano.ctxwf._start.x1", b"{}", {PARENT: "nano.victim.v.injected"})
        await fut
        outcome = await bus.run("ctxwf", {}, timeout=5, execution="x2")
        assert outcome.ok
        done = bus.messages("NANO_CTXWF", "nano.ctxwf._done.x1")
    assert len(done) == 1
    assert bus.messages("NANO_VICTIM", "nano.victim.v.injected") == []


def _greeting(word: str) -> str:
    return (
        "name: greet\nsteps:\n"
        "  wait: {node: delay, with: {seconds: 0.3}, next: say}\n"
        f"  say: {{node: transform, with: {{expr: '\"{word}, \" + prev.name'}}}}\n"
    )


async def test_a_new_table_revision_serves_new_executions_and_running_ones_finish_on_theirs() -> (
    None
):
    import asyncio

    builtins = Registry.discover()
    old, new = (compile_text(_greeting(w), builtins) for w in ("Hello", "Howdy"))
    assert old.revision != new.revision
    bus = MemoryBus()
    async with bus.hosting([old], builtins) as host:
        running = asyncio.create_task(bus.run("greet", {"name": "Ada"}, timeout=5))
        await asyncio.sleep(0.1)  # `wait` of the old revision is under way
        bus.provision(new)  # what `nano up` does when the file changes
        await asyncio.wait_for(host.revision_live.wait(), 2)
        after = await bus.run("greet", {"name": "Bob"}, timeout=5)
        before = await running
        assert host.live_revisions() == {"greet": new.revision}
    assert before.output == "Hello, Ada"  # started on the old revision, finished on it
    assert after.output == "Howdy, Bob"


async def test_a_message_of_an_unknown_revision_is_never_run_on_another_table() -> None:
    import asyncio

    builtins = Registry.discover()
    table = compile_text(_greeting("Hello"), builtins)
    bus = MemoryBus()
    async with bus.hosting([table], builtins):
        await (
            await bus.publish(
                "nano.greet.say.x9", b'{"prev": {"name": "Eve"}}', {REVISION: "from-the-future"}
            )
        )
        for _ in range(100):
            dead = bus.messages("NANO_GREET", "nano.greet._dlq.x9")
            if dead:
                break
            await asyncio.sleep(0.05)
        assert bus.messages("NANO_GREET", "nano.greet._done.x9") == []
    letter = decode_dead_letter(dead[0][1])
    assert letter.error.type == "UnknownRevision"
    assert letter.attempts == table.steps["say"].retry.max_attempts
