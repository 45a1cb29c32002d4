"""The known run of the observability tests, and a host process for the trace test.

``FLOW`` fans out to two branches and joins them; ``left`` fails the first attempt of
execution ``n3`` (a retry), ``right`` always fails ``n7`` (a retry, then a dead letter, so
that execution's join never fires). Ten executions ``n0``..``n9`` give ``EXPECTED``.

Run as ``python -m tests.integration.observe_flow URL SPANS_FILE STEP...``: serve those
steps with tracing into an in-memory exporter until SIGTERM, then write the spans as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text


@node("flaky")
async def flaky(ctx: Context, input: Any) -> Any:
    if ctx.execution_id == "n3" and ctx.attempt == 1:
        raise RuntimeError("transient failure")
    return input


@node("doomed")
async def doomed(ctx: Context, input: Any) -> Any:
    if ctx.execution_id == "n7":
        raise RuntimeError("always fails")
    return input


REGISTRY = Registry([flaky, doomed, Registry.discover().get("transform")])

FLOW = """
name: counted
steps:
  split: {node: transform, with: {expr: 'input'}, next: [left, right]}
  left: {node: flaky, retry: {max_attempts: 2, backoff: [0.05]}, next: merge}
  right: {node: doomed, retry: {max_attempts: 2, backoff: [0.05]}, next: merge}
  merge:
    node: transform
    join: [left, right]
    with: {expr: '{"n": prev.left.n}'}
"""
TABLE = compile_text(FLOW, REGISTRY)
EXECUTIONS = [f"n{i}" for i in range(10)]

_W = {"workflow": "counted"}
EXPECTED: dict[tuple[str, frozenset[tuple[str, str]]], float] = {
    (name, frozenset({**_W, **labels}.items())): value
    for name, labels, value in [
        ("nano_step_messages_total", {"step": "split"}, 10),
        ("nano_step_messages_total", {"step": "left"}, 11),
        ("nano_step_messages_total", {"step": "right"}, 11),
        ("nano_step_messages_total", {"step": "merge"}, 19),
        ("nano_step_outcomes_total", {"step": "split", "outcome": "ok"}, 10),
        ("nano_step_outcomes_total", {"step": "left", "outcome": "ok"}, 10),
        ("nano_step_outcomes_total", {"step": "left", "outcome": "retried"}, 1),
        ("nano_step_outcomes_total", {"step": "right", "outcome": "ok"}, 9),
        ("nano_step_outcomes_total", {"step": "right", "outcome": "retried"}, 1),
        ("nano_step_outcomes_total", {"step": "right", "outcome": "dead_lettered"}, 1),
        ("nano_step_outcomes_total", {"step": "merge", "outcome": "ok"}, 9),
        ("nano_step_outcomes_total", {"step": "merge", "outcome": "waiting"}, 10),
        ("nano_step_redeliveries_total", {"step": "split"}, 0),
        ("nano_step_redeliveries_total", {"step": "left"}, 1),
        ("nano_step_redeliveries_total", {"step": "right"}, 1),
        ("nano_step_redeliveries_total", {"step": "merge"}, 0),
        ("nano_step_in_flight", {"step": "split"}, 0),
        ("nano_step_in_flight", {"step": "merge"}, 0),
        ("nano_step_duration_seconds_count", {"step": "split"}, 10),
        ("nano_step_duration_seconds_count", {"step": "left"}, 11),
        ("nano_step_duration_seconds_count", {"step": "merge"}, 19),
        ("nano_executions_started_total", {}, 10),
        ("nano_executions_completed_total", {}, 9),
        ("nano_executions_failed_total", {}, 1),
        ("nano_execution_duration_seconds_count", {}, 9),
    ]
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def engine_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of the workflow under test whose names ``EXPECTED`` uses."""
    names = {name for name, _ in EXPECTED}
    return {
        key: value
        for key, value in samples(text).items()
        if key[0] in names and ("workflow", "counted") in key[1]
    }


def mismatches(text: str) -> list[str]:
    """What differs from ``EXPECTED`` (empty: the counts are exactly right)."""
    got = engine_samples(text)
    out = []
    for key, value in EXPECTED.items():
        if got.get(key) != value:
            out.append(f"{key[0]}{dict(key[1])}: {got.get(key)} (expected {value})")
    outcomes = {k for k in got if k[0] == "nano_step_outcomes_total" and got[k]}
    for key in outcomes - set(EXPECTED):
        out.append(f"unexpected {key[0]}{dict(key[1])}: {got[key]}")
    return out


async def _host(url: str, steps: list[str]) -> list[dict[str, Any]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nanoservice.nats.backend import nats_backend
    from nanoservice.observe.tracing import ExecutionTraceIds, TracingMiddleware
    from nanoservice.runtime.serve import serve

    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=ExecutionTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tracing = TracingMiddleware(provider.get_tracer("test"))
    async with (
        nats_backend(url) as backend,
        serve(backend, [TABLE], REGISTRY, steps=steps, middleware=[tracing], watch=False),
    ):
        print("ready", flush=True)
        await stop.wait()
    return [
        {
            "name": s.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
            "attributes": dict(s.attributes or {}),
        }
        for s in exporter.get_finished_spans()
    ]


if __name__ == "__main__":
    found = asyncio.run(_host(sys.argv[1], sys.argv[3:]))
    Path(sys.argv[2]).write_text(json.dumps(found))
