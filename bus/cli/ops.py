"""``nano graph`` and ``nano cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import TOKEN_RULE, NatsUrl, NodesDir, compile_one, console, die, run
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from nanoservice.workflow.graph_svg import Drawing
    from nanoservice.workflow.table import RoutingTable

__all__ = ["cancel_command", "graph_command"]


def graph_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")],
    nodes: NodesDir = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write an image here (.svg, or .png)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="mermaid (default on the terminal), svg or png."),
    ] = None,
    execution: Annotated[
        str | None,
        typer.Option("--execution", help="Highlight the path this execution took (reads NATS)."),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Draw a workflow: Mermaid text, or an SVG/PNG image (-o FILE), optionally with the path
    an execution took highlighted."""
    import sys

    from nanoservice.workflow.graph import to_mermaid

    kind = (fmt or (output.suffix.lstrip(".").lower() if output else "mermaid")) or "svg"
    if kind not in ("mermaid", "svg", "png"):
        raise die(f"unknown graph format {kind!r} (use mermaid, svg or png)")
    if kind == "png" and output is None:
        raise die("a PNG needs a file: nano graph FILE -o graph.png")
    table = compile_one(file, nodes)
    if kind == "mermaid":
        if execution is not None:
            raise die("--execution highlights an image: add -o graph.svg (or --format svg)")
        text = to_mermaid(table)
        if output is None:
            print(text)
        else:
            _write(output, (text + "\n").encode())
        return
    from nanoservice.workflow.graph_svg import Drawing, to_png, to_svg

    drawing = Drawing(table)
    if execution is not None:
        drawing = run(_path_of(table, execution, nats_url))
    svg = to_svg(drawing)
    if output is None:
        sys.stdout.write(svg)
        return
    _write(output, to_png(svg) if kind == "png" else svg.encode())
    console.print(f"wrote {output} ({kind}, {len(table.steps)} steps)")


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise die(f"cannot write {path}: {exc.strerror}") from None


async def _path_of(table: RoutingTable, execution: str, nats_url: str | None) -> Drawing:
    """The steps an execution ran and the edges it took, from its trace."""
    from nanoservice.cli.debug_common import check_token, session
    from nanoservice.inspect.trace import trace_execution
    from nanoservice.nats.connect import resolve_url
    from nanoservice.workflow.graph_svg import Drawing

    check_token("execution id", execution)
    async with session(resolve_url(nats_url), "nano graph") as s:
        s.tables.setdefault(table.workflow, table)
        trace = await trace_execution(s.nc, s.tables, table.workflow, execution)
    edges: set[tuple[str, str]] = set()
    for step in trace.steps:
        edges.update((step.step, target) for target in step.next)
        if "trigger" in step.inputs:
            edges.add(("_trigger", step.step))
        if step.outcome == "done":
            edges.add((step.step, "_done"))
    return Drawing(table, {step.step for step in trace.steps}, edges)


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
