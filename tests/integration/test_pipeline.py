"""The step pipeline's guarantees on a real server: join state cleaned up, join timers off
the join's consumer, storage outages ridden out without spending the node's retries."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from nanoservice import subjects
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions, free_port
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text

attempts: dict[str, int] = {}


@node("count")
async def count(ctx: Context, input: Any) -> Any:
    attempts[ctx.execution_id] = max(attempts.get(ctx.execution_id, 0), ctx.attempt)
    return input


@node("hold")
async def hold(ctx: Context, input: Any) -> Any:
    await asyncio.sleep(float(input.get("hold", 0)))
    return input


REGISTRY = Registry([count, hold, Registry.discover().get("transform")])

JOIN = """
name: joined
steps:
  split: {node: transform, with: {expr: 'input'}, next: [left, right]}
  left: {node: transform, with: {expr: '{"l": 1}'}, next: merge}
  right: {node: hold, next: merge}
  merge:
    node: transform
    join: {steps: [left, right], timeout: 30, on_timeout: [late]}
    with: {expr: '{"left": prev.left.l}'}
  late: {node: transform, with: {expr: 'prev'}}
"""


async def _keys(js: Any, bucket: str) -> list[str]:
    kv = await js.key_value(bucket)
    try:
        return list(await kv.keys())
    except Exception:  # nats-py: no keys
        return []


async def test_join_keys_are_deleted_once_the_join_is_over(nats_url: str) -> None:
    table = compile_text(JOIN, REGISTRY)
    nc = await nats.connect(nats_url)
    try:
        async with nats_backend(nats_url) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                client = Client(nc)
                outcomes = await asyncio.gather(
                    *(client.run("joined", {"hold": 0}, timeout=20) for _ in range(20))
                )
                assert [o.output for o in outcomes] == [{"left": 1}] * 20
                js = nc.jetstream()
                for _ in range(50):  # keys go once each firer's ack is sent
                    if not await _keys(js, subjects.JOINS):
                        break
                    await asyncio.sleep(0.1)
                assert await _keys(js, subjects.JOINS) == []
    finally:
        await nc.close()


async def test_more_waiting_join_timers_than_the_old_ack_pending_limit(nats_url: str) -> None:
    """1,100 timed joins wait at once: each timer holds an ack-pending slot of the timers'
    consumer, none of the join's (whose limit was 1,000), so every join still fires."""
    n = 1100
    table = compile_text(
        JOIN.replace("right: {node: hold,", "right: {node: hold, concurrency: 2000,"), REGISTRY
    )
    nc = await nats.connect(nats_url)
    try:
        async with nats_backend(nats_url) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                client = Client(nc)
                executions = await asyncio.gather(
                    *(client.start("joined", {"hold": 4}) for _ in range(n))
                )
                js = nc.jetstream()
                timers = subjects.timer_consumer("merge")
                for _ in range(100):
                    info = await js.consumer_info(table.stream.name, timers)
                    if info.num_ack_pending == n:
                        break
                    await asyncio.sleep(0.1)
                join = await js.consumer_info(table.stream.name, "merge")
                assert info.num_ack_pending == n  # every timer waits here...
                assert join.num_ack_pending < 1000  # ...not on the join's consumer
                outcomes = await asyncio.gather(
                    *(client.outcome("joined", e, timeout=60) for e in executions)
                )
                assert [o.output for o in outcomes] == [{"left": 1}] * n
    finally:
        await nc.close()


@pytest.mark.slow
async def test_a_server_down_for_20_s_costs_no_node_attempt(tmp_path: Path) -> None:
    """Outputs that cannot be stored are re-published by the settler, not retried as node
    failures: every execution completes on its first attempt, once."""
    store = tmp_path / "nats"
    options = ServerOptions(store_dir=store, port=free_port())
    server = LocalServer(options)
    server.start()
    table = compile_text(
        "name: outage\nsteps:\n  a: {node: count, next: b}\n  b: {node: hold, next: c}\n"
        "  c: {node: count}\n",
        REGISTRY,
    )
    attempts.clear()
    try:
        async with nats_backend(server.url) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                nc = await nats.connect(
                    server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
                )
                client = Client(nc)
                executions = [await client.start("outage", {"hold": 1.0}) for _ in range(20)]
                await asyncio.sleep(0.3)  # the `hold` steps are running now
                server.stop()
                await asyncio.sleep(20)
                server = LocalServer(ServerOptions(store_dir=store, port=options.port))
                server.start()
                outcomes = []
                for execution in executions:
                    outcomes.append(await client.outcome("outage", execution, timeout=60))
                await nc.close()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        assert set(attempts) == set(executions)
        assert set(attempts.values()) == {1}, attempts
    finally:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)  # up to 120 s per outcome under a loaded (parallel) run
async def test_a_stream_leader_kill_on_a_3_server_cluster_dead_letters_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While a new stream leader is elected, publishes fail ("no stream captures this
    subject"); that is an outage, not a node failure: no node attempt is spent on it (the
    old runtime logged "attempt 1 failed: PublishError: no stream captures this subject"
    and spent the node's retries) and nothing is dead-lettered."""
    from nanoservice.nats.local_cluster import LocalCluster

    cluster = LocalCluster(tmp_path, n=3)
    await asyncio.to_thread(cluster.start)
    table = compile_text(
        "name: ha\nsteps:\n  a: {node: count, next: b}\n  b: {node: hold, next: c}\n"
        "  c: {node: count}\n",
        REGISTRY,
    )
    attempts.clear()
    try:
        async with nats_backend(cluster.url, replicas=3) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                info = await backend.js.stream_info(table.stream.name)
                leader = info.cluster.leader if info.cluster else None
                victim = next(s for s in cluster.servers if s.options.server_name == leader)
                survivors = [s.url for s in cluster.servers if s is not victim]
                nc = await nats.connect(servers=survivors, reconnect_time_wait=0.2)
                client = Client(nc)
                executions = [await client.start("ha", {"hold": 1.5}) for _ in range(300)]
                assert victim._proc is not None
                victim._proc.kill()  # SIGKILL: no leadership hand-over
                outcomes = [await _outcome_or_report(client, table, e) for e in executions]
                dead = await nc.jetstream().stream_info(
                    table.stream.name, subjects_filter="nano.ha._dlq.*"
                )
                await nc.close()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
        assert not dead.state.subjects
        spent = [r.getMessage() for r in caplog.records if "PublishError" in r.getMessage()]
        assert not spent, spent[:3]
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_bad_trigger_near_the_size_limit_is_still_dead_lettered(nats_url: str) -> None:
    """A dead letter embeds the failed message and a schema error repeats the value: over
    half the limit that used to be unstorable, so the message was dropped. It is cut to a
    preview now, with the stream sequence of the full message."""
    table = compile_text(
        "name: strict\ninput: {type: object, properties: {n: {type: integer}}}\n"
        "steps:\n  a: {node: count}\n",
        REGISTRY,
    )
    nc = await nats.connect(nats_url)
    try:
        async with nats_backend(nats_url) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                bad = {"n": "x" * 700_000}  # not an integer, and the error repeats it
                outcome = await Client(nc).run("strict", bad, timeout=20)
        assert not outcome.ok and outcome.error is not None
        assert outcome.error["type"] == "InvalidMessageError"
        assert len(outcome.error["message"]) < 4096
        js = nc.jetstream()
        stored = await js.get_last_msg(table.stream.name, f"nano.strict._dlq.{outcome.execution}")
        letter = msgspec.json.decode(stored.data or b"{}")
        assert letter["truncated"] is True and letter["stream_seq"] > 0
        original = await js.get_msg(table.stream.name, letter["stream_seq"])
        assert original.subject == f"nano.strict._start.{outcome.execution}"
    finally:
        await nc.close()


async def _outcome_or_report(client: Client, table: Any, execution: str) -> Any:
    """The outcome; if there is none, fail with what the server holds of the execution
    (its messages and every step consumer's state), so a failure explains itself."""
    from nanoservice.nats.client import NoOutcome

    try:
        return await client.outcome("ha", execution, timeout=120)
    except NoOutcome:
        js = client.js
        history = await js.stream_info(
            table.stream.name, subjects_filter=subjects.execution_filter("ha", execution)
        )
        consumers = [
            (c.name, c.num_pending, c.num_ack_pending, c.num_redelivered)
            for c in await js.consumers_info(table.stream.name)
        ]
        pytest.fail(f"no outcome of {execution}: {history.state.subjects}; {consumers}")
