"""``nano nodes list`` (from package metadata, importing no node) and ``nano nodes info``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from nanoservice.cli.common import NodesDir, console, die
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nanoservice.sdk.node import NodeType

__all__ = ["info_command", "list_command", "node_info", "nodes_app"]

nodes_app = typer.Typer(help="The nodes this project can use.", no_args_is_help=True)


@nodes_app.command("list")
def list_command(nodes: NodesDir = None) -> None:
    """Every node: name, distribution, version, summary (installed, then ./nodes)."""
    from nanoservice.sdk.catalog import installed_nodes, local_nodes
    from nanoservice.workflow.project import local_node_folders
    from nanoservice.workflow.settings import load_settings

    try:
        entries = installed_nodes(load_settings().prefer)
        for folder in local_node_folders(nodes or [Path("nodes")]):
            entries += local_nodes(folder)
    except NanoError as exc:
        raise die(str(exc)) from None
    rows = [(e.name, e.distribution, e.version, e.summary) for e in entries]
    widths = [
        max(len(r[i]) for r in [("name", "distribution", "version", ""), *rows]) for i in range(3)
    ]
    header = ("name", "distribution", "version", "summary")
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        console.print(escape("  ".join([*cells, row[3]]).rstrip()), soft_wrap=True)


@nodes_app.command("info")
def info_command(
    name: Annotated[str, typer.Argument(help="A node's name.")],
    nodes: NodesDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """One node: where it comes from, its docs, config/input/output schemas, an example step."""
    from nanoservice.workflow.project import project_registry

    try:
        registry = project_registry(nodes or [Path("nodes")])
        node_type = registry.get(name)
    except NanoError as exc:
        raise die(str(exc).splitlines()[0]) from None
    info = node_info(node_type, registry.origin(name) or "registered in code")
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out = sys.stdout
    out.write(f"{info['name']}: {info['origin']}\n\n{info['docs'] or '(no docs)'}\n")
    for part in ("config", "input", "output"):
        out.write(f"\n{part} schema:\n{json.dumps(info[part], indent=2)}\n")
    out.write(f"\nexample step:\n{info['example']}")


def node_info(node_type: NodeType, origin: str) -> dict[str, Any]:
    """What ``nano nodes info`` shows, as plain data."""
    from pydantic import TypeAdapter

    def schema(annotation: Any, adapter: Any) -> dict[str, Any]:
        if adapter is None:
            return {"description": "any JSON value"}
        return dict(TypeAdapter(annotation).json_schema())

    config = node_type.config_model.model_json_schema()
    return {
        "name": node_type.name,
        "origin": origin,
        "docs": node_type.description,
        "config": config,
        "input": schema(node_type.input_type, node_type.input_adapter),
        "output": schema(node_type.output_type, node_type.output_adapter),
        "example": _example(node_type.name, config),
    }


def _example(name: str, config: dict[str, Any]) -> str:
    """A step using the node: required config fields as placeholders, defaults as they are."""
    lines = ["steps:", f"  {name}:", f"    node: {name}"]
    props: dict[str, Any] = config.get("properties", {})
    required = set(config.get("required", []))
    fields = [
        f"      {key}: {json.dumps(spec['default'])}"
        if "default" in spec and key not in required
        else f"      {key}: <{spec.get('type', 'value')}>"
        for key, spec in props.items()
    ]
    if fields:
        lines += ["    with:", *fields]
    return "\n".join(lines) + "\n"
