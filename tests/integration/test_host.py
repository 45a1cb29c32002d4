"""The host on a real nats-server: routing, acks, retries, dead letters, scaling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import nats
from pydantic import BaseModel

from nanoservice.errors import NonRetryableError
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client, Outcome
from nanoservice.nats.provision import load_tables, provision
from nanoservice.runtime.envelope import decode_dead_letter
from nanoservice.runtime.host import Host
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, NoConfig, Node, Routed, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

calls: dict[str, int] = {}


@node("upper")
async def upper(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    return {"name": str(input["name"]).upper()}


@node("flaky")
async def flaky(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    """Fails on the first attempt of every execution."""
    calls[ctx.execution_id] = calls.get(ctx.execution_id, 0) + 1
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return {**input, "attempt": ctx.attempt}


@node("broken")
async def broken(ctx: Context, input: Any) -> Any:
    raise RuntimeError("always broken")


@node("picky")
async def picky(ctx: Context, input: Any) -> Any:
    raise NonRetryableError("cannot handle this")


@node("slow")
async def slow(ctx: Context, input: Any) -> Any:
    await asyncio.sleep(5)
    return input


class Scored(BaseModel):
    score: int


@node("score")
async def score(ctx: Context, input: dict[str, Any]) -> Scored | Routed[Scored]:
    value = int(input["total"])
    return Routed(Scored(score=value), "high" if value > 100 else "low")


@node("big")
async def big(ctx: Context, input: Any) -> str:
    return "x" * 2_000_000


REGISTRY = Registry([upper, flaky, broken, picky, slow, score, big])


@asynccontextmanager
async def running(
    url: str, text: str, replicas: int = 1
) -> AsyncIterator[tuple[Client, RoutingTable, list[Host]]]:
    table = compile_text(text, REGISTRY, file="test.yaml")
    nc = await nats.connect(url)
    await provision(nc.jetstream(), table)
    async with contextlib.AsyncExitStack() as stack:
        hosts = []
        for _ in range(replicas):
            backend = await stack.enter_async_context(nats_backend(url))
            hosts.append(await stack.enter_async_context(serve(backend, [table], REGISTRY)))
        try:
            yield Client(nc), table, hosts
        finally:
            await stack.aclose()
            await nc.close()


async def run(client: Client, wf: str, payload: Any) -> Outcome:
    return await client.run(wf, payload, timeout=20)


async def test_linear_workflow_returns_the_declared_output(nats_url: str) -> None:
    wf = """
name: lin
input: {type: object, required: [name]}
steps:
  a: {node: upper, next: b}
  b: {node: upper, input: '{"name": prev.name + "!"}', next: c}
  c: {node: upper, input: 'steps.a.output'}
output: '{"a": steps.a.output.name, "b": steps.b.output.name, "last": prev.name}'
"""
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "lin", {"name": "ada"})
    assert outcome.ok, outcome
    assert outcome.output == {"a": "ADA", "b": "ADA!", "last": "ADA"}
    assert outcome.step == "c"


async def test_a_step_that_fails_once_is_retried_and_runs_downstream_once(nats_url: str) -> None:
    wf = """
name: retry
steps:
  a: {node: flaky, retry: {max_attempts: 3, backoff: [0.05]}, next: b}
  b: {node: upper}
"""
    async with running(nats_url, wf) as (client, _, _):
        outcomes = await asyncio.gather(
            *(run(client, "retry", {"name": f"n{i}"}) for i in range(5))
        )
        js = client.js
        info = await js.stream_info("NANO_RETRY", subjects_filter="nano.retry.>")
    assert all(o.ok for o in outcomes)
    assert sorted(o.output["name"] for o in outcomes) == [f"N{i}" for i in range(5)]
    assert all(calls[o.execution] == 2 for o in outcomes)
    subjects = info.state.subjects or {}
    # one message per execution on b's subject and one result: the retry did not duplicate.
    for o in outcomes:
        assert subjects[f"nano.retry.b.{o.execution}"] == 1
        assert subjects[f"nano.retry._done.{o.execution}"] == 1


async def test_spent_retries_go_to_the_dead_letter_subject(nats_url: str) -> None:
    wf = """
name: dlq
steps:
  a: {node: broken, retry: {max_attempts: 2, backoff: [0.05]}}
"""
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "dlq", {"x": 1})
        msg = await client.js.get_last_msg("NANO_DLQ", f"nano.dlq._dlq.{outcome.execution}")
    assert not outcome.ok
    assert outcome.error == {"type": "RuntimeError", "message": "always broken", "attempts": 2}
    dead = decode_dead_letter(msg.data or b"")
    assert dead.step == "a" and dead.data == {"x": 1}
    assert dead.subject == f"nano.dlq._start.{outcome.execution}"
    assert msg.headers and msg.headers["Nano-Error"] == "RuntimeError: always broken"


async def test_non_retryable_errors_are_not_retried(nats_url: str) -> None:
    wf = "name: pick\nsteps:\n  a: {node: picky, retry: {max_attempts: 5}}\n"
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "pick", {})
    assert outcome.error == {
        "type": "NonRetryableError",
        "message": "cannot handle this",
        "attempts": 1,
    }


async def test_payload_violating_the_input_schema_is_dead_lettered(nats_url: str) -> None:
    wf = "name: schema\ninput: {type: object, required: [name]}\nsteps:\n  a: {node: upper}\n"
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "schema", {"nom": "x"})
    assert not outcome.ok and outcome.error is not None
    assert outcome.error["type"] == "InvalidMessageError"
    assert "'name' is a required property" in outcome.error["message"]


async def test_node_chosen_routes(nats_url: str) -> None:
    wf = """
name: routes
steps:
  score: {node: score, routes: {high: [shout], low: [quiet]}}
  shout: {node: upper, input: '{"name": "high " + string(prev.score)}'}
  quiet: {node: upper, input: '{"name": "low " + string(prev.score)}'}
"""
    async with running(nats_url, wf) as (client, _, _):
        high = await run(client, "routes", {"total": 500})
        low = await run(client, "routes", {"total": 5})
        msg = await client.js.get_last_msg("NANO_ROUTES", f"nano.routes.shout.{high.execution}")
    assert (high.output, high.step) == ({"name": "HIGH 500"}, "shout")
    assert (low.output, low.step) == ({"name": "LOW 5"}, "quiet")
    assert msg.headers is not None and msg.headers["Nano-Route"] == "high"


async def test_a_route_the_step_does_not_have_is_an_error(nats_url: str) -> None:
    wf = "name: noroute\nsteps:\n  score: {node: score, routes: {high: [u]}}\n  u: {node: upper}\n"
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "noroute", {"total": 1})
    assert outcome.error is not None and outcome.error["type"] == "RoutingError"
    assert "route 'low'" in outcome.error["message"]


async def test_error_route_receives_the_failure(nats_url: str) -> None:
    wf = """
name: onerr
steps:
  a: {node: broken, retry: {max_attempts: 1}, on_error: handler}
  handler: {node: upper, input: '{"name": prev.step + ": " + prev.error.message}'}
"""
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "onerr", {"x": 1})
    assert outcome.ok and outcome.output == {"name": "A: ALWAYS BROKEN"}


async def test_a_step_over_its_timeout_fails_with_the_reason(nats_url: str) -> None:
    wf = "name: tmo\nsteps:\n  a: {node: slow, timeout: 0.2, retry: {max_attempts: 1}}\n"
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "tmo", {})
    assert outcome.error == {
        "type": "TimeoutError",
        "message": "step timed out after 0.2 s",
        "attempts": 1,
    }


async def test_an_output_over_the_max_payload_travels_as_a_claim_check(nats_url: str) -> None:
    wf = """
name: huge
steps:
  a: {node: big, next: b}
  b: {node: upper, input: '{"name": size(prev)}'}
"""
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "huge", {})
    assert outcome.ok, outcome
    assert outcome.output == {"name": "2000000"}


async def test_external_trigger_subject_starts_an_execution(nats_url: str) -> None:
    wf = "name: ext\ntrigger: {subjects: [people.new]}\nsteps:\n  a: {node: upper}\n"
    async with running(nats_url, wf) as (client, _, _):
        waiter = asyncio.Future[bytes]()

        async def on_done(msg: Any) -> None:
            if not waiter.done():
                waiter.set_result(msg.data)

        await client.nc.subscribe("nano.ext._done.*", cb=on_done)
        await client.js.publish(
            "people.new", b'{"name": "grace"}', headers={"Nano-Execution": "ext-1"}
        )
        data = await asyncio.wait_for(waiter, 20)
        outcome = await client.outcome("ext", "ext-1", timeout=5)
    assert msgspec.json.decode(data)["output"] == {"name": "GRACE"}
    assert outcome.ok and outcome.output == {"name": "GRACE"}


async def test_replicas_share_the_work_and_each_execution_runs_once(nats_url: str) -> None:
    wf = "name: scale\nsteps:\n  a: {node: upper, next: b}\n  b: {node: upper}\n"
    async with running(nats_url, wf, replicas=2) as (client, _, _hosts):
        outcomes = await asyncio.gather(
            *(run(client, "scale", {"name": f"p{i}"}) for i in range(60))
        )
        info = await client.js.stream_info("NANO_SCALE", subjects_filter="nano.scale._done.*")
    assert all(o.ok for o in outcomes)
    assert info.state.subjects is not None and len(info.state.subjects) == 60
    assert set(info.state.subjects.values()) == {1}


async def test_provisioning_twice_keeps_messages_and_stores_the_table(nats_url: str) -> None:
    wf = "name: prov\nsteps:\n  a: {node: upper}\n"
    table = compile_text(wf, REGISTRY)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        first = await provision(js, table)
        await js.publish("nano.prov._start.e1", b'{"name": "x"}')
        second = await provision(js, table)
        changed = compile_text(wf + "stream: {max_age: 60}\n", REGISTRY)
        third = await provision(js, changed)
        info = await js.stream_info("NANO_PROV")
        tables = await load_tables(js)
    finally:
        await nc.close()
    assert (first.stream_action, second.stream_action, third.stream_action) == (
        "created",
        "unchanged",
        "updated",
    )
    assert info.state.messages == 1 and info.config.max_age == 60
    assert tables["prov"] == changed


@node("wait")
async def wait(ctx: Context, input: Any) -> Any:
    await asyncio.sleep(1.0)
    return input


REGISTRY.add(wait)


async def test_a_cancelled_execution_stops_at_its_next_step(nats_url: str) -> None:
    wf = "name: cancel\nsteps:\n  a: {node: wait, next: b}\n  b: {node: upper}\n"
    async with running(nats_url, wf) as (client, _, _):
        execution = await client.start("cancel", {"name": "x"})
        await client.cancel("cancel", execution)
        outcome = await client.outcome("cancel", execution, timeout=20)
        info = await client.js.stream_info("NANO_CANCEL", subjects_filter="nano.cancel.>")
    assert not outcome.ok and outcome.error is not None
    assert outcome.error["type"] == "Cancelled"
    assert f"nano.cancel._done.{execution}" not in (info.state.subjects or {})


async def test_the_graph_of_a_workflow_is_drawn_offline() -> None:
    from nanoservice.workflow.graph import to_mermaid

    table = compile_text(
        "name: g\nsteps:\n  a: {node: score, routes: {high: [b], low: [c]}}\n"
        "  b: {node: upper}\n  c: {node: upper}\n",
        REGISTRY,
    )
    chart = to_mermaid(table)
    assert 'a -- "high" --> b' in chart and 'a -- "low" --> c' in chart
    assert "b --> done((done))" in chart


runs: dict[str, int] = {}


@node("long")
async def long(ctx: Context, input: Any) -> Any:
    runs[ctx.execution_id] = runs.get(ctx.execution_id, 0) + 1
    await asyncio.sleep(3.0)
    return {"ran": True}


REGISTRY.add(long)


async def test_heartbeats_keep_a_step_longer_than_its_ack_wait_from_redelivery(
    nats_url: str,
) -> None:
    # ack_wait 1 s, the node takes 3 s: without in-progress heartbeats the server would
    # redeliver the message (to this or another replica) while it still runs.
    wf = "name: beat\nsteps:\n  a: {node: long, timeout: 10, ack_wait: 1}\n"
    async with running(nats_url, wf, replicas=2) as (client, _, _):
        outcome = await run(client, "beat", {})
        # A later execution's result (3 s on): a late redelivery would have run before it.
        later = await run(client, "beat", {})
    assert outcome.ok and outcome.output == {"ran": True} and later.ok
    assert runs[outcome.execution] == 1


async def test_a_join_fires_once_when_replicas_race_on_its_branches(nats_url: str) -> None:
    branches = [f"b{i}" for i in range(5)]
    steps = "".join(
        f'  {b}: {{node: upper, input: \'{{"name": "{b}"}}\', next: j}}\n' for b in branches
    )
    wf = (
        f"name: race\nsteps:\n  split: {{node: upper, next: [{', '.join(branches)}]}}\n"
        f"{steps}  j: {{node: upper, join: [{', '.join(branches)}], "
        "input: '{\"name\": string(size(prev))}'}\n"
    )
    async with running(nats_url, wf, replicas=3) as (client, _, _):
        outcomes = await asyncio.gather(
            *(run(client, "race", {"name": f"x{i}"}) for i in range(20))
        )
        info = await client.js.stream_info("NANO_RACE", subjects_filter="nano.race.j.*")
    assert all(o.ok and o.output == {"name": "5"} for o in outcomes), outcomes
    # every branch delivered once to the join, nothing duplicated by the race
    assert set((info.state.subjects or {}).values()) == {5}


async def test_a_trigger_and_a_result_over_the_max_payload_travel_as_claims(nats_url: str) -> None:
    wf = "name: bigin\nsteps:\n  a: {node: upper}\n"
    async with running(nats_url, wf) as (client, _, _):
        outcome = await run(client, "bigin", {"name": "x" * 1_100_000})
    assert outcome.ok and outcome.output == {"name": "X" * 1_100_000}


class Person(BaseModel):
    name: str
    age: int


class Greeter(Node[Person, dict[str, str], NoConfig]):
    """A class node with a typed input."""

    name = "greeter"

    async def handle(self, ctx: Context, input: Person) -> dict[str, str]:
        return {"greeting": f"{input.name} is {input.age}"}


REGISTRY.add(Greeter)


async def test_a_typed_node_input_is_validated_and_bad_input_is_not_retried(
    nats_url: str,
) -> None:
    wf = "name: typed\nsteps:\n  a: {node: greeter, retry: {max_attempts: 4}}\n"
    async with running(nats_url, wf) as (client, _, _):
        good = await run(client, "typed", {"name": "Ada", "age": "36"})
        bad = await run(client, "typed", {"name": "Ada"})
    assert good.ok and good.output == {"greeting": "Ada is 36"}
    assert not bad.ok and bad.error is not None
    assert bad.error["type"] == "ValidationError" and bad.error["attempts"] == 1
    assert "age" in bad.error["message"]
