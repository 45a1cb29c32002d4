"""``nano graph`` and ``nano cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import TOKEN_RULE, NatsUrl, NodesDir, compile_one, console, die, run
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from nanoservice.workflow.table import RoutingTable

__all__ = ["cancel_command", "graph_command"]


def graph_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")],
    nodes: NodesDir = None,
) -> None:
    """Print a workflow as a Mermaid flowchart (paste into any Mermaid viewer)."""
    from nanoservice.workflow.graph import to_mermaid

    print(to_mermaid(compile_one(file, nodes)))


def cancel_command(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Its workflow (default: found from the id)."),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Cancel a running execution: its pending steps are dropped, its outcome is Cancelled."""
    from nanoservice.nats.connect import resolve_url
    from nanoservice.subjects import is_valid_token

    for what, name in (("execution id", execution), ("workflow name", workflow)):
        if name is not None and not is_valid_token(name):
            raise die(f"invalid {what} {name!r}: {TOKEN_RULE}")
    found = run(_cancel(resolve_url(nats_url), workflow, execution))
    console.print(f"cancelled {found} execution {execution}")


async def _cancel(url: str, workflow: str | None, execution: str) -> str:
    from nanoservice.nats.cancel import cancel_execution
    from nanoservice.nats.client import Client
    from nanoservice.nats.connect import connect
    from nanoservice.nats.provision import load_tables

    try:
        nc = await connect(url, name="nano cancel", reconnect=False)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        js = nc.jetstream()
        tables = await load_tables(js)
        if workflow is None:
            workflow = await _workflow_of(js, tables, execution)
        elif workflow not in tables:
            known = ", ".join(sorted(tables)) or "none"
            raise NanoError(f"no workflow '{workflow}' on this server (workflows: {known})")
        elif not await _has_execution(js, tables[workflow], execution):
            raise NanoError(f"workflow '{workflow}' has no execution {execution!r}")
        outcome = await Client(nc).stored(workflow, execution)
        if outcome is not None:
            how = "succeeded" if outcome.ok else f"failed at step '{outcome.step}'"
            if not outcome.ok and (outcome.error or {}).get("type") == "Cancelled":
                how = "was cancelled"
            raise NanoError(
                f"execution {execution} of {workflow} already finished ({how}); nothing to cancel"
            )
        await cancel_execution(js, workflow, execution)
        return workflow
    finally:
        await nc.close()


async def _has_execution(js: JetStreamContext, table: RoutingTable, execution: str) -> bool:
    from nanoservice.subjects import execution_filter

    info = await js.stream_info(
        table.stream.name, subjects_filter=execution_filter(table.workflow, execution)
    )
    return bool(info.state.subjects)


async def _workflow_of(
    js: JetStreamContext, tables: dict[str, RoutingTable], execution: str
) -> str:
    """The workflow whose stream has messages of this execution."""
    for name, table in tables.items():
        if await _has_execution(js, table, execution):
            return name
    raise NanoError(f"no workflow has an execution {execution!r} (give --workflow)")
