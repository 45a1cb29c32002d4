"""Metrics middleware on the in-memory bus: after the known run (fan-out + join, retries,
a dead letter, ten executions) every count per step and workflow is exactly right."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from nanoservice.observe.metrics import EngineMetrics, Histogram, MetricsMiddleware, outcome_of
from nanoservice.runtime.decision import DeadLetter, Done, Publish, Retry, Wait
from nanoservice.runtime.envelope import ErrorInfo
from nanoservice.testing.memory import MemoryBus
from tests.integration.observe_flow import EXECUTIONS, REGISTRY, TABLE, mismatches


async def test_the_known_run_gives_exact_counts_per_step() -> None:
    metrics = EngineMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY, middleware=[MetricsMiddleware(metrics)]):
        outcomes = await asyncio.gather(
            *(bus.run("counted", {"n": e}, execution=e) for e in EXECUTIONS)
        )
        assert sorted(o.execution for o in outcomes if not o.ok) == ["n7"]
        for _ in range(100):  # n7's left branch may still be on its way to the join
            if not mismatches(generate_latest(registry).decode()):
                break
            await asyncio.sleep(0.02)
    assert mismatches(generate_latest(registry).decode()) == []


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 3.0):
        h.observe(value)
    assert h.buckets() == [("0.1", 1), ("1.0", 3), ("+Inf", 4)]
    assert h.sum == 4.6


def test_outcome_labels() -> None:
    error = ErrorInfo("E", "m")
    assert outcome_of(Publish([], outcome="error_route")) == "error_route"
    assert outcome_of(Done(outcome="waiting")) == "waiting"
    assert outcome_of(Retry(0.1, error)) == "retried"
    assert outcome_of(Wait(1.0)) == "waiting"
    assert outcome_of(DeadLetter(error)) == "dead_lettered"
    assert outcome_of(DeadLetter(ErrorInfo("Cancelled", "execution cancelled"))) == "cancelled"
