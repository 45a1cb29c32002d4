"""Trace, replay, dead letters and status on a real nats-server (one per module).

Each test uses its own workflows (own streams), so they share the server safely.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from nanoservice import Context, node
from nanoservice.inspect import dlq, replay, status, trace
from nanoservice.inspect.tail import Tail
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.runtime.serve import serve
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

BROKEN: set[str] = set()
"""Workflows whose `flaky` node fails (the bug), until a test takes them out (the fix)."""


@node("flaky")
async def flaky(ctx: Context, input: Any) -> Any:
    """Fails while its workflow is in BROKEN; else doubles ``n``."""
    if ctx.workflow in BROKEN:
        raise ValueError(f"n={input['n']} is not supported")
    return {"n": input["n"] * 2}


@node("pause")
async def pause(ctx: Context, input: Any) -> Any:
    """Sleeps ``input.wait`` seconds, then passes its input on."""
    await asyncio.sleep(float(input.get("wait", 0)))
    return input


REGISTRY = Registry.discover()
REGISTRY.add(flaky)
REGISTRY.add(pause)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as started:
        yield started


def table_of(text: str) -> RoutingTable:
    return compile_text(text, REGISTRY, file="test.yaml")


@contextlib.asynccontextmanager
async def running(url: str, *texts: str) -> AsyncIterator[tuple[NATS, dict[str, RoutingTable]]]:
    tables = [table_of(t) for t in texts]
    nc = await nats.connect(url)
    try:
        async with nats_backend(url) as backend:
            for table in tables:
                await backend.provision(table)
            async with serve(backend, tables, REGISTRY, drain_timeout=2):
                yield nc, {t.workflow: t for t in tables}
    finally:
        await nc.close()


PARALLEL = """
name: tr_join
steps:
  split: {node: transform, with: {expr: 'input'}, next: [fast, slow]}
  fast: {node: transform, with: {expr: '{"f": prev.x}'}, next: merge}
  slow: {node: pause, next: merge}
  merge:
    node: transform
    join: [fast, slow]
    with: {expr: '{"fast": prev.fast.f, "slow": prev.slow.x}'}
"""


async def test_trace_of_a_parallel_join_shows_both_branches_and_durations_add_up(
    server: LocalServer,
) -> None:
    async with running(server.url, PARALLEL) as (nc, tables):
        outcome = await Client(nc).run("tr_join", {"x": 4, "wait": 0.2}, timeout=20)
        assert outcome.ok, outcome
        got = await trace.trace_execution(nc, tables, "tr_join", outcome.execution)
    runs = {run.step: run for run in got.steps}
    assert got.steps[0].step == "split"
    assert set(runs) == {"split", "fast", "slow", "merge"}
    assert sorted(runs["merge"].inputs) == ["fast", "slow"]
    assert runs["split"].next == ["fast", "slow"] or runs["split"].next == ["slow", "fast"]
    assert got.status == "succeeded" and got.output == {"fast": 4, "slow": 4}
    assert runs["merge"].outcome == "done"
    assert runs["slow"].duration is not None and runs["slow"].duration >= 0.2
    durations = {name: run.duration for name, run in runs.items()}
    assert None not in durations.values()
    # The join starts when its last branch (the slow one) arrived: the critical path adds up.
    path = durations["split"] + durations["slow"] + durations["merge"]  # type: ignore[operator]
    assert got.duration == pytest.approx(path, abs=1e-5)
    assert runs["merge"].start == pytest.approx(runs["slow"].end, abs=1e-6)
    assert got.revision == tables["tr_join"].revision


DETERMINISTIC = """
name: tr_det
steps:
  square: {node: transform, with: {expr: '{"sq": input.n * input.n}'}, next: label}
  label: {node: transform, with: {expr: '{"text": "n^2=" + string(prev.sq)}'}}
"""


async def test_replay_of_a_deterministic_workflow_reproduces_outputs_and_range_is_exact(
    server: LocalServer,
) -> None:
    async with running(server.url, DETERMINISTIC) as (nc, tables):
        client = Client(nc)
        originals = [await client.run("tr_det", {"n": n}, timeout=20) for n in range(5)]
        assert all(o.ok for o in originals)
        seqs = []
        for o in originals:
            source = await replay.find_trigger(nc, tables, "tr_det", o.execution)
            seqs.append(source.seq)
        # A range over the 2nd..4th trigger holds exactly those, though other messages lie between.
        picked = [
            s.execution
            async for s in replay.triggers_in_range(
                nc, tables, "tr_det", seq_from=seqs[1], seq_to=seqs[3]
            )
        ]
        assert picked == [o.execution for o in originals[1:4]]
        since = replay.utc((await replay.find_trigger(nc, tables, "tr_det", picked[0])).time)
        by_time = [
            s.execution async for s in replay.triggers_in_range(nc, tables, "tr_det", since=since)
        ]
        assert by_time == [o.execution for o in originals[1:]]
        replayed = []
        async for source in replay.triggers_in_range(
            nc, tables, "tr_det", seq_from=seqs[1], seq_to=seqs[3]
        ):
            replayed.append(await replay.replay(nc, tables, source))
        for original, again in zip(originals[1:4], replayed, strict=True):
            new = await client.outcome("tr_det", again.execution, timeout=20)
            assert new.execution != original.execution
            assert new.ok and new.output == original.output
            got = await trace.trace_execution(nc, tables, "tr_det", again.execution)
            assert got.replay_of == f"tr_det.{original.execution}"
        # One step replayed from its stored input runs only from that step on.
        source = await replay.step_inputs(nc, tables, "tr_det", originals[2].execution, "label")
        again = await replay.replay(nc, tables, source)
        new = await client.outcome("tr_det", again.execution, timeout=20)
        assert new.output == originals[2].output
        got = await trace.trace_execution(nc, tables, "tr_det", again.execution)
        assert [r.step for r in got.steps] == ["label"]


FAILING = """
name: tr_dlq
steps:
  prepare: {node: transform, with: {expr: '{"n": input.n + 1}'}, next: compute}
  compute: {node: flaky, retry: {max_attempts: 2, backoff: [0.05]}}
"""


async def test_dead_letter_retried_after_the_fix_completes_the_execution(
    server: LocalServer,
) -> None:
    BROKEN.add("tr_dlq")
    async with running(server.url, FAILING) as (nc, tables):
        client = Client(nc)
        failed = await client.run("tr_dlq", {"n": 1}, timeout=20)
        assert not failed.ok and failed.step == "compute"
        (letter,) = await dlq.dead_letters(nc, tables, ["tr_dlq"])
        assert letter.execution == failed.execution and letter.step == "compute"
        assert letter.error["type"] == "ValueError" and letter.attempts == 2
        assert letter.data["prev"] == {"n": 2}
        got = await trace.trace_execution(nc, tables, "tr_dlq", failed.execution)
        assert got.status == "failed" and got.steps[-1].outcome == "dead_letter"
        assert "n=2 is not supported" in (got.steps[-1].error or "")

        # Retried while still broken: it fails again and a new dead letter is stored (its id
        # must not collide with the first one's inside the duplicate window).
        await dlq.retry(nc, tables, [letter])
        again = await _wait_for(lambda: dlq.dead_letters(nc, tables, ["tr_dlq"]))
        assert again[0].seq != letter.seq and again[0].execution == failed.execution

        BROKEN.discard("tr_dlq")  # the fix
        (retried,) = await dlq.retry(nc, tables, again)
        assert retried.step == "compute"
        outcome = await client.outcome("tr_dlq", failed.execution, timeout=20)
        assert outcome.ok and outcome.output == {"n": 4}
        assert await dlq.dead_letters(nc, tables, ["tr_dlq"]) == []
        got = await trace.trace_execution(nc, tables, "tr_dlq", failed.execution)
        assert got.status == "succeeded"
        computes = [run for run in got.steps if run.step == "compute"]
        assert [run.outcome for run in computes] == ["dead_letter", "dead_letter", "done"]
        assert "n=2 is not supported (retried)" in (computes[0].error or "")
        assert computes[2].inputs == [f"dlq retry {again[0].seq}"]


async def _wait_for(read: Any, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = await read()
        if found:
            return found
        await asyncio.sleep(0.05)
    pytest.fail("nothing appeared in time")


SHORT = """
name: tr_aged
stream: {max_age: 1}
steps:
  only: {node: transform, with: {expr: 'input'}}
"""


async def test_trace_says_when_an_execution_aged_out(server: LocalServer) -> None:
    async with running(server.url, SHORT, DETERMINISTIC) as (nc, tables):
        outcome = await Client(nc).run("tr_aged", {"a": 1}, timeout=20)
        assert (await trace.trace_execution(nc, tables, "tr_aged", outcome.execution)).steps
        newer = await Client(nc).run("tr_aged", {"a": 2}, timeout=20)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            got = await trace.trace_execution(nc, tables, "tr_aged", outcome.execution)
            if got.status == "aged_out" or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert got.status == "aged_out", got
        assert "aged out" in got.notes[0]
        with pytest.raises(Exception, match="no execution 'nope'"):
            await trace.trace_execution(nc, tables, "tr_det", "nope")
        assert newer.ok


async def test_status_lists_workflows_streams_and_step_consumers(server: LocalServer) -> None:
    async with running(server.url, DETERMINISTIC) as (nc, tables):
        await Client(nc).run("tr_det", {"n": 3}, timeout=20)
        before = await status.snapshot(nc, tables)
        await Client(nc).run("tr_det", {"n": 4}, timeout=20)
        await asyncio.sleep(0.1)
        after = status.with_rates(before, await status.snapshot(nc, tables))
    (wf,) = after.workflows
    assert wf.workflow == "tr_det" and wf.revision == tables["tr_det"].revision
    assert wf.messages > 0 and wf.bytes > 0 and wf.age is not None
    assert [c.step for c in wf.steps] == ["square", "label"]
    assert all(c.pending == 0 for c in wf.steps)
    assert all(c.rate is not None and c.rate > 0 for c in wf.steps)


async def test_tail_shows_events_of_executions_started_after_it(server: LocalServer) -> None:
    async with running(server.url, DETERMINISTIC) as (nc, tables):
        earlier = await Client(nc).run("tr_det", {"n": 1}, timeout=20)
        tail = Tail({"tr_det": list(tables["tr_det"].start)})
        events: list[Any] = []

        async def on_msg(msg: Any) -> None:
            event = tail.event(msg.subject, msg.headers or {})
            if event is not None:
                events.append(event)

        sub = await nc.subscribe("nano.tr_det.>", cb=on_msg)
        await nc.flush()
        later = await Client(nc).run("tr_det", {"n": 2}, timeout=20)
        await _wait_for(lambda: _done(events))
        await sub.unsubscribe()
    assert {e.execution for e in events} == {later.execution} != {earlier.execution}
    assert [(e.step, e.to, e.outcome) for e in events] == [
        ("trigger", "_start", "started"),
        ("square", "label", "ok"),
        ("label", "_done", "done"),
    ]
    assert all(e.duration is not None for e in events[1:])


async def _done(events: list[Any]) -> list[Any]:
    return [e for e in events if e.outcome == "done"]


CALLER = """
name: tr_caller
steps:
  ask: {call: {workflow: tr_child}, input: '{"n": input.n}', next: answer}
  answer: {node: transform, with: {expr: '{"got": steps.ask.output.n}'}}
"""
CHILD = """
name: tr_child
steps:
  work: {node: flaky}
"""


async def test_trace_nests_the_execution_of_a_called_workflow(server: LocalServer) -> None:
    async with running(server.url, CHILD, CALLER) as (nc, tables):
        outcome = await Client(nc).run("tr_caller", {"n": 5}, timeout=20)
        assert outcome.ok and outcome.output == {"got": 10}, outcome
        got = await trace.trace_execution(nc, tables, "tr_caller", outcome.execution)
    (ask,) = [run for run in got.steps if run.step == "ask"]
    assert ask.call is not None and ask.call.workflow == "tr_child"
    assert ask.call.status == "succeeded" and ask.call.output == {"n": 10}
    assert [run.step for run in ask.call.steps] == ["work"]
    assert ask.call.parent is not None and ask.call.parent.endswith(outcome.execution)
    assert ask.next == ["answer"] and got.status == "succeeded"

    from nanoservice.cli.common import console
    from nanoservice.cli.debug import render_trace

    width, console.width = console.width, 200  # as wide as a terminal, whatever runs pytest
    try:
        with console.capture() as captured:
            render_trace(got)
    finally:
        console.width = width
    lines = [" ".join(line.split()) for line in captured.get().splitlines()]
    assert lines[0].startswith(f"execution {outcome.execution} of tr_caller: succeeded in ")
    assert any(line.startswith(f"└ call tr_child {ask.call.execution}") for line in lines), lines
    assert any(line.startswith("work +") and line.endswith("done") for line in lines), lines
