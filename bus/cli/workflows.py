"""``nano validate`` and ``nano compile``: offline checks of workflow files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import NanoError, WorkflowError
from ..project import compile_files, find_workflow_files, project_registry
from .common import console, die, err_console

__all__ = ["compile_command", "validate_command"]

Files = Annotated[
    list[Path] | None, typer.Argument(help="Workflow files or folders (default: ./workflows).")
]
NodesDir = Annotated[
    list[Path] | None, typer.Option("--nodes", help="Local node folders (default: ./nodes).")
]


def validate_command(files: Files = None, nodes: NodesDir = None) -> None:
    """Check workflow files; print every problem with file and line; exit 1 on any."""
    try:
        paths = find_workflow_files(files or [])
        registry = project_registry(nodes or [Path("nodes")])
    except NanoError as exc:
        raise die(str(exc)) from None
    failed = False
    for path in paths:
        try:
            (table,) = compile_files([path], registry)
        except WorkflowError as exc:
            failed = True
            for problem in exc.problems:
                err_console.print(f"[red]error:[/red] {problem}", soft_wrap=True)
            continue
        console.print(
            f"[green]ok[/green] {path}: workflow '{table.workflow}', {len(table.steps)} steps"
        )
    if failed:
        raise typer.Exit(1)


def compile_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")], nodes: NodesDir = None
) -> None:
    """Print the routing table a workflow compiles to (JSON)."""
    try:
        (table,) = compile_files([file], project_registry(nodes or [Path("nodes")]))
    except WorkflowError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(2) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    print(json.dumps(table.to_dict(), indent=2))
