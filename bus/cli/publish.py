"""``nano publish``: start an execution (or publish to a subject) and optionally wait."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import typer
from nats.js.errors import NoStreamResponseError

from nanoservice.cli.common import TOKEN_RULE, NatsUrl, console, die, err_console, run
from nanoservice.errors import NanoError
from nanoservice.nats.connect import connect, resolve_url
from nanoservice.nats.provision import load_tables
from nanoservice.runtime.client import NO_RESULT, NOT_STORED, Client, NoOutcome
from nanoservice.subjects import is_valid_token

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
    if execution is not None and not is_valid_token(execution):
        raise die(f"invalid execution id {execution!r}: {TOKEN_RULE}")
    code = run(_publish(resolve_url(nats_url), target, data, wait, timeout, execution))
    raise typer.Exit(code)


async def _publish(
    url: str, target: str, data: Any, wait: bool, timeout: float, execution: str | None
) -> int:
    try:
        # Waiting rides out a server restart; a plain publish fails at once.
        nc = await connect(url, name="nano publish", reconnect=wait)
    except Exception as exc:
        raise NanoError(
            f"cannot reach NATS at {url}: {exc or type(exc).__name__} (is `nano up` running?)"
        ) from None
    try:
        if "." in target:
            try:
                ack = await nc.jetstream().publish(target, json.dumps(data).encode())
            except NoStreamResponseError:
                raise NanoError(
                    f"no stream on this server stores subject '{target}' (give a workflow "
                    "name, or a trigger subject `nano up` printed)"
                ) from None
            console.print(f"stored in {ack.stream} at seq {ack.seq}")
            return 0
        tables = await load_tables(nc.jetstream())
        table = tables.get(target)
        if table is None:
            known = ", ".join(sorted(tables)) or "none"
            raise NanoError(f"no workflow '{target}' on this server (workflows: {known})")
        if table.input_schema is not None:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(table.input_schema).iter_errors(data)
            )
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                raise NanoError(
                    f"payload does not match the input schema of '{target}' at "
                    f"{where}: {error.message}"
                )
        client = Client(nc)
        if not wait:
            started = await client.start(target, data, execution=execution)
            console.print(f"execution {started}")
            return 0
        try:
            outcome = await client.run(target, data, timeout=timeout, execution=execution)
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
