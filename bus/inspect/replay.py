"""Re-running past work on the live code and workflow revision.

A replay publishes a stored trigger (or a step's stored input) again under a **new**
execution id, with ``Nano-Replay-Of: <workflow>.<execution>`` naming the original, which
``trace`` shows. Without ``Nano-Revision`` it runs on the live revision of the target
workflow (``to_workflow`` replays into another workflow, e.g. a fixed copy).

Ranges are read by subject filter on the trigger subjects, from a start sequence or time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.inspect.history import Record, message_at, read, read_all
from nanoservice.nats import claims
from nanoservice.types import EXECUTION, MSG_ID, REPLAY_OF, ROUTE, STEP
from nanoservice.workflow.table import RoutingTable

__all__ = ["Replayed", "Source", "find_trigger", "replay", "step_inputs", "triggers_in_range"]

_SEQ_ID = "s"


@dataclass
class Source:
    """Stored work to replay: a trigger, or the input(s) of one step."""

    workflow: str
    execution: str
    seq: int
    time: float
    step: str | None
    """None for a trigger; else the step whose stored input this is."""
    records: list[Record]


@dataclass
class Replayed:
    """A replay: the original and the new execution, and where it was published."""

    workflow: str
    execution: str
    original_workflow: str
    original: str
    step: str | None
    seq: int


def _table(tables: dict[str, RoutingTable], workflow: str) -> RoutingTable:
    if workflow not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise NanoError(f"no workflow '{workflow}' on this server (workflows: {known})")
    return tables[workflow]


def _execution_of(table: RoutingTable, record: Record) -> str:
    """The id a trigger starts: the `_start` token, its header, else ``s<seq>``."""
    if record.subject.startswith(subjects.start_subject(table.workflow, "")):
        return subjects.execution_of(record.subject)
    return record.headers.get(EXECUTION) or f"{_SEQ_ID}{record.seq}"


async def find_trigger(
    nc: NATS, tables: dict[str, RoutingTable], workflow: str, execution: str
) -> Source:
    """The stored trigger of an execution."""
    table = _table(tables, workflow)
    js = nc.jetstream()
    record: Record | None = None
    try:
        msg = await js.get_last_msg(table.stream.name, subjects.start_subject(workflow, execution))
        record = await message_at(nc, table.stream.name, msg.seq or 0)
    except NotFoundError:
        if execution.startswith(_SEQ_ID) and execution[1:].isdigit():
            record = await message_at(nc, table.stream.name, int(execution[1:]))
    if record is None:
        raise NanoError(
            f"no stored trigger of execution {execution} of {workflow} (unknown, or past the "
            f"retention of stream {table.stream.name}; `nano trace` says which)"
        )
    return Source(workflow, execution, record.seq, record.time, None, [record])


async def step_inputs(
    nc: NATS, tables: dict[str, RoutingTable], workflow: str, execution: str, step: str
) -> Source:
    """The stored input(s) of ``step`` in an execution (a join has one per branch)."""
    table = _table(tables, workflow)
    if step not in table.steps:
        raise NanoError(f"workflow '{workflow}' has no step '{step}'")
    subject = f"{subjects.step_prefix(workflow, step)}.{execution}"
    records = [
        r
        for r in await read_all(nc, table.stream.name, [subject])
        if "Nano-Return" not in r.headers and "Nano-Skip" not in r.headers
    ]
    if not records:
        if step in table.start:
            return await find_trigger(nc, tables, workflow, execution)
        raise NanoError(f"execution {execution} of {workflow} has no stored input of '{step}'")
    body = records[0].json()
    if isinstance(body, dict) and body.get("parent"):
        raise NanoError(
            f"step '{step}' of {execution} ran in a called workflow; replay the caller's execution"
        )
    first = records[0]
    return Source(workflow, execution, first.seq, first.time, step, records)


async def triggers_in_range(
    nc: NATS,
    tables: dict[str, RoutingTable],
    workflow: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
) -> AsyncIterator[Source]:
    """Every stored trigger of ``workflow`` in a time and/or sequence range (inclusive)."""
    table = _table(tables, workflow)
    filters = [subjects.start_subject(workflow, "*"), *table.triggers]
    last = until.timestamp() if until is not None else None
    async for record in read(
        nc,
        table.stream.name,
        list(dict.fromkeys(filters)),
        start_seq=seq_from,
        start_time=since if seq_from is None else None,
    ):
        if seq_to is not None and record.seq > seq_to:
            break
        if last is not None and record.time > last:
            break
        if since is not None and record.time < since.timestamp():
            continue
        yield Source(
            workflow, _execution_of(table, record), record.seq, record.time, None, [record]
        )


async def replay(
    nc: NATS,
    tables: dict[str, RoutingTable],
    source: Source,
    *,
    to_workflow: str | None = None,
    execution: str | None = None,
) -> Replayed:
    """Publish ``source`` again under a new execution id, on the live revision."""
    target = _table(tables, to_workflow or source.workflow)
    new = execution or subjects.new_execution_id()
    origin = f"{source.workflow}.{source.execution}"
    if source.step is None:
        record = source.records[0]
        headers = {EXECUTION: new, MSG_ID: f"{new}:{subjects.START}", REPLAY_OF: origin}
        ack = await claims.publish(
            nc, subjects.start_subject(target.workflow, new), record.data, headers
        )
        return Replayed(target.workflow, new, source.workflow, source.execution, None, ack.seq)
    if source.step not in target.steps:
        raise NanoError(f"workflow '{target.workflow}' has no step '{source.step}'")
    seq = 0
    for record in source.records:
        sender = record.headers.get(STEP, subjects.START)
        step_headers: dict[str, str] = {
            STEP: sender,
            MSG_ID: f"{new}:{sender}:{source.step}",
            REPLAY_OF: origin,
        }
        if ROUTE in record.headers:
            step_headers[ROUTE] = record.headers[ROUTE]
        subject = f"{subjects.step_prefix(target.workflow, source.step)}.{new}"
        seq = (await claims.publish(nc, subject, record.data, step_headers)).seq
    return Replayed(target.workflow, new, source.workflow, source.execution, source.step, seq)


def utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)
