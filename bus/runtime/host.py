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

from nanoservice import subjects
from nanoservice.runtime.cancellations import CancelWatcher
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.middleware import Middleware
from nanoservice.runtime.pipeline import Parts, StepPipeline
from nanoservice.runtime.revisions import StepRevisions
from nanoservice.runtime.step import CompiledStep, reachability
from nanoservice.sdk.node import NodeInstance
from nanoservice.sdk.registry import Registry
from nanoservice.subjects import CALLS, CANCEL, JOINS, TABLES
from nanoservice.types import Backend, PullSubscription
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["Host", "callers_of", "freeze_startup_heap", "select_steps"]

log = logging.getLogger("nanoservice.host")


def freeze_startup_heap() -> None:
    """Move everything allocated so far out of the garbage collector's sight, and collect
    the young generation less often.

    A host imports a lot (pydantic, CEL, rich...) and then allocates little that lives
    long; without this every young-generation collection also walks that startup heap
    (measured: ~10 % of a hop's CPU). Each message allocates a few short-lived containers,
    which reference counting frees; a young-generation threshold of 20,000 instead of 700
    makes collections rarer (measured: 3-10 % more events/s). Call once the host has started.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(20_000, older, oldest)


def select_steps(
    tables: Iterable[RoutingTable], only: Iterable[str] | None = None
) -> list[tuple[RoutingTable, StepRoute]]:
    """The steps a host runs: all, or those named ``workflow`` or ``workflow.step``; never
    a step another runtime serves (``runtime`` set)."""
    wanted = set(only) if only is not None else None
    chosen: list[tuple[RoutingTable, StepRoute]] = []
    for table in tables:
        for step in table.steps.values():
            if step.runtime is not None:
                continue
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
    With ``watch`` the host follows the ``nano_tables`` bucket: a new revision of a table is
    used for new executions without a restart, while running ones finish on theirs.
    ``only`` (``workflow`` or ``workflow.step`` names) selects the steps of new tables.
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        steps: list[tuple[RoutingTable, StepRoute]],
        *,
        tables: Sequence[RoutingTable] | None = None,
        middleware: Sequence[Middleware] = (),
        watch: bool = False,
        only: Iterable[str] | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.steps = steps
        known = tables if tables is not None else [t for t, _ in steps]
        self.tables: dict[str, RoutingTable] = {t.workflow: t for t in known}
        self.middleware = list(middleware)
        self.watch = watch
        self.only = list(only) if only is not None else None
        self.revisions: dict[tuple[str, str], StepRevisions] = {}
        self.revision_live = asyncio.Event()
        """Set each time a new revision goes live (tests and banners wait on it)."""
        self._parts: Parts | None = None
        self._subscriptions: list[PullSubscription] = []
        self._instances: list[NodeInstance] = []
        self._cancels: CancelWatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Future[None] | None = None
        self._reach: dict[tuple[str, str], dict[str, set[str]]] = {}

    @property
    def pipelines(self) -> list[StepPipeline]:
        """Every step pipeline this host runs, of every revision it keeps."""
        return [p for r in self.revisions.values() for p in r.pipelines()]

    def live_revisions(self) -> dict[str, str]:
        """The live revision of each workflow this host runs."""
        return {
            wf: self.tables[wf].revision for wf in dict.fromkeys(wf for wf, _ in self.revisions)
        }

    async def _make_parts(self) -> Parts:
        backend = self.backend
        parts = Parts(backend=backend)
        parts.joins = JoinStore(await backend.kv(JOINS))
        parts.calls = await backend.kv(CALLS)
        self._cancels = CancelWatcher()
        await self._cancels.start(await backend.kv(CANCEL))
        parts.cancels = self._cancels
        return parts

    async def start(self) -> None:
        self._parts = await self._make_parts()
        for table, step in self.steps:
            await self._add(table, step)
        self._tasks.append(asyncio.create_task(self._keep_alive()))
        if self.watch:
            ready = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._follow_tables(ready)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 5)

    async def _pipeline(self, table: RoutingTable, step: StepRoute) -> StepPipeline:
        assert self._parts is not None
        node_type = instance = None
        if step.node is not None:
            node_type = self.registry.get(step.node)
            instance = node_type.build(step.config)
            await instance.setup()
            self._instances.append(instance)
        callers = callers_of(self.tables.values()).get(table.workflow, frozenset())
        key = (table.workflow, table.revision)
        if key not in self._reach:
            self._reach[key] = reachability(table)
        compiled = CompiledStep(table, step, callers, self._reach[key])
        return StepPipeline(compiled, node_type, instance, self._parts, self.middleware)

    async def _add(self, table: RoutingTable, step: StepRoute) -> None:
        """Run ``step`` of ``table``: a new revision of a step already consumed, or a new one."""
        pipeline = await self._pipeline(table, step)
        key = (table.workflow, step.name)
        if key in self.revisions:
            self.revisions[key].add(pipeline)
            return
        revisions = self.revisions[key] = StepRevisions(pipeline)
        consumers = [step.consumer]
        if step.join is not None and step.join.timeout is not None:
            consumers.append(subjects.timer_consumer(step.name))
        for consumer in consumers:
            sub = await self.backend.transport.consume(
                table.stream.name,
                consumer,
                revisions.handle,
                max_inflight=step.concurrency,
                inline=revisions.inline,
            )
            self._subscriptions.append(sub)
        log.info(
            "consuming %s.%s (%s, revision %s)",
            table.workflow,
            step.name,
            f"node {step.node}" if step.node else "call",
            table.revision,
        )

    async def use(self, table: RoutingTable) -> bool:
        """Make ``table`` the live revision of its workflow; False if nothing changes."""
        current = self.tables.get(table.workflow)
        chosen = select_steps([table], self.only)
        if (current is not None and current.revision == table.revision) or not chosen:
            return False
        self.tables[table.workflow] = table
        for _, step in chosen:
            await self._add(table, step)
        log.info(
            "workflow %s: revision %s live%s",
            table.workflow,
            table.revision,
            f" (was {current.revision})" if current is not None else "",
        )
        self.revision_live.set()
        return True

    async def _follow_tables(self, ready: asyncio.Event) -> None:
        kv = await self.backend.kv(TABLES)
        async for entry in kv.watch():
            if entry is None:
                ready.set()
                continue
            if entry.value is None:
                continue  # a removed workflow: its running executions still finish
            try:
                table = RoutingTable.from_json(entry.value)
            except Exception as exc:
                log.error("stored table %s cannot be read: %s", entry.key, exc)
                continue
            try:
                await self.use(table)
            except Exception as exc:  # a node that cannot be built: keep the old revision
                log.error(
                    "workflow %s: revision %s not used: %s", table.workflow, table.revision, exc
                )

    async def _keep_alive(self) -> None:
        """Send in-progress for messages running longer than a third of their ack wait."""
        while True:
            pipelines = self.pipelines
            period = min((p.step.step.ack_wait for p in pipelines), default=30.0) / 3
            await asyncio.sleep(period)
            now = time.monotonic()
            for pipeline in pipelines:
                limit = pipeline.step.step.ack_wait / 3
                for delivery, started in list(pipeline.inflight.items()):
                    if now - started >= limit:
                        with contextlib.suppress(Exception):
                            await delivery.in_progress()

    def in_flight(self) -> list[str]:
        """``workflow.step (execution, seconds)`` of the node calls running, oldest first."""
        now = time.monotonic()
        running = [
            (
                started,
                f"{p.step.workflow}.{p.step.name} (execution "
                f"{subjects.execution_of(d.subject)}, {now - started:.0f} s)",
            )
            for p in self.pipelines
            for d, started in list(p.inflight.items())
        ]
        return [text for _, text in sorted(running)]

    @property
    def unsettled(self) -> int:
        """Deliveries being handled or waiting for their PubAcks."""
        return sum(p.settler.unsettled + len(p.inflight) for p in self.pipelines)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop pulling, let in-flight messages settle, release node resources (once: a
        second call waits for the first, or returns if it was cut short)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(drain_timeout))
        if not self._stopping.done():
            await asyncio.shield(self._stopping)

    async def _stop(self, drain_timeout: float) -> None:
        await asyncio.gather(*(s.stop(drain_timeout) for s in self._subscriptions))
        await asyncio.gather(*(p.drain(drain_timeout) for p in self.pipelines))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._cancels is not None:
            await self._cancels.stop()
        for instance in self._instances:
            try:
                await instance.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("node close failed: %s", exc)
