"""The timeline of one execution, rebuilt from the messages it left in its stream.

Every message names the step that sent it (``Nano-Step``), the revision, the route and the
attempt, and is stamped by the server when stored. A step's run starts when its input was
stored (for a join: when the last branch arrived) and ends when its last output was stored,
so along the path an execution took the durations add up to the whole.

``build`` is pure (records in, :class:`Trace` out); ``trace_execution`` reads the records by
the subject filter ``nano.<wf>.*.<execution>`` and follows calls into other workflows.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.aio.client import Client as NATS

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.inspect.dlq import RETRY_OF
from nanoservice.inspect.history import Record, bounds, read_all
from nanoservice.types import ATTEMPT, PARENT, REPLAY_OF, RETURN, REVISION, ROUTE, SKIP, STEP
from nanoservice.workflow.table import RoutingTable

__all__ = ["StepRun", "Trace", "build", "started_at", "trace_execution"]

_MAX_DEPTH = 5
_TIME_ID = re.compile(r"^[0-9a-f]{12}[0-9a-f]{10}$")


@dataclass
class StepRun:
    """One run of a step within an execution."""

    step: str
    start: float
    end: float | None = None
    duration: float | None = None
    attempts: int = 1
    revision: str | None = None
    inputs: list[str] = field(default_factory=list)
    """Who sent its input(s): ``trigger`` or step names (a join lists every branch)."""
    route: str | None = None
    next: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Join branches this run's choice ruled out (dead-path notices it sent)."""
    outcome: str = "running"
    """ok | error_route | dead_letter | done | running (no output stored yet)."""
    error: str | None = None
    host: str | None = None
    """Not recorded on messages yet: always None."""
    call: Trace | None = None
    """The called workflow's execution, traced in turn."""


@dataclass
class Trace:
    """One execution: its status, input, result or error and every step run, in order."""

    workflow: str
    execution: str
    status: str
    """succeeded | failed | running | aged_out | partial (its start is past retention)."""
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    revision: str | None = None
    replay_of: str | None = None
    parent: str | None = None
    steps: list[StepRun] = field(default_factory=list)
    messages: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def started_at(execution: str) -> float | None:
    """When an id made by ``subjects.new_execution_id`` was made (None for other ids)."""
    if not _TIME_ID.match(execution):
        return None
    return int(execution[:12], 16) / 1000


def build(
    workflow: str, execution: str, records: list[Record], table: RoutingTable | None = None
) -> Trace:
    """The trace of one execution from its stored messages (in stream order)."""
    trace = Trace(workflow, execution, "running", messages=len(records))
    runs: list[StepRun] = []
    latest: dict[str, StepRun] = {}

    def run_of(sender: str, at: float) -> StepRun:
        run = latest.get(sender)
        if run is None:  # a start step (its input is the trigger) or an input past retention
            run = StepRun(sender, trace.started if trace.started is not None else at)
            run.inputs.append("trigger" if trace.started is not None else "?")
            runs.append(run)
            latest[sender] = run
        return run

    def sent(run: StepRun, record: Record) -> None:
        run.end = record.time
        run.revision = record.headers.get(REVISION, run.revision)
        run.attempts = max(run.attempts, int(record.headers.get(ATTEMPT, "1")))
        if ROUTE in record.headers:
            run.route = record.headers[ROUTE]
        if run.outcome == "running":
            run.outcome = "error_route" if run.route == "error" else "ok"

    for record in records:
        kind = record.subject.split(".")[2]
        sender = record.headers.get(STEP, "")
        redrive = record.headers.get(RETRY_OF)
        if redrive is not None:  # `nano dlq retry`: the step's earlier run ended in a dead letter
            _redriven(kind if kind != subjects.START else "", redrive, record, runs, latest, table)
            continue
        if kind == subjects.START:
            trace.started = record.time
            trace.input = record.json()
            trace.replay_of = record.headers.get(REPLAY_OF)
            trace.parent = record.headers.get(PARENT)
            for name in table.start if table is not None else ():
                latest[name] = StepRun(name, record.time, inputs=["trigger"])
                runs.append(latest[name])
        elif kind == subjects.DONE:
            body = record.json() or {}
            trace.output = body.get("output") if isinstance(body, dict) else body
            trace.status, trace.ended = "succeeded", record.time
            run = run_of(sender or str(body.get("step", "?")), record.time)
            sent(run, record)
            run.outcome = "done"
        elif kind == subjects.DLQ:
            body = record.json() or {}
            error = body.get("error") or {} if isinstance(body, dict) else {}
            trace.error = {**error, "step": body.get("step"), "attempts": body.get("attempts")}
            trace.status, trace.ended = "failed", record.time
            run = run_of(sender or str(body.get("step", "?")), record.time)
            sent(run, record)
            run.outcome, run.attempts = "dead_letter", int(body.get("attempts") or run.attempts)
            run.error = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        elif RETURN in record.headers:  # a called workflow's result, back at the calling step
            run = run_of(kind, record.time)
            run.call = Trace(record.headers.get("Nano-Workflow", "?"), record.headers[RETURN], "")
        elif SKIP in record.headers:
            run = run_of(sender, record.time)
            run.skipped.append(f"{kind}:{record.headers[SKIP]}")
            _join_run(kind, record, runs, latest, table).skipped.append(record.headers[SKIP])
        else:
            if sender and (sender in latest or trace.started is not None):
                sent(run_of(sender, record.time), record)
                run_of(sender, record.time).next.append(kind)
            if trace.replay_of is None:  # a replay from a step: no trigger, its input says
                trace.replay_of = record.headers.get(REPLAY_OF)
            _join_run(kind, record, runs, latest, table).inputs.append(sender or "trigger")
    trace.steps = runs
    for run in runs:
        if run.end is not None:
            run.duration = round(run.end - run.start, 6)
    if trace.started is None and records:
        trace.status = "partial" if trace.status == "running" else trace.status
        trace.notes.append(
            "its trigger is not in its history (past the stream's retention, or it came on "
            "a trigger subject): the trace starts later"
        )
    if trace.started is not None and trace.ended is not None:
        trace.duration = round(trace.ended - trace.started, 6)
    revisions = [run.revision for run in runs if run.revision]
    trace.revision = revisions[0] if revisions else None
    return trace


def _redriven(
    step: str,
    why: str,
    record: Record,
    runs: list[StepRun],
    latest: dict[str, StepRun],
    table: RoutingTable | None,
) -> None:
    """A dead letter re-driven at ``step`` (a start step when ``step`` is empty)."""
    names = [step] if step else list(table.start if table is not None else [])
    seq, _, rest = why.partition("; ")
    attempts, _, error = rest.partition("; ")
    for name in names:
        earlier = latest.get(name)
        if earlier is not None and earlier.outcome == "running":
            earlier.outcome, earlier.error = "dead_letter", f"{error} (retried)"
            earlier.attempts = int(attempts.split()[0]) if attempts[:1].isdigit() else 1
        run = StepRun(name, record.time, inputs=[f"dlq retry {seq}"])
        runs.append(run)
        latest[name] = run


def _join_run(
    step: str,
    record: Record,
    runs: list[StepRun],
    latest: dict[str, StepRun],
    table: RoutingTable | None,
) -> StepRun:
    """The run an input starts, or joins (a join's branches share one run until it fires)."""
    join = table is not None and step in table.steps and table.steps[step].join is not None
    current = latest.get(step)
    if join and current is not None and current.end is None:
        current.start = max(current.start, record.time)
        return current
    run = StepRun(step, record.time)
    runs.append(run)
    latest[step] = run
    return run


async def trace_execution(
    nc: NATS,
    tables: dict[str, RoutingTable],
    workflow: str,
    execution: str,
    *,
    depth: int = 0,
) -> Trace:
    """Read and build the trace of ``execution``, calls into other workflows nested."""
    table = tables.get(workflow)
    if table is None:
        known = ", ".join(sorted(tables)) or "none"
        raise NanoError(f"no workflow '{workflow}' on this server (workflows: {known})")
    stream = table.stream.name
    records = await read_all(nc, stream, [subjects.execution_filter(workflow, execution)])
    if not records:
        return await _missing(nc, workflow, execution, stream)
    trace = build(workflow, execution, records, table)
    for run in trace.steps:
        if run.call is not None and depth < _MAX_DEPTH and run.call.workflow in tables:
            run.call = await trace_execution(
                nc, tables, run.call.workflow, run.call.execution, depth=depth + 1
            )
    return trace


async def _missing(nc: NATS, workflow: str, execution: str, stream: str) -> Trace:
    """No message left: aged out (its id says it is older than the stream) or unknown."""
    held = await bounds(nc, stream)
    made = started_at(execution)
    trace = Trace(workflow, execution, "aged_out")
    if made is not None and (held.first_time is None or made < held.first_time):
        since = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.first_time))
            if held.first_time
            else "nothing (the stream is empty)"
        )
        trace.started = made
        trace.notes.append(
            f"execution {execution} of {workflow} has aged out: it started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(made))}, and stream "
            f"{stream} keeps messages since {since}"
        )
        return trace
    raise NanoError(f"workflow '{workflow}' has no execution {execution!r}")
