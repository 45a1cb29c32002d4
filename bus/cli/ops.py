"""``nano graph`` and ``nano cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cancel import cancel_execution
from ..connect import connect, resolve_url
from ..errors import NanoError, WorkflowError
from ..graph import to_mermaid
from ..project import compile_files, project_registry
from .common import NatsUrl, console, die, err_console, run

__all__ = ["cancel_command", "graph_command"]


def graph_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")],
    nodes: Annotated[list[Path] | None, typer.Option("--nodes")] = None,
) -> None:
    """Print a workflow as a Mermaid flowchart (paste into any Mermaid viewer)."""
    try:
        (table,) = compile_files([file], project_registry(nodes or [Path("nodes")]))
    except WorkflowError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(2) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    print(to_mermaid(table))


def cancel_command(
    workflow: Annotated[str, typer.Argument(help="Workflow name.")],
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    nats_url: NatsUrl = None,
) -> None:
    """Cancel a running execution: its pending steps are dropped, its outcome is Cancelled."""
    run(_cancel(resolve_url(nats_url), workflow, execution))
    console.print(f"cancelled {workflow} execution {execution}")


async def _cancel(url: str, workflow: str, execution: str) -> None:
    try:
        nc = await connect(url, name="nano cancel", reconnect=False)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        await cancel_execution(nc.jetstream(), workflow, execution)
    finally:
        await nc.close()
