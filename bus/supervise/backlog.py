"""A group's backlog through the JetStream API: pending + ack-pending of its consumers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nats.js import JetStreamContext

from nanoservice.workflow.table import RoutingTable

__all__ = ["consumers_of", "read_backlog"]


def consumers_of(steps: Iterable[str], tables: Mapping[str, RoutingTable]) -> list[tuple[str, str]]:
    """(stream, durable consumer) of each ``workflow.step`` in the live ``tables``."""
    found = []
    for name in steps:
        workflow, _, step = name.partition(".")
        table = tables.get(workflow)
        if table is not None and step in table.steps:
            found.append((table.stream.name, table.steps[step].consumer))
    return found


async def read_backlog(js: JetStreamContext, consumers: Iterable[tuple[str, str]]) -> int:
    """Messages waiting (``num_pending``) plus delivered and not yet acked."""
    total = 0
    for stream, consumer in consumers:
        info = await js.consumer_info(stream, consumer)
        total += (info.num_pending or 0) + (info.num_ack_pending or 0)
    return total
