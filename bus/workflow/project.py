"""A project on disk: its workflow files, its local nodes, compiled together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from nanoservice.errors import NanoError, Problem, WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file
from nanoservice.workflow.table import RoutingTable

__all__ = ["WORKFLOW_SUFFIXES", "compile_files", "find_workflow_files", "project_registry"]

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")


def find_workflow_files(paths: Sequence[str | Path] = ()) -> list[Path]:
    """The given files, the workflow files in given folders, or ``./workflows/*``."""
    found: list[Path] = []
    targets = [Path(p) for p in paths] or [Path("workflows")]
    for target in targets:
        if target.is_dir():
            found += sorted(p for p in target.iterdir() if p.suffix in WORKFLOW_SUFFIXES)
        elif target.exists():
            found.append(target)
        else:
            raise NanoError(f"{target}: no such file or folder")
    if not found:
        raise NanoError(
            f"no workflow files in {', '.join(str(t) for t in targets)} "
            f"(looked for {', '.join(WORKFLOW_SUFFIXES)})"
        )
    return found


def project_registry(local_nodes: Iterable[str | Path] = ("nodes",)) -> Registry:
    """Installed nodes plus a project's local node folders (skipping the built-in package)."""
    from nanoservice import nodes as builtin

    builtin_dir = Path(builtin.__file__).resolve().parent
    folders = [Path(f) for f in local_nodes if Path(f).resolve() != builtin_dir]
    return Registry.discover(folders)


def compile_files(files: Iterable[Path], registry: Registry) -> list[RoutingTable]:
    """Compile every file; raise one :class:`WorkflowError` with all problems of all files."""
    tables: list[RoutingTable] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            table = compile_file(path, registry)
        except WorkflowError as exc:
            problems += exc.problems
            continue
        if table.workflow in seen:
            problems.append(
                Problem(
                    f"workflow name '{table.workflow}' is also used by {seen[table.workflow]}",
                    file=str(path),
                )
            )
            continue
        seen[table.workflow] = path
        tables.append(table)
    for table in tables:
        for step in table.steps.values():
            if step.call is not None and step.call.workflow not in seen:
                problems.append(
                    Problem(
                        f"calls workflow '{step.call.workflow}', which is not among the files "
                        "compiled together",
                        file=table.source,
                        step=step.name,
                        hint=f"known: {', '.join(sorted(seen))}",
                    )
                )
    if problems:
        raise WorkflowError(problems)
    return tables
