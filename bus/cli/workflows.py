"""``nano validate`` and ``nano compile``: offline checks of workflow files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from nanoservice.cli.common import Files, NodesDir, compile_one, console, die, problems
from nanoservice.errors import NanoError, WorkflowError

__all__ = ["compile_command", "validate_command"]


def validate_command(files: Files = None, nodes: NodesDir = None) -> None:
    """Check workflow files; print every problem with file and line; exit 1 on any."""
    from nanoservice.workflow.project import check_files, find_workflow_files, project_registry

    try:
        paths = find_workflow_files(files or [])
        registry = project_registry(nodes or [Path("nodes")])
    except NanoError as exc:
        raise die(str(exc)) from None
    tables, found = check_files(paths, registry)  # together: calls between files resolve
    for table in tables:
        console.print(
            f"[green]ok[/green] {escape(table.source)}: workflow '{table.workflow}', "
            f"{len(table.steps)} steps"
        )
    if found:
        raise problems(WorkflowError(found), code=1)


def compile_command(
    file: Annotated[Path, typer.Argument(help="A workflow file.")], nodes: NodesDir = None
) -> None:
    """Print the routing table a workflow compiles to (JSON)."""
    print(json.dumps(compile_one(file, nodes).to_dict(), indent=2))
