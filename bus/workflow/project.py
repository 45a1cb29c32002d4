"""A project on disk: its workflow files, its local nodes, compiled together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from nanoservice.errors import NanoError, Problem, WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_spec
from nanoservice.workflow.loader import Document, load_document
from nanoservice.workflow.settings import SETTINGS_FILE, load_settings
from nanoservice.workflow.table import RoutingTable

__all__ = [
    "WORKFLOW_SUFFIXES",
    "check_files",
    "compile_files",
    "find_workflow_files",
    "local_node_folders",
    "project_registry",
]

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


def project_registry(
    local_nodes: Iterable[str | Path] = ("nodes",), settings: Path = SETTINGS_FILE
) -> Registry:
    """Installed nodes plus a project's local node folders (skipping the built-in package),
    choosing between installed distributions as the project's ``nano.yaml`` says."""
    folders = local_node_folders(local_nodes)
    return Registry.discover(folders, prefer=load_settings(settings).prefer)


def local_node_folders(local_nodes: Iterable[str | Path] = ("nodes",)) -> list[Path]:
    """The given folders, without the built-in nodes package (``./nodes`` in the checkout)."""
    from nanoservice import nodes as builtin

    builtin_dir = Path(builtin.__file__).resolve().parent
    return [Path(f) for f in local_nodes if Path(f).resolve() != builtin_dir]


def compile_files(files: Iterable[Path], registry: Registry) -> list[RoutingTable]:
    """Compile every file; raise one :class:`WorkflowError` with all problems of all files."""
    tables, problems = check_files(files, registry)
    if problems:
        raise WorkflowError(problems)
    return tables


def check_files(
    files: Iterable[Path], registry: Registry
) -> tuple[list[RoutingTable], list[Problem]]:
    """Compile files together: the tables free of problems, and every problem of every file.

    Each file is compiled on its own, so one broken file hides nothing about the others; then
    the checks across files: names used twice, workflows sharing a stream, calls to workflows
    not among the files.
    """
    compiled: list[tuple[RoutingTable, Document]] = []
    problems: list[Problem] = []
    for path in files:
        try:
            doc = load_document(path)
            compiled.append((compile_spec(doc, registry), doc))
        except WorkflowError as exc:
            problems += exc.problems
        except Exception as exc:  # a bug, but it must not hide the other files' reports
            problems.append(
                Problem(
                    f"internal error compiling this file: {type(exc).__name__}: {exc}",
                    file=str(path),
                    line=1,
                    hint="a bug in nanoservice; please report it with the file",
                )
            )
    crossed = _cross_file_problems(compiled)
    problems += [p for ps in crossed.values() for p in ps]
    return [table for table, _ in compiled if not crossed.get(table.source)], problems


def _cross_file_problems(
    compiled: list[tuple[RoutingTable, Document]],
) -> dict[str, list[Problem]]:
    found: dict[str, list[Problem]] = {}
    by_name: dict[str, Document] = {}
    by_stream: dict[str, tuple[str, Document]] = {}
    for table, doc in compiled:
        here = found.setdefault(table.source, [])
        if table.workflow in by_name:
            other = by_name[table.workflow]
            where = f"{other.file}:{other.line_of(('name',))}"
            here.append(
                doc.problem(f"workflow name '{table.workflow}' is also used by {where}", ("name",))
            )
            continue
        stream = table.stream.name
        if stream in by_stream:
            name, other = by_stream[stream]
            where = f"{other.file}:{other.line_of(('name',))}"
            here.append(
                doc.problem(
                    f"workflow '{table.workflow}' would share stream {stream} with workflow "
                    f"'{name}' ({where}); each would rewrite the other's subjects",
                    ("name",),
                    hint="stream names ignore case and read '-' as '_': rename one",
                )
            )
            continue
        by_name[table.workflow] = doc
        by_stream[stream] = (table.workflow, doc)
    for table, doc in compiled:
        for step in table.steps.values():
            if step.call is not None and step.call.workflow not in by_name:
                found[table.source].append(
                    doc.problem(
                        f"calls workflow '{step.call.workflow}', which is not among the files "
                        "compiled together",
                        ("steps", step.name, "call", "workflow"),
                        step=step.name,
                        hint=f"known: {', '.join(sorted(by_name))}",
                    )
                )
    return found
