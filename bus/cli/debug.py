"""``nano trace`` (one execution's timeline) and ``nano tail`` (live events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import NatsUrl, console, err_console, run
from nanoservice.cli.debug_common import (
    Json,
    check_token,
    clock,
    print_json,
    session,
    short,
    workflow_of,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from rich.table import Table

    from nanoservice.inspect.trace import Trace

__all__ = ["tail_command", "trace_command"]

WorkflowOption = Annotated[
    str | None, typer.Option("--workflow", help="Its workflow (default: found from the id).")
]


def trace_command(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    workflow: WorkflowOption = None,
    as_json: Json = False,
    nats_url: NatsUrl = None,
) -> None:
    """Show the timeline of one execution: every step, its timing, route, attempts, errors."""
    from nanoservice.nats.connect import resolve_url

    check_token("execution id", execution)
    check_token("workflow name", workflow)
    found = run(_trace(resolve_url(nats_url), execution, workflow))
    if as_json:
        print_json(found.to_json())
    else:
        render_trace(found)
    if found.status == "aged_out":
        raise typer.Exit(3)


async def _trace(url: str, execution: str, workflow: str | None) -> Trace:
    from nanoservice.inspect.trace import trace_execution

    async with session(url, "nano trace") as s:
        name = await workflow_of(s, execution, workflow)
        return await trace_execution(s.nc, s.tables, name, execution)


def render_trace(trace: Trace) -> None:
    """The trace as a headline, its input and result, and a table of step runs."""
    from rich.markup import escape
    from rich.table import Table

    took = f" in {trace.duration:.3f} s" if trace.duration is not None else ""
    head = f"execution {trace.execution} of {trace.workflow}: {trace.status}{took}"
    extra = [f"revision {short(trace.revision)}"] if trace.revision else []
    if trace.replay_of:
        extra.append(f"replay of {trace.replay_of}")
    if trace.parent:
        extra.append(f"called by {trace.parent}")
    console.print(escape(head + (f" ({', '.join(extra)})" if extra else "")), soft_wrap=True)
    for note in trace.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    if trace.status == "aged_out":
        return
    if trace.started is not None:
        console.print(f"started {clock(trace.started)}  input {_value(trace.input)}")
    if trace.status == "succeeded":
        console.print(f"output {_value(trace.output)}", soft_wrap=True)
    elif trace.error:
        error = trace.error
        console.print(
            escape(
                f"error at step '{error.get('step')}' after {error.get('attempts')} attempt(s): "
                f"{error.get('type')}: {error.get('message')}"
            ),
            soft_wrap=True,
        )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("step", "start", "took", "tries", "rev", "from", "route", "to", "outcome"):
        table.add_column(column, no_wrap=column != "outcome")
    _rows(table, trace, trace.started or (trace.steps[0].start if trace.steps else 0.0), "")
    console.print(table)


def _rows(table: Table, trace: Trace, origin: float, indent: str) -> None:
    from rich.markup import escape

    for run_ in trace.steps:
        outcome = run_.outcome + (f": {run_.error}" if run_.error else "")
        if run_.skipped:
            outcome += f" (ruled out {', '.join(run_.skipped)})"
        table.add_row(
            escape(indent + run_.step),
            f"+{run_.start - origin:.3f}",
            f"{run_.duration:.3f}" if run_.duration is not None else "-",
            str(run_.attempts),
            short(run_.revision),
            escape(",".join(run_.inputs)),
            escape(run_.route or ""),
            escape(",".join(run_.next)),
            escape(outcome),
        )
        child = run_.call
        if child is not None:
            table.add_row(
                escape(f"{indent}  └ call {child.workflow} {child.execution}"),
                "", "", "", "", "", "", "", escape(child.status or "?"),
            )  # fmt: skip
            _rows(table, child, origin, indent + "    ")


def _value(value: object) -> str:
    import json

    from rich.markup import escape

    text = json.dumps(value, sort_keys=True, default=str)
    return escape(text if len(text) <= 300 else text[:300] + "...")


def tail_command(
    workflow: Annotated[str | None, typer.Argument(help="Workflow (default: all).")] = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Only events from or to this step.")
    ] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            "--outcome",
            help="Only these outcomes: started, ok, error_route, skip, returned, done, failed.",
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after this many events.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Print a line per event as it happens (step, route, outcome, duration, execution)."""
    from nanoservice.cli.common import die
    from nanoservice.inspect.tail import OUTCOMES
    from nanoservice.nats.connect import resolve_url

    check_token("workflow name", workflow)
    for name in step or []:
        check_token("step name", name)
    unknown = sorted(set(outcome or []) - set(OUTCOMES))
    if unknown:
        raise die(f"unknown outcome {', '.join(unknown)} (known: {', '.join(OUTCOMES)})")
    if count is not None and count <= 0:
        raise die(f"--count must be a positive number, not {count}")
    run(_tail(resolve_url(nats_url), workflow, step, outcome, count, as_json))


async def _tail(
    url: str,
    workflow: str | None,
    steps: list[str] | None,
    outcomes: list[str] | None,
    count: int | None,
    as_json: bool,
) -> None:
    import asyncio
    import json
    import os
    import signal
    import sys

    from nanoservice.inspect.tail import Event, Tail

    async with session(url, "nano tail") as s:
        if workflow is not None:
            s.table(workflow)
        tail = Tail(
            {name: list(t.start) for name, t in s.tables.items()},
            steps=set(steps) if steps else None,
            outcomes=set(outcomes) if outcomes else None,
        )
        stop = asyncio.Event()
        shown = 0

        def show(event: Event) -> None:
            nonlocal shown
            if as_json:
                line = json.dumps(event.to_json())
            else:
                took = f"{event.duration:.3f}s" if event.duration is not None else "-"
                route = f"  [{event.route}]" if event.route else ""
                line = (
                    f"{clock(event.time)}  {event.workflow}  {event.execution}  "
                    f"{event.step} -> {event.to}  {event.outcome}  {took}{route}"
                )
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # `nano tail | head`: the reader is gone
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                stop.set()
                return
            shown += 1
            if count is not None and shown >= count:
                stop.set()

        async def on_msg(msg: Msg) -> None:
            event = tail.event(msg.subject, msg.headers or {})
            if event is not None and not stop.is_set():
                show(event)

        subject = f"nano.{workflow}.>" if workflow else "nano.>"
        sub = await s.nc.subscribe(subject, cb=on_msg)
        await s.nc.flush()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err_console.print(f"tailing {subject} (Ctrl-C to stop)")
        await stop.wait()
        await sub.unsubscribe()
