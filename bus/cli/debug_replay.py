"""``nano replay``: re-run past executions (or one step of one) on the live revision."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nanoservice.cli.common import NatsUrl, console, die, err_console, run
from nanoservice.cli.debug_common import check_token, print_json, session, workflow_of

if TYPE_CHECKING:
    from nanoservice.cli.debug_common import Session
    from nanoservice.inspect.replay import Source

__all__ = ["parse_seq", "parse_time", "replay_command"]

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 (local time unless it says otherwise), or an age like ``30s``, ``10m``, ``2h``."""
    match = _AGO.match(text)
    if match:
        seconds = float(match[1]) * _UNITS[match[2]]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise die(
            f"{option} {text!r} is not a time: use ISO 8601 (2026-01-31T12:00:00) or an age "
            "(30s, 10m, 2h, 1d)"
        ) from None
    return when if when.tzinfo else when.astimezone()


def parse_seq(text: str) -> tuple[int, int | None]:
    """``A..B`` (inclusive), ``A..`` or ``A``."""
    match = re.match(r"^(\d+)(?:\.\.(\d*))?$", text)
    if not match:
        raise die(f"--seq {text!r} is not a range: use A..B, A.. or A (stream sequences)")
    start = int(match[1])
    end = start if match[2] is None else (int(match[2]) if match[2] else None)
    if end is not None and end < start:
        raise die(f"--seq {text!r}: the range ends before it starts")
    return start, end


def replay_command(
    workflow: Annotated[
        str | None, typer.Argument(help="Workflow (needed for a range; else found from the id).")
    ] = None,
    execution: Annotated[
        str | None, typer.Option("--execution", help="Replay this execution.")
    ] = None,
    from_step: Annotated[
        str | None,
        typer.Option("--from-step", help="With --execution: replay from this step's input."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Triggers stored since (ISO time or 10m).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Triggers stored until (ISO time or 10m).")
    ] = None,
    seq: Annotated[
        str | None, typer.Option("--seq", help="Triggers in a stream sequence range A..B.")
    ] = None,
    to_workflow: Annotated[
        str | None, typer.Option("--to-workflow", help="Replay into this workflow instead.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; publish nothing.")
    ] = False,
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Wait for each replay and show its output beside the old."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each with --compare.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Re-run past work on the live code and workflow: one execution, one step, or a range."""
    from nanoservice.nats.connect import resolve_url

    for what, name in (
        ("workflow name", workflow),
        ("execution id", execution),
        ("step name", from_step),
        ("workflow name", to_workflow),
    ):
        check_token(what, name)
    ranged = since is not None or until is not None or seq is not None
    if execution is None and not ranged:
        raise die("say what to replay: --execution ID, or a range (--since/--until, --seq A..B)")
    if execution is not None and ranged:
        raise die("--execution replays one execution; it does not go with --since/--until/--seq")
    if from_step is not None and execution is None:
        raise die("--from-step needs --execution")
    if ranged and workflow is None:
        raise die("a range replay needs the workflow: nano replay WORKFLOW --since ...")
    if timeout <= 0:
        raise die(f"--timeout must be a positive number of seconds, not {timeout:g}")
    window = (
        parse_time(since, "--since") if since else None,
        parse_time(until, "--until") if until else None,
        parse_seq(seq) if seq else None,
    )
    options = (to_workflow, dry_run, compare, timeout, as_json)
    code = run(_replay(resolve_url(nats_url), workflow, execution, from_step, window, options))
    raise typer.Exit(code)


async def _replay(
    url: str,
    workflow: str | None,
    execution: str | None,
    from_step: str | None,
    window: tuple[datetime | None, datetime | None, tuple[int, int | None] | None],
    options: tuple[str | None, bool, bool, float, bool],
) -> int:
    from nanoservice.inspect import replay

    to_workflow, dry_run, _, _, as_json = options
    async with session(url, "nano replay") as s:
        if to_workflow is not None:
            s.table(to_workflow)
        sources: list[Source] = []
        if execution is not None:
            name = await workflow_of(s, execution, workflow)
            if from_step is None:
                sources.append(await replay.find_trigger(s.nc, s.tables, name, execution))
            else:
                sources.append(await replay.step_inputs(s.nc, s.tables, name, execution, from_step))
        else:
            assert workflow is not None
            since, until, seqs = window
            async for source in replay.triggers_in_range(
                s.nc,
                s.tables,
                workflow,
                since=since,
                until=until,
                seq_from=seqs[0] if seqs else None,
                seq_to=seqs[1] if seqs else None,
            ):
                sources.append(source)
        if dry_run:
            return _dry(sources, as_json)
        if not sources:
            err_console.print("nothing to replay in that range")
            return 0
        rows = [await _one(s, source, i, len(sources), options) for i, source in enumerate(sources)]
        if as_json:
            print_json(rows)
        return 0


def _dry(sources: list[Source], as_json: bool) -> int:
    from nanoservice.cli.debug_common import clock

    rows: list[dict[str, Any]] = [
        {
            "workflow": s.workflow,
            "execution": s.execution,
            "seq": s.seq,
            "time": s.time,
            "step": s.step,
        }
        for s in sources
    ]
    if as_json:
        print_json(rows)
        return 0
    for row in rows:
        step = f" from step {row['step']}" if row["step"] else ""
        print(f"would replay {row['workflow']} {row['execution']}{step} (seq {row['seq']}, "
              f"{clock(row['time'])})")  # fmt: skip
    err_console.print(f"{len(rows)} to replay (dry run: nothing published)")
    return 0


async def _one(
    s: Session,
    source: Source,
    index: int,
    total: int,
    options: tuple[str | None, bool, bool, float, bool],
) -> dict[str, Any]:
    from nanoservice.inspect import replay
    from nanoservice.nats.client import Client

    to_workflow, _, compare, timeout, as_json = options
    done = await replay.replay(s.nc, s.tables, source, to_workflow=to_workflow)
    row: dict[str, Any] = {
        "original": f"{source.workflow}.{source.execution}",
        "workflow": done.workflow,
        "execution": done.execution,
        "step": done.step,
    }
    err_console.print(
        f"[{index + 1}/{total}] replayed {source.workflow} {source.execution} as "
        f"{done.workflow} {done.execution}"
    )
    if not compare:
        return row
    client = Client(s.nc)
    old = await client.stored(source.workflow, source.execution)
    try:
        new = await client.outcome(done.workflow, done.execution, timeout=timeout)
    except TimeoutError:
        new = None
    row["before"] = _summary(old)
    row["after"] = _summary(new)
    row["same"] = row["before"] == row["after"]
    if not as_json:
        _print_compare(row)
    return row


def _summary(outcome: Any) -> dict[str, Any]:
    if outcome is None:
        return {"status": "no outcome"}
    if outcome.ok:
        return {"status": "succeeded", "output": outcome.output}
    error = outcome.error or {}
    return {
        "status": "failed",
        "step": outcome.step,
        "error": f"{error.get('type')}: {error.get('message')}",
    }


def _print_compare(row: dict[str, Any]) -> None:
    import difflib
    import json

    from rich.markup import escape

    before = json.dumps(row["before"], indent=2, sort_keys=True, default=str).splitlines()
    after = json.dumps(row["after"], indent=2, sort_keys=True, default=str).splitlines()
    head = f"{row['original']} -> {row['workflow']}.{row['execution']}"
    if before == after:
        after_text = json.dumps(row["after"], sort_keys=True, default=str)
        console.print(escape(f"same    {head}: {after_text}"), soft_wrap=True)
        return
    console.print(escape(f"changed {head}:"))
    for line in difflib.unified_diff(before, after, "original", "replay", lineterm="", n=1):
        console.print(escape("  " + line), soft_wrap=True)
