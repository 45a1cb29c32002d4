"""``nano graph`` and ``nano cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import NatsUrl, NodesDir, compile_one, console, run
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.js import JetStreamContext

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
        typer.Option("--workflow", "-w", help="Its workflow (default: found from the id)."),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Cancel a running execution: its pending steps are dropped, its outcome is Cancelled."""
    from nanoservice.nats.connect import resolve_url

    found = run(_cancel(resolve_url(nats_url), workflow, execution))
    console.print(f"cancelled {found} execution {execution}")


async def _cancel(url: str, workflow: str | None, execution: str) -> str:
    from nanoservice.nats.connect import connect
    from nanoservice.runtime.cancel import cancel_execution

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
    from nanoservice.nats.provision import load_tables
    from nanoservice.subjects import execution_filter

    for name, table in (await load_tables(js)).items():
        info = await js.stream_info(
            table.stream.name, subjects_filter=execution_filter(name, execution)
        )
        if info.state.subjects:
            return name
    raise NanoError(f"no workflow has an execution {execution!r} (give --workflow)")
