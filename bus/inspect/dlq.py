"""Dead letters: list them, show one, re-drive them at the failed step, purge them.

A dead letter (``nano.<wf>._dlq.<execution>``) carries the failed message: its subject,
headers and body (docs/protocol.md). ``retry`` publishes that message again to the failed
step's subject, with

- a new ``Nats-Msg-Id`` (``<original>:retry<dead letter seq>``): the original id may still
  be inside the duplicate window, where the server would drop it; the same dead letter
  retried twice gets the same id, so it is still delivered once;
- no ``Nano-Revision`` (unless ``same_revision``): it runs on the live revision, so a fix
  made to the workflow applies; the step must exist there;
- no ``Nano-Attempt``: the retry has the step's whole retry budget.

The body is the stored original (``stream_seq``) while the stream holds it, else the copy in
the dead letter. Once the re-driven message is stored, the dead letter is deleted, so it is
never retried twice (``Nano-Retry-Of`` on the re-driven message keeps why it
failed); if the step fails again, a new dead letter appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.inspect.history import Record, message_at, read_all
from nanoservice.nats import claims
from nanoservice.types import ATTEMPT, CLAIM, CLAIM_SIZE, MSG_ID, REVISION
from nanoservice.workflow.table import RoutingTable

__all__ = ["RETRY_OF", "DeadLetterInfo", "Retried", "dead_letters", "purge", "retry"]

RETRY_OF = "Nano-Retry-Of"
"""On a re-driven message: ``<dead letter seq>; <attempts> attempts; <type>: <message>``
(the dead letter itself is deleted, so the trace still shows why the step failed before)."""


@dataclass
class DeadLetterInfo:
    """One dead letter as stored: where, when, why, and the failed message."""

    workflow: str
    execution: str
    seq: int
    time: float
    step: str
    error: dict[str, Any]
    attempts: int
    subject: str
    headers: dict[str, str] = field(default_factory=dict)
    data: Any = None
    stream_seq: int = 0
    truncated: bool = False


@dataclass
class Retried:
    """A re-driven dead letter: where it went and its new de-duplication id."""

    workflow: str
    execution: str
    step: str
    subject: str
    msg_id: str
    seq: int
    """The stream sequence of the re-driven message."""
    revision: str


def _info(workflow: str, record: Record) -> DeadLetterInfo:
    body = record.json()
    if not isinstance(body, dict):
        body = {"error": {"type": "Unknown", "message": str(body)}}
    return DeadLetterInfo(
        workflow=workflow,
        execution=subjects.execution_of(record.subject),
        seq=record.seq,
        time=record.time,
        step=str(body.get("step", "")),
        error=dict(body.get("error") or {}),
        attempts=int(body.get("attempts") or 0),
        subject=str(body.get("subject", "")),
        headers=dict(body.get("headers") or {}),
        data=body.get("data"),
        stream_seq=int(body.get("stream_seq") or 0),
        truncated=bool(body.get("truncated", False)),
    )


async def dead_letters(
    nc: NATS,
    tables: dict[str, RoutingTable],
    workflows: Sequence[str] | None = None,
    *,
    execution: str | None = None,
    step: str | None = None,
) -> list[DeadLetterInfo]:
    """The dead letters of ``workflows`` (default all), optionally of one execution or step."""
    found: list[DeadLetterInfo] = []
    for name in workflows or sorted(tables):
        table = _table(tables, name)
        dlq = subjects.dlq_subject(name, execution or "*")
        for record in await read_all(nc, table.stream.name, [dlq]):
            info = _info(name, record)
            if step is None or info.step == step:
                found.append(info)
    return found


async def retry(
    nc: NATS,
    tables: dict[str, RoutingTable],
    letters: Sequence[DeadLetterInfo],
    *,
    same_revision: bool = False,
) -> list[Retried]:
    """Re-drive each dead letter at its failed step, then delete it (module docstring)."""
    done: list[Retried] = []
    js = nc.jetstream()
    for letter in letters:
        table = _table(tables, letter.workflow)
        if letter.step not in table.steps:
            raise NanoError(
                f"dead letter {letter.seq} of {letter.workflow} failed at step '{letter.step}', "
                f"which the live revision {table.revision} has no longer"
            )
        if not letter.subject:
            raise NanoError(f"dead letter {letter.seq} does not say which message failed")
        headers, data = await _original(nc, table, letter)
        for name in (ATTEMPT, CLAIM, CLAIM_SIZE):
            headers.pop(name, None)
        if not same_revision:
            headers.pop(REVISION, None)
        base = headers.get(MSG_ID) or f"{letter.execution}:{letter.step}"
        headers[MSG_ID] = f"{base}:retry{letter.seq}"
        why = f"{letter.error.get('type', 'Error')}: {letter.error.get('message', '')}"
        headers[RETRY_OF] = f"{letter.seq}; {letter.attempts} attempts; {why}"[:512]
        ack = await claims.publish(nc, letter.subject, data, headers)
        await js.delete_msg(table.stream.name, letter.seq)
        done.append(
            Retried(
                letter.workflow,
                letter.execution,
                letter.step,
                letter.subject,
                headers[MSG_ID],
                ack.seq,
                headers.get(REVISION, table.revision),
            )
        )
    return done


async def _original(
    nc: NATS, table: RoutingTable, letter: DeadLetterInfo
) -> tuple[dict[str, str], bytes]:
    """The failed message's headers and exact body: from the stream while it holds it."""
    if letter.stream_seq:
        stored = await message_at(nc, table.stream.name, letter.stream_seq)
        if stored is not None and stored.subject == letter.subject:
            return dict(stored.headers), stored.data
    if letter.truncated:
        raise NanoError(
            f"dead letter {letter.seq}: the failed message was too big to keep in the dead "
            f"letter and has aged out of stream {table.stream.name} (seq {letter.stream_seq})"
        )
    data = b"" if letter.data is None else msgspec.json.encode(letter.data)
    return dict(letter.headers), data


async def purge(
    nc: NATS, tables: dict[str, RoutingTable], letters: Sequence[DeadLetterInfo]
) -> int:
    """Delete these dead letters; returns how many were deleted."""
    js = nc.jetstream()
    for letter in letters:
        await js.delete_msg(_table(tables, letter.workflow).stream.name, letter.seq)
    return len(letters)


def _table(tables: dict[str, RoutingTable], workflow: str) -> RoutingTable:
    if workflow not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise NanoError(f"no workflow '{workflow}' on this server (workflows: {known})")
    return tables[workflow]
