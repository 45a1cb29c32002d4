"""What is running: workflows, their streams and each step's consumer, as plain data.

Only the engine's own things are shown: the streams of stored workflows and the durable
consumers their tables name (KV and object-store streams, and the ephemeral consumers that
``trace``, ``dlq`` and ``replay`` read with, are left out). A step's ``pulling`` is the
number of pull requests waiting on its consumer: each host running the step keeps one open.
``rate`` (messages acknowledged per second) needs two snapshots: ``with_rates``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from nanoservice import subjects
from nanoservice.inspect.history import bounds
from nanoservice.workflow.table import RoutingTable

__all__ = ["ConsumerStatus", "Status", "WorkflowStatus", "snapshot", "with_rates"]


@dataclass
class ConsumerStatus:
    step: str
    consumer: str
    pending: int
    """Stored, not yet delivered."""
    ack_pending: int
    """Delivered, not yet acknowledged (running, or waiting for a retry)."""
    redelivered: int
    pulling: int
    acked: int
    """Consumer sequence of the acknowledgement floor (messages done so far)."""
    rate: float | None = None


@dataclass
class WorkflowStatus:
    workflow: str
    revision: str
    stream: str
    messages: int = 0
    bytes: int = 0
    age: float | None = None
    """Seconds since the oldest message still held was stored."""
    dead_letters: int = 0
    steps: list[ConsumerStatus] = field(default_factory=list)
    missing: bool = False
    """The table is stored but its stream is not (not provisioned on this server)."""


@dataclass
class Status:
    time: float
    workflows: list[WorkflowStatus]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def snapshot(nc: NATS, tables: dict[str, RoutingTable]) -> Status:
    js = nc.jetstream()
    now = time.time()
    found: list[WorkflowStatus] = []
    for name in sorted(tables):
        table = tables[name]
        wf = WorkflowStatus(name, table.revision, table.stream.name)
        found.append(wf)
        try:
            info = await js.stream_info(
                table.stream.name, subjects_filter=subjects.dlq_subject(name, "*")
            )
        except NotFoundError:
            wf.missing = True
            continue
        state = info.state
        wf.messages, wf.bytes = state.messages, state.bytes
        wf.dead_letters = sum((state.subjects or {}).values())
        held = await bounds(nc, table.stream.name)
        if held.first_time is not None:
            wf.age = round(now - held.first_time, 3)
        wanted = {step.consumer: step.name for step in table.steps.values()}
        wanted.update(
            {subjects.timer_consumer(s.name): f"{s.name} (timers)" for s in table.steps.values()}
        )
        for consumer in await js.consumers_info(table.stream.name):
            cname = consumer.name
            if cname not in wanted:
                continue
            wf.steps.append(
                ConsumerStatus(
                    step=wanted[cname],
                    consumer=cname,
                    pending=consumer.num_pending or 0,
                    ack_pending=consumer.num_ack_pending or 0,
                    redelivered=consumer.num_redelivered or 0,
                    pulling=consumer.num_waiting or 0,
                    acked=(consumer.ack_floor.consumer_seq or 0) if consumer.ack_floor else 0,
                )
            )
        order = list(table.steps)
        wf.steps.sort(key=lambda c: order.index(c.step) if c.step in order else len(order))
    return Status(now, found)


def with_rates(before: Status, after: Status) -> Status:
    """``after`` with each consumer's rate since ``before`` (acknowledged per second)."""
    elapsed = after.time - before.time
    if elapsed <= 0:
        return after
    old = {(wf.workflow, c.consumer): c.acked for wf in before.workflows for c in wf.steps}
    for wf in after.workflows:
        for c in wf.steps:
            if (wf.workflow, c.consumer) in old:
                c.rate = round(max(0, c.acked - old[(wf.workflow, c.consumer)]) / elapsed, 2)
    return after
