"""Idempotent provisioning: the stream, the step consumers and the stored routing table.

Re-running updates what changed and never duplicates or wipes: streams are created or
updated in place, consumers are created-or-updated by name, the table is put under its
workflow's key in the ``nano_tables`` KV bucket, and the ``nano_claims`` object store's TTL
is raised to the stream's ``max_age`` if lower.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.nats.buckets import SCHEDULES, TABLES, bucket
from nanoservice.nats.claims import claims_store
from nanoservice.workflow.table import RoutingTable, StepRoute

KEYS_ATTEMPTS = 3

__all__ = [
    "Provisioned",
    "consumer_config",
    "consumer_configs",
    "load_tables",
    "provision",
    "stream_config",
]

log = logging.getLogger("nanoservice.nats.provision")


@dataclass
class Provisioned:
    """What one ``provision`` call did."""

    workflow: str
    stream: str
    stream_action: str  # created | updated | unchanged
    consumers: dict[str, str] = field(default_factory=dict)
    stale_consumers: list[str] = field(default_factory=list)


def stream_config(table: RoutingTable, *, replicas: int | None = None) -> StreamConfig:
    s = table.stream
    return StreamConfig(
        name=s.name,
        subjects=list(s.subjects),
        storage=StorageType.FILE,
        max_age=s.max_age,
        max_bytes=s.max_bytes,
        num_replicas=replicas or s.replicas,
        duplicate_window=s.duplicate_window,
        allow_direct=True,
        description=f"nanoservice workflow {table.workflow}",
    )


def consumer_config(step: StepRoute) -> ConsumerConfig:
    return ConsumerConfig(
        name=step.consumer,
        durable_name=step.consumer,
        description=f"step {step.name} (node {step.node})",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=step.ack_wait,
        # One delivery beyond the retry budget lets a host dead-letter a message whose
        # processing killed the previous host, instead of the server silently dropping it.
        max_deliver=step.retry.max_attempts + 1,
        filter_subjects=list(step.filter_subjects),
        # Messages nak'ed with a delay (waiting retries) hold ack-pending slots until they
        # are redelivered: leave room for many, beyond what a host pulls at once.
        max_ack_pending=max(20_000, step.concurrency * 4),
        max_waiting=512,
    )


def timer_consumer_config(table: RoutingTable, step: StepRoute) -> ConsumerConfig:
    """The consumer of a timed join's timers: apart from the join's own, so thousands of
    waiting timers (each holding an ack-pending slot) never stall branch arrivals."""
    name = subjects.timer_consumer(step.name)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"join timers of step {step.name}",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=step.ack_wait,
        max_deliver=-1,
        filter_subject=subjects.timer_prefix(table.workflow, step.name) + ".*",
        max_ack_pending=1_000_000,
        max_waiting=512,
    )


def consumer_configs(table: RoutingTable) -> list[ConsumerConfig]:
    """Every durable consumer a workflow needs: one per step, one per timed join."""
    configs = []
    for step in table.steps.values():
        configs.append(consumer_config(step))
        if step.join is not None and step.join.timeout is not None:
            configs.append(timer_consumer_config(table, step))
    return configs


async def provision(
    js: JetStreamContext, table: RoutingTable, *, replicas: int | None = None
) -> Provisioned:
    """Create or update the workflow's stream, consumers and stored table."""
    config = stream_config(table, replicas=replicas)
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        action = "created"
    else:
        current = info.config
        if (
            sorted(current.subjects or []) != sorted(config.subjects or [])
            or current.max_age != config.max_age
            or current.max_bytes != config.max_bytes
            or current.duplicate_window != config.duplicate_window
            or (current.num_replicas or 1) != config.num_replicas
        ):
            try:
                await js.update_stream(config)
            except Exception as exc:
                raise NanoError(f"cannot update stream {config.name}: {exc}") from exc
            action = "updated"
        else:
            action = "unchanged"
    result = Provisioned(workflow=table.workflow, stream=config.name, stream_action=action)
    existing = {c.name for c in await js.consumers_info(config.name)}
    wanted = consumer_configs(table)
    for consumer in wanted:
        assert consumer.name is not None
        await js.add_consumer(config.name, consumer)
        result.consumers[consumer.name] = "updated" if consumer.name in existing else "created"
    result.stale_consumers = sorted(existing - {c.name for c in wanted if c.name})
    kv = await bucket(js, TABLES, replicas=replicas or table.stream.replicas)
    # claim checks live as long as the messages that reference them
    await claims_store(js, replicas=config.num_replicas or 1, max_age=config.max_age)
    if table.schedules:  # where schedulers record the last tick started
        await bucket(js, SCHEDULES, replicas=replicas or table.stream.replicas)
    await kv.put(table.workflow, table.to_json())
    return result


async def load_tables(js: JetStreamContext) -> dict[str, RoutingTable]:
    """Every routing table stored in the cluster, by workflow name.

    The keys come from the bucket stream's per-subject counts (one request), not from
    nats-py's ``kv.keys()``: that watcher can end before its first messages are handled
    on a busy client and then reports an empty bucket."""
    try:
        kv = await js.key_value(TABLES)
    except BucketNotFoundError:
        return {}
    prefix = f"$KV.{TABLES}."
    subjects: dict[str, int] = {}
    for attempt in range(1, KEYS_ATTEMPTS + 1):
        try:
            info = await js.stream_info(f"KV_{TABLES}", subjects_filter=f"{prefix}>")
            subjects = info.state.subjects or {}
            break
        except TimeoutError:  # a busy server: never taken for "no tables"
            if attempt == KEYS_ATTEMPTS:
                raise NanoError(
                    f"the server did not list the routing tables ({TABLES}) in time"
                ) from None
    tables: dict[str, RoutingTable] = {}
    for subject in sorted(subjects):
        key = subject.removeprefix(prefix)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # deleted (a delete marker is the last message)
            continue
        if entry.value:
            tables[key] = RoutingTable.from_json(entry.value)
    return tables
