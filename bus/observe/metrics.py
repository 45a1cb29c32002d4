"""Prometheus metrics of the steps a host runs, as middleware on the step pipeline.

Counting happens on the event loop with plain integers (no lock, no label lookup per
message: each step's counters are made once, in ``setup``); :class:`EngineMetrics` turns
them into metric families when Prometheus scrapes, from the scrape thread.

Exported (labels in braces; never the execution id):

- ``nano_step_messages_total{workflow,step}``: deliveries handled
- ``nano_step_outcomes_total{workflow,step,outcome}``: what handling decided (``ok``,
  ``retried``, ``dead_lettered``, ``cancelled``, ``waiting``, ``skipped``, ``ignored``,
  ``error_route``, ``timeout_route``, ``call``)
- ``nano_step_duration_seconds{workflow,step}``: histogram of handling one delivery
  (decode, node, routing), by outcome-independent step
- ``nano_step_in_flight{workflow,step}``: deliveries being handled now
- ``nano_step_redeliveries_total{workflow,step}``: deliveries the server made again
- ``nano_executions_started_total{workflow}``, ``nano_executions_completed_total{workflow}``,
  ``nano_executions_failed_total{workflow}`` (dead-lettered, cancellations apart)
- ``nano_execution_duration_seconds{workflow}``: histogram, trigger handled to result sent
  (from the ``Nano-Started`` header this middleware adds to the messages it sends)
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from nanoservice.observe.where import is_trigger
from nanoservice.runtime.decision import DeadLetter, Decision, Done, Publish, Retry, Wait
from nanoservice.runtime.middleware import MessageCall, Middleware
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import Delivery

__all__ = [
    "DURATION_BUCKETS",
    "STARTED",
    "EngineMetrics",
    "Histogram",
    "MetricsMiddleware",
    "outcome_of",
]

STARTED = "Nano-Started"
"""Header: when the execution's trigger was handled (Unix seconds), for its duration."""

DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
)  # fmt: skip


class Histogram:
    """Counts per bucket (not cumulative), sum and count: an observation is one bisect."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last, as Prometheus wants them."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class _Step:
    """One step's counters."""

    __slots__ = ("duration", "in_flight", "messages", "outcomes", "redeliveries")

    def __init__(self) -> None:
        self.messages = 0
        self.redeliveries = 0
        self.in_flight = 0
        self.outcomes: dict[str, int] = {}
        self.duration = Histogram()


class _Workflow:
    __slots__ = ("completed", "duration", "failed", "started")

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.duration = Histogram()


def outcome_of(decision: Decision) -> str:
    """The ``outcome`` label of a decision."""
    kind = type(decision)
    if kind is Publish or kind is Done:
        return decision.outcome  # type: ignore[union-attr]
    if kind is Retry:
        return "retried"
    if kind is Wait:
        return "waiting"
    assert isinstance(decision, DeadLetter)
    return "cancelled" if decision.error.type == "Cancelled" else "dead_lettered"


class EngineMetrics(Collector):
    """The counters of every step and workflow this process runs; a Prometheus collector.

    Register it once (``registry.register(metrics)``); steps of several table revisions
    share their counters (labels are workflow and step, not the revision).
    """

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], _Step] = {}
        self.workflows: dict[str, _Workflow] = {}

    def step(self, workflow: str, step: str) -> _Step:
        key = (workflow, step)
        if key not in self.steps:
            self.steps[key] = _Step()
        return self.steps[key]

    def workflow(self, workflow: str) -> _Workflow:
        if workflow not in self.workflows:
            self.workflows[workflow] = _Workflow()
        return self.workflows[workflow]

    def collect(self) -> Iterator[Any]:
        steps = list(self.steps.items())
        labels = ["workflow", "step"]
        messages = CounterMetricFamily(
            "nano_step_messages", "Deliveries a step handled.", labels=labels
        )
        redeliveries = CounterMetricFamily(
            "nano_step_redeliveries",
            "Deliveries the server made again (attempt > 1).",
            labels=labels,
        )
        outcomes = CounterMetricFamily(
            "nano_step_outcomes",
            "What handling a delivery decided.",
            labels=[*labels, "outcome"],
        )
        in_flight = GaugeMetricFamily(
            "nano_step_in_flight", "Deliveries being handled now.", labels=labels
        )
        duration = HistogramMetricFamily(
            "nano_step_duration_seconds",
            "Time to handle one delivery (decode, node, routing).",
            labels=labels,
        )
        for (wf, name), s in steps:
            key = [wf, name]
            messages.add_metric(key, s.messages)
            redeliveries.add_metric(key, s.redeliveries)
            in_flight.add_metric(key, s.in_flight)
            for outcome, count in list(s.outcomes.items()):
                outcomes.add_metric([*key, outcome], count)
            duration.add_metric(key, s.duration.buckets(), s.duration.sum)
        yield from (messages, outcomes, redeliveries, in_flight, duration)
        yield from self._executions()

    def _executions(self) -> Iterator[Any]:
        started = CounterMetricFamily(
            "nano_executions_started", "Executions started (triggers handled).", labels=["workflow"]
        )
        completed = CounterMetricFamily(
            "nano_executions_completed", "Executions that sent their result.", labels=["workflow"]
        )
        failed = CounterMetricFamily(
            "nano_executions_failed", "Executions dead-lettered.", labels=["workflow"]
        )
        duration = HistogramMetricFamily(
            "nano_execution_duration_seconds",
            "Time from handling the trigger to sending the result.",
            labels=["workflow"],
        )
        for wf, w in list(self.workflows.items()):
            started.add_metric([wf], w.started)
            completed.add_metric([wf], w.completed)
            failed.add_metric([wf], w.failed)
            duration.add_metric([wf], w.duration.buckets(), w.duration.sum)
        yield from (started, completed, failed, duration)

    def describe(self) -> Iterator[Any]:
        return iter(())  # families are dynamic; no duplicate check needed at registration


class MetricsMiddleware(Middleware):
    """Counts every delivery of every step, its outcome and how long handling took."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics
        self._by_step: dict[CompiledStep, tuple[_Step, _Workflow, str]] = {}

    def setup(self, step: CompiledStep) -> None:
        self._by_step[step] = (
            self.metrics.step(step.workflow, step.name),
            self.metrics.workflow(step.workflow),
            f"nano.{step.workflow}._done.",
        )

    async def message(
        self, step: CompiledStep, delivery: Delivery, call_next: MessageCall
    ) -> Decision:
        counters, workflow, done = self._by_step[step]
        counters.messages += 1
        if delivery.delivered > 1:
            counters.redeliveries += 1
        trigger = is_trigger(step, delivery)
        if trigger:
            started = repr(time.time())
            if delivery.delivered == 1:
                workflow.started += 1
        else:
            started = delivery.headers.get(STARTED, "")
        counters.in_flight += 1
        began = time.perf_counter()
        try:
            decision = await call_next(delivery)
        finally:
            counters.in_flight -= 1
        counters.duration.observe(time.perf_counter() - began)
        outcome = outcome_of(decision)
        outcomes = counters.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if type(decision) is Publish:
            for message in decision.messages:
                if started:
                    message.headers[STARTED] = started
                if message.subject.startswith(done):
                    workflow.completed += 1
                    if started:
                        workflow.duration.observe(_since(started))
        elif outcome == "dead_lettered":
            workflow.failed += 1
        return decision


def _since(started: str) -> float:
    """Seconds since the Unix time ``started`` (0 if it is not a number)."""
    try:
        return max(0.0, time.time() - float(started))
    except ValueError:
        return 0.0
