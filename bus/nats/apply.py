"""``nano deploy apply``: provision a project on any NATS server and say what changed.

It runs :func:`~nanoservice.nats.provision.provision` (idempotent: create or update in
place, never wipe) for each table, reading the server's state before and after, so every
stream, consumer and routing table is reported as created, updated or unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from nanoservice.nats.buckets import TABLES
from nanoservice.nats.provision import provision
from nanoservice.workflow.table import RoutingTable

__all__ = ["Change", "apply", "summary"]


@dataclass(frozen=True)
class Change:
    """One object and what applying did to it."""

    kind: str  # stream | consumer | table
    name: str
    action: str  # created | updated | unchanged | left (a consumer of a removed step)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}"


async def _consumers(js: JetStreamContext, stream: str) -> dict[str, dict[str, Any]]:
    try:
        infos = await js.consumers_info(stream)
    except NotFoundError:
        return {}
    return {c.name: c.config.as_dict() for c in infos if c.name}


async def _stored_table(js: JetStreamContext, workflow: str) -> bytes | None:
    try:
        kv = await js.key_value(TABLES)
        entry = await kv.get(workflow)
    except NotFoundError:  # no bucket, no key, or a deleted key
        return None
    return entry.value or None


def _action(before: object, after: object) -> str:
    if before is None:
        return "created"
    return "unchanged" if before == after else "updated"


async def apply(
    js: JetStreamContext, tables: Sequence[RoutingTable], *, replicas: int | None = None
) -> list[Change]:
    """Provision every table (streams with ``replicas``, default the table's) and report."""
    changes: list[Change] = []
    for table in tables:
        stream = table.stream.name
        consumers_before = await _consumers(js, stream)
        table_before = await _stored_table(js, table.workflow)
        done = await provision(js, table, replicas=replicas)
        consumers_after = await _consumers(js, stream)
        changes.append(Change("stream", stream, done.stream_action))
        for name in done.consumers:
            changes.append(
                Change(
                    "consumer",
                    f"{stream}/{name}",
                    _action(consumers_before.get(name), consumers_after.get(name)),
                )
            )
        changes += [Change("consumer", f"{stream}/{n}", "left") for n in done.stale_consumers]
        stored = table.to_json()
        changes.append(
            Change(
                "table",
                f"{table.workflow} (revision {table.revision})",
                _action(table_before, stored),
            )
        )
    return changes


def summary(changes: Sequence[Change]) -> str:
    """``2 created, 0 updated, 5 unchanged`` (and consumers left in place, if any)."""
    count = {a: sum(c.action == a for c in changes) for a in ("created", "updated", "unchanged")}
    text = ", ".join(f"{n} {a}" for a, n in count.items())
    left = sum(c.action == "left" for c in changes)
    return text + (f", {left} consumers of removed steps left in place" if left else "")
