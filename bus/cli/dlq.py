"""``nano dlq list|show|retry|purge``: dead letters, and re-driving them after a fix."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import NatsUrl, console, die, run
from nanoservice.cli.debug_common import Json, check_token, clock, print_json, session

if TYPE_CHECKING:
    from nanoservice.inspect.dlq import DeadLetterInfo, Retried

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    help="Dead letters: list, show, retry at the failed step, purge.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

WorkflowArg = Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")]
StepOpt = Annotated[str | None, typer.Option("--step", help="Only dead letters of this step.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every dead letter (of --workflow).")]
ExecutionArg = Annotated[
    str | None, typer.Argument(help="One execution's dead letters (default: see --all).")
]


Every = Annotated[bool, typer.Option("--all", help="Every dead letter (of --workflow).")]


@dlq_app.command("list")
def list_command(
    workflow: Annotated[str | None, typer.Argument(help="Workflow (default: all).")] = None,
    step: StepOpt = None,
    as_json: Json = False,
    nats_url: NatsUrl = None,
) -> None:
    """List dead letters: execution, step, attempts, error."""
    letters = _select(nats_url, workflow, None, step)
    if as_json:
        print_json([asdict(letter) for letter in letters])
        return
    if not letters:
        console.print("no dead letters")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("workflow", "execution", "step", "tries", "stored", "seq", "error"):
        table.add_column(column, no_wrap=column != "error")
    for letter in letters:
        error = f"{letter.error.get('type')}: {letter.error.get('message')}"
        table.add_row(
            letter.workflow,
            letter.execution,
            letter.step,
            str(letter.attempts),
            clock(letter.time),
            str(letter.seq),
            escape(error),
        )
    console.print(table)


@dlq_app.command("show")
def show_command(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    workflow: WorkflowArg = None,
    as_json: Json = False,
    nats_url: NatsUrl = None,
) -> None:
    """Show an execution's dead letters in full: error, failed message, headers, payload."""
    import json

    from rich.markup import escape

    letters = _select(nats_url, workflow, execution, None)
    if not letters:
        raise die(f"execution {execution} has no dead letter")
    if as_json:
        print_json([asdict(letter) for letter in letters])
        return
    for letter in letters:
        lines = [
            f"dead letter {letter.seq} of {letter.workflow} execution {letter.execution}",
            f"  step      {letter.step} (after {letter.attempts} attempt(s))",
            f"  error     {letter.error.get('type')}: {letter.error.get('message')}",
            f"  stored    {clock(letter.time)}",
            f"  message   {letter.subject} (stream seq {letter.stream_seq})",
        ]
        lines += [f"  header    {k}: {v}" for k, v in sorted(letter.headers.items())]
        cut = " (truncated)" if letter.truncated else ""
        lines.append(f"  payload{cut} {json.dumps(letter.data, default=str)}")
        console.print(escape("\n".join(lines)), soft_wrap=True)


@dlq_app.command("retry")
def retry_command(
    execution: ExecutionArg = None,
    workflow: WorkflowArg = None,
    step: StepOpt = None,
    every: Every = False,
    same_revision: Annotated[
        bool,
        typer.Option(
            "--same-revision",
            help="Run on the revision it failed on, not the live one (the default).",
        ),
    ] = False,
    as_json: Json = False,
    nats_url: NatsUrl = None,
) -> None:
    """Re-drive dead letters at their failed step (after fixing the node or workflow)."""
    _need_selection(execution, workflow, step, every)
    url = nats_url
    letters = _select(url, workflow, execution, step)
    if not letters:
        raise die("no dead letters match" + (f" (execution {execution})" if execution else ""))
    retried = run(_retry(url, letters, same_revision))
    if as_json:
        print_json([asdict(r) for r in retried])
        return
    for r in retried:
        console.print(
            f"retried {r.workflow} {r.execution} at step {r.step} "
            f"(revision {r.revision[:8]}, seq {r.seq})"
        )


@dlq_app.command("purge")
def purge_command(
    execution: ExecutionArg = None,
    workflow: WorkflowArg = None,
    step: StepOpt = None,
    every: Every = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    import sys

    _need_selection(execution, workflow, step, every)
    letters = _select(nats_url, workflow, execution, step)
    if not letters:
        console.print("no dead letters match")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise die(f"would delete {len(letters)} dead letter(s); confirm with --yes")
        if not typer.confirm(f"delete {len(letters)} dead letter(s) for good?"):
            raise typer.Exit(1)
    count = run(_purge(nats_url, letters))
    console.print(f"deleted {count} dead letter(s)")


def _need_selection(
    execution: str | None, workflow: str | None, step: str | None, every: bool
) -> None:
    check_token("execution id", execution)
    check_token("workflow name", workflow)
    check_token("step name", step)
    if execution is None and not every and step is None:
        raise die("say which dead letters: an execution id, --step STEP, or --all")


def _select(
    nats_url: str | None, workflow: str | None, execution: str | None, step: str | None
) -> list[DeadLetterInfo]:
    from nanoservice.nats.connect import resolve_url

    check_token("workflow name", workflow)
    return run(_letters(resolve_url(nats_url), workflow, execution, step))


async def _letters(
    url: str, workflow: str | None, execution: str | None, step: str | None
) -> list[DeadLetterInfo]:
    from nanoservice.inspect.dlq import dead_letters

    async with session(url, "nano dlq") as s:
        names = [workflow] if workflow else None
        if workflow:
            s.table(workflow)
        return await dead_letters(s.nc, s.tables, names, execution=execution, step=step)


async def _retry(
    url: str | None, letters: list[DeadLetterInfo], same_revision: bool
) -> list[Retried]:
    from nanoservice.inspect.dlq import retry
    from nanoservice.nats.connect import resolve_url

    async with session(resolve_url(url), "nano dlq") as s:
        return await retry(s.nc, s.tables, letters, same_revision=same_revision)


async def _purge(url: str | None, letters: list[DeadLetterInfo]) -> int:
    from nanoservice.inspect.dlq import purge
    from nanoservice.nats.connect import resolve_url

    async with session(resolve_url(url), "nano dlq") as s:
        return await purge(s.nc, s.tables, letters)
