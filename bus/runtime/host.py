"""The host: runs the consumers of a set of steps in one process.

A host is the same code in every deployment mode: monolith runs all steps, micro a group,
nano one. It builds a :class:`~nanoservice.runtime.runner.StepRunner` per step, consumes each step's
durable consumer through the transport, and keeps long-running messages alive with
in-progress heartbeats so a step's ``timeout`` can be longer than its consumer's ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterable
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from nanoservice.nats.buckets import CALLS, JOINS, bucket
from nanoservice.runtime.cancel import CancelWatcher
from nanoservice.runtime.client import Client
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.runner import Services, StepRunner
from nanoservice.sdk.node import NodeInstance
from nanoservice.sdk.registry import Registry
from nanoservice.types import Transport
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["Host", "freeze_startup_heap", "select_steps"]

log = logging.getLogger("nanoservice.runtime.host")


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


class Host:
    """Runs the consumers of the given steps over one transport.

    ``nc`` (the NATS connection) enables what needs KV or a client: joins, sub-workflow
    calls, for-each over calls and cancellation. Without it those steps fail clearly.
    ``services`` replaces all of that (the in-memory bus passes its own).
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        steps: list[tuple[RoutingTable, StepRoute]],
        *,
        nc: NATS | None = None,
        services: Services | None = None,
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.steps = steps
        self.nc = nc
        self._given = services
        self.js: JetStreamContext | None = nc.jetstream() if nc is not None else None
        self.runners: list[StepRunner] = []
        self._subscriptions: list[Any] = []
        self._instances: list[NodeInstance] = []
        self._cancels: CancelWatcher | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    async def _services(self) -> Services:
        if self._given is not None:
            return self._given
        services = Services(self.transport)
        if self.js is None or self.nc is None:
            return services
        services.client = Client(self.nc)
        replicas = max((t.stream.replicas for t, _ in self.steps), default=1)
        if any(step.join for _, step in self.steps):
            services.joins = JoinStore(await bucket(self.js, JOINS, replicas=replicas))
        if any(step.call for _, step in self.steps):
            services.calls = await bucket(self.js, CALLS, replicas=replicas)
        self._cancels = CancelWatcher()
        await self._cancels.start(self.js)
        services.cancels = self._cancels
        return services

    async def start(self) -> None:
        services = await self._services()
        for table, step in self.steps:
            node_type = instance = None
            if step.node is not None:
                node_type = self.registry.get(step.node)
                instance = node_type.build(step.config)
                await instance.setup()
                self._instances.append(instance)
            self.runners.append(StepRunner(table, step, node_type, instance, services))
        for runner in self.runners:
            sub = await self.transport.consume(
                runner.table.stream.name,
                runner.step.consumer,
                runner.handler,
                max_inflight=runner.step.concurrency,
                inline=runner.inline,
            )
            self._subscriptions.append(sub)
            log.info(
                "consuming %s.%s (%s)",
                runner.table.workflow,
                runner.step.name,
                f"node {runner.step.node}" if runner.step.node else "call",
            )
        self._heartbeat = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Send in-progress for messages running longer than a third of their ack wait."""
        period = min((r.step.ack_wait for r in self.runners), default=30.0) / 3
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for runner in self.runners:
                limit = runner.step.ack_wait / 3
                for delivery, started in list(runner.inflight.items()):
                    if now - started >= limit:
                        with contextlib.suppress(Exception):
                            await delivery.in_progress()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop pulling, let in-flight messages settle, release node resources."""
        await asyncio.gather(*(s.stop(drain_timeout) for s in self._subscriptions))
        await asyncio.gather(*(r.drain(drain_timeout) for r in self.runners))
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._cancels is not None:
            await self._cancels.stop()
        for instance in self._instances:
            try:
                await instance.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("node close failed: %s", exc)
