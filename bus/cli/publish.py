"""``nano publish``: start an execution (or publish to a subject) and optionally wait."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nanoservice.cli.common import TOKEN_RULE, NatsUrl, console, die, err_console, run
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.workflow.table import RoutingTable

__all__ = ["publish_command"]


def publish_command(
    target: Annotated[str, typer.Argument(help="Workflow name, or a subject (has a dot).")],
    payload: Annotated[
        str, typer.Argument(help="JSON payload; @FILE reads a file, - reads standard input.")
    ] = "{}",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for and print the result.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 30.0,
    execution: Annotated[str | None, typer.Option(help="Execution id to use.")] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Start an execution of a workflow with a JSON payload."""
    from nanoservice.nats.connect import resolve_url
    from nanoservice.subjects import is_valid_token

    source = "payload"
    try:
        if payload == "-":
            source, payload = "standard input", sys.stdin.read()
        elif payload.startswith("@"):
            source, payload = payload[1:], Path(payload[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        raise die(f"cannot read {payload[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise die(f"{source} is not valid JSON: {exc}") from None
    if timeout <= 0:
        raise die(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if execution is not None and not is_valid_token(execution):
        raise die(f"invalid execution id {execution!r}: {TOKEN_RULE}")
    code = run(_publish(resolve_url(nats_url), target, data, wait, timeout, execution))
    raise typer.Exit(code)


async def _publish(
    url: str, target: str, data: Any, wait: bool, timeout: float, execution: str | None
) -> int:
    import jsonschema

    from nanoservice.nats.client import NO_RESULT, NOT_STORED, Client, NoOutcome
    from nanoservice.nats.connect import connect
    from nanoservice.nats.provision import load_tables

    try:
        # Waiting rides out a server restart; a plain publish fails at once.
        nc = await connect(url, name="nano publish", reconnect=wait)
    except Exception as exc:
        raise NanoError(
            f"cannot reach NATS at {url}: {exc or type(exc).__name__} (is `nano up` running?)"
        ) from None
    try:
        tables = await load_tables(nc.jetstream())
        subject: str | None = None
        table: RoutingTable | None
        if "." in target:
            found = _triggered_by(tables, target)
            if found is None:
                if wait or execution:
                    raise NanoError(
                        f"'{target}' is no workflow's trigger subject, so there is no "
                        "execution to --wait for or to name with --execution"
                    )
                return await _publish_plain(nc, target, data)
            table, subject = found, target
        else:
            table = tables.get(target)
        if table is None:
            known = ", ".join(sorted(tables)) or "none"
            raise NanoError(f"no workflow '{target}' on this server (workflows: {known})")
        workflow = table.workflow
        if table.input_schema is not None:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(table.input_schema).iter_errors(data)
            )
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                raise NanoError(
                    f"payload does not match the input schema of '{workflow}' at "
                    f"{where}: {error.message}"
                )
        client = Client(nc)
        if not wait:
            started, duplicate = await client.trigger(
                workflow, data, execution=execution, subject=subject
            )
            if duplicate:
                _note_earlier(started)
            console.print(f"execution {started}")
            return 0
        try:
            outcome = await client.run(
                workflow, data, timeout=timeout, execution=execution, subject=subject
            )
        except NoOutcome as exc:
            hint = {
                NO_RESULT: "are hosts running its steps?",
                NOT_STORED: "publish again",
            }.get(exc.reason, "it may still finish")
            err_console.print(
                f"[yellow]no result of execution {exc.execution} within {timeout:g} s[/yellow]: "
                f"{exc.reason} ({hint}; `nano publish {target} --wait --execution "
                f"{exc.execution}` looks again)",
                soft_wrap=True,
            )
            return 3
        if outcome.earlier:
            _note_earlier(outcome.execution)
        if outcome.ok:
            print(json.dumps(outcome.output, indent=2))
            return 0
        err = outcome.error or {}
        err_console.print(
            f"[red]failed[/red] at step '{outcome.step}' after "
            f"{err.get('attempts')} attempt(s): {err.get('type')}: "
            f"{err.get('message')}",
            soft_wrap=True,
        )
        return 1
    finally:
        await nc.close()


def _note_earlier(execution: str) -> None:
    err_console.print(
        f"[yellow]note:[/yellow] execution {execution} was started before; the server "
        "de-duplicated this trigger, so the payload given now was not used",
        soft_wrap=True,
    )


async def _publish_plain(nc: NATS, subject: str, data: Any) -> int:
    """Publish to a subject that triggers no workflow: report where it was stored."""
    from nats.js.errors import NoStreamResponseError

    try:
        ack = await nc.jetstream().publish(subject, json.dumps(data).encode())
    except NoStreamResponseError:
        raise NanoError(
            f"no stream on this server stores subject '{subject}' (give a workflow "
            "name, or a trigger subject `nano up` printed)"
        ) from None
    console.print(f"stored in {ack.stream} at seq {ack.seq}")
    return 0


def _triggered_by(tables: dict[str, RoutingTable], subject: str) -> RoutingTable | None:
    """The workflow one of whose declared trigger subjects matches ``subject``."""
    from nanoservice.subjects import matches

    for table in tables.values():
        if any(matches(pattern, subject) for pattern in table.triggers):
            return table
    return None
