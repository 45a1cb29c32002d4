"""``nano graph`` and ``nano cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from nats.js import JetStreamContext

from nanoservice.cli.common import TOKEN_RULE, NatsUrl, NodesDir, compile_one, console, die, run
from nanoservice.errors import NanoError
from nanoservice.nats.connect import connect, resolve_url
from nanoservice.nats.provision import load_tables
from nanoservice.runtime.cancel import cancel_execution
from nanoservice.subjects import execution_filter, is_valid_token
from nanoservice.workflow.graph import to_mermaid

__all__ = ["cancel_command", "graph_command"]


def graph_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")],
    nodes: NodesDir = None,
) -> None:
    """Print a workflow as a Mermaid flowchart (paste into any Mermaid viewer)."""
    print(to_mermaid(compile_one(file, nodes)))


def cancel_command(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Its workflow (default: found from the id)."),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Cancel a running execution: its pending steps are dropped, its outcome is Cancelled."""
    for what, name in (("execution id", execution), ("workflow name", workflow)):
        if name is not None and not is_valid_token(name):
            raise die(f"invalid {what} {name!r}: {TOKEN_RULE}")
    found = run(_cancel(resolve_url(nats_url), workflow, execution))
    console.print(f"cancelled {found} execution {execution}")


async def _cancel(url: str, workflow: str | None, execution: str) -> str:
    try:
        nc = await connect(url, name="nano cancel", reconnect=False)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        js = nc.jetstream()
        if workflow is None:
            workflow = await _workflow_of(js, execution)
        await cancel_execution(js, workflow, execution)
        return workflow
    finally:
        await nc.close()


async def _workflow_of(js: JetStreamContext, execution: str) -> str:
    """The workflow whose stream has messages of this execution."""
    for name, table in (await load_tables(js)).items():
        info = await js.stream_info(
            table.stream.name, subjects_filter=execution_filter(name, execution)
        )
        if info.state.subjects:
            return name
    raise NanoError(f"no workflow has an execution {execution!r} (give --workflow)")
