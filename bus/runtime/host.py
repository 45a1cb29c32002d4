"""The host: runs the step pipelines of a set of steps in one process, over one backend.

A host is the same code in every deployment mode: monolith runs all steps, micro a group,
nano one. It builds a :class:`~nanoservice.runtime.pipeline.StepPipeline` per step,
consumes each step's durable consumer (and a timed join's timer consumer) through the
backend's transport, and keeps long-running messages alive with in-progress heartbeats so a
step's ``timeout`` can be longer than its consumer's ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from nanoservice import subjects
from nanoservice.runtime.cancellations import CancelWatcher
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.middleware import Middleware
from nanoservice.runtime.pipeline import Parts, StepPipeline
from nanoservice.runtime.step import CompiledStep
from nanoservice.sdk.node import NodeInstance
from nanoservice.sdk.registry import Registry
from nanoservice.subjects import CALLS, CANCEL, JOINS
from nanoservice.types import Backend, PullSubscription
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["Host", "callers_of", "freeze_startup_heap", "select_steps"]

log = logging.getLogger("nanoservice.host")


def freeze_startup_heap() -> None:
    """Move everything allocated so far out of the garbage collector's sight.

    A host imports a lot (pydantic, CEL, rich...) and then allocates little that lives
    long; without this every young-generation collection also walks that startup heap
    (measured: ~10 % of a hop's CPU). Call once the host has started.
    """
    gc.collect()
    gc.freeze()


def select_steps(
    tables: Iterable[RoutingTable], only: Iterable[str] | None = None
) -> list[tuple[RoutingTable, StepRoute]]:
    """The steps a host runs: all, or those named ``workflow`` or ``workflow.step``."""
    wanted = set(only) if only is not None else None
    chosen: list[tuple[RoutingTable, StepRoute]] = []
    for table in tables:
        for step in table.steps.values():
            if (
                wanted is None
                or table.workflow in wanted
                or f"{table.workflow}.{step.name}" in wanted
            ):
                chosen.append((table, step))
    return chosen


def callers_of(tables: Iterable[RoutingTable]) -> dict[str, frozenset[str]]:
    """For each called workflow, the step subject prefixes (with a dot) that call it."""
    found: dict[str, set[str]] = {}
    for table in tables:
        for step in table.steps.values():
            if step.call is not None and step.call.wait:
                found.setdefault(step.call.workflow, set()).add(step.subject + ".")
    return {wf: frozenset(prefixes) for wf, prefixes in found.items()}


class Host:
    """Runs the consumers of the given steps over one backend.

    ``tables`` are every table the host knows (to tell which steps may call which
    workflow); by default those of ``steps``. ``middleware`` wraps every step's handling.
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        steps: list[tuple[RoutingTable, StepRoute]],
        *,
        tables: Sequence[RoutingTable] | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.steps = steps
        known = (
            list(tables) if tables is not None else list({t.workflow: t for t, _ in steps}.values())
        )
        self.callers = callers_of(known)
        self.middleware = list(middleware)
        self.pipelines: list[StepPipeline] = []
        self._subscriptions: list[PullSubscription] = []
        self._instances: list[NodeInstance] = []
        self._cancels: CancelWatcher | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    async def _parts(self) -> Parts:
        backend = self.backend
        parts = Parts(backend=backend)
        if any(step.join for _, step in self.steps):
            parts.joins = JoinStore(await backend.kv(JOINS))
        if any(step.call for _, step in self.steps):
            parts.calls = await backend.kv(CALLS)
        self._cancels = CancelWatcher()
        await self._cancels.start(await backend.kv(CANCEL))
        parts.cancels = self._cancels
        return parts

    async def start(self) -> None:
        parts = await self._parts()
        for table, step in self.steps:
            node_type = instance = None
            if step.node is not None:
                node_type = self.registry.get(step.node)
                instance = node_type.build(step.config)
                await instance.setup()
                self._instances.append(instance)
            compiled = CompiledStep(table, step, self.callers.get(table.workflow, frozenset()))
            self.pipelines.append(
                StepPipeline(compiled, node_type, instance, parts, self.middleware)
            )
        transport = self.backend.transport
        for pipeline in self.pipelines:
            table, step = pipeline.step.table, pipeline.step.step
            consumers = [step.consumer]
            if step.join is not None and step.join.timeout is not None:
                consumers.append(subjects.timer_consumer(step.name))
            for consumer in consumers:
                sub = await transport.consume(
                    table.stream.name,
                    consumer,
                    pipeline.handler,
                    max_inflight=step.concurrency,
                    inline=pipeline.inline,
                )
                self._subscriptions.append(sub)
            log.info(
                "consuming %s.%s (%s, revision %s)",
                table.workflow,
                step.name,
                f"node {step.node}" if step.node else "call",
                table.revision,
            )
        self._heartbeat = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Send in-progress for messages running longer than a third of their ack wait."""
        period = min((p.step.step.ack_wait for p in self.pipelines), default=30.0) / 3
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for pipeline in self.pipelines:
                limit = pipeline.step.step.ack_wait / 3
                for delivery, started in list(pipeline.inflight.items()):
                    if now - started >= limit:
                        with contextlib.suppress(Exception):
                            await delivery.in_progress()

    @property
    def unsettled(self) -> int:
        """Deliveries handled and still waiting for their PubAcks."""
        return sum(p.settler.unsettled + len(p.inflight) for p in self.pipelines)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop pulling, let in-flight messages settle, release node resources."""
        await asyncio.gather(*(s.stop(drain_timeout) for s in self._subscriptions))
        await asyncio.gather(*(p.drain(drain_timeout) for p in self.pipelines))
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._cancels is not None:
            await self._cancels.stop()
        for instance in self._instances:
            try:
                await instance.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("node close failed: %s", exc)

    def describe(self) -> list[dict[str, Any]]:
        """What this host runs: workflow, step, revision (for banners and status)."""
        return [
            {"workflow": p.step.workflow, "step": p.step.name, "revision": p.step.revision}
            for p in self.pipelines
        ]
