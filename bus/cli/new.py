"""``nano new project|node|workflow NAME``: start something from the ``templates/`` folder.

A template is a real, runnable project whose placeholder names (``myproject``, ``mynode``,
``myflow``) are ordinary identifiers; copying renames them in file names and contents, so
a template's own tests run on the template as it stands.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from nanoservice.cli.common import console, die

__all__ = ["SKIPPED", "Template", "copy_template", "new_app", "templates_root"]

new_app = typer.Typer(
    help="Start a project, a node package or a workflow from a template.",
    no_args_is_help=True,
)

SKIPPED = frozenset(
    {"node_modules", "__pycache__", ".nano", ".pytest_cache", "dist", "build", ".venv"}
)
"""Names never copied out of a template (what running its tests leaves behind)."""

_PROJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
_NODE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


@dataclass(frozen=True)
class Template:
    """A folder (or one file) of ``templates/`` and the placeholder renamed on copy."""

    path: str
    placeholder: str
    rule: re.Pattern[str]
    rule_text: str


PROJECT = Template("project", "myproject", _PROJECT_NAME, "a letter, then letters, digits, _ or -")
NODE_PY = Template("node-py", "mynode", _NODE_NAME, "a lower-case Python identifier")
NODE_TS = Template("node-ts", "mynode", _NODE_NAME, "a lower-case Python identifier")
WORKFLOW = Template("workflow/myflow.yaml", "myflow", _PROJECT_NAME, "a subject token")


def templates_root() -> Path:
    """``$NANO_TEMPLATES``, else the ``templates/`` folder beside the ``nanoservice`` sources."""
    given = os.environ.get("NANO_TEMPLATES")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "templates"


def _renames(template: Template, name: str) -> list[tuple[str, str]]:
    """Placeholder spellings to replace, longest first."""
    camel = "".join(part.capitalize() for part in re.split(r"[_-]", name))
    pairs = [
        (f"nano-node-{template.placeholder}", f"nano-node-{name.replace('_', '-')}"),
        (template.placeholder.capitalize(), camel),
        (template.placeholder, name),
    ]
    return pairs


def _rename(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def copy_template(template: Template, name: str, target: Path, root: Path | None = None) -> int:
    """Copy ``template`` to ``target`` renaming its placeholder to ``name``; files written.

    Raises ``ValueError`` with a one-line reason for a bad name, a missing template or a
    target that is not empty (nothing is written then).
    """
    if not template.rule.match(name):
        raise ValueError(f"invalid name {name!r}: use {template.rule_text}")
    source = (root or templates_root()) / template.path
    if not source.exists():
        raise ValueError(
            f"template {template.path!r} not found in {source.parent} (set NANO_TEMPLATES "
            "to the templates/ folder of a nanoservice checkout)"
        )
    pairs = _renames(template, name)
    if source.is_file():
        if target.exists():
            raise ValueError(f"{target} exists already; choose another name or --dir")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_rename(source.read_text(), pairs))
        return 1
    if target.is_file() or (target.is_dir() and any(target.iterdir())):
        raise ValueError(f"{target} is not empty; choose a new or empty folder")
    written = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if SKIPPED.intersection(relative.parts) or path.is_dir():
            continue
        if any(part.endswith(".egg-info") for part in relative.parts):
            continue
        out = target / _rename(str(relative), pairs)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            out.write_text(_rename(data.decode("utf-8"), pairs))
        except UnicodeDecodeError:
            out.write_bytes(data)
        shutil.copymode(path, out)
        written += 1
    return written


def _create(template: Template, name: str, target: Path, then: str) -> None:
    try:
        count = copy_template(template, name, target)
    except (ValueError, OSError) as exc:
        raise die(str(exc)) from None
    files = "1 file" if count == 1 else f"{count} files"
    console.print(f"created {target} ({files}); next: {then}", soft_wrap=True)


Dir = Annotated[Path | None, typer.Option("--dir", help="Where to write (default: ./NAME).")]


@new_app.command("project")
def new_project(
    name: Annotated[str, typer.Argument(help="The project's name.")], dir: Dir = None
) -> None:
    """A project: nano.yaml, workflows/hello.yaml, a local node in nodes/, tests."""
    target = dir or Path(name)
    _create(PROJECT, name, target, f"cd {target} && nano up")


@new_app.command("node")
def new_node(
    name: Annotated[str, typer.Argument(help="The node's name, as workflows write it.")],
    dir: Annotated[
        Path | None, typer.Option("--dir", help="Where to write (default: ./nano-node-NAME).")
    ] = None,
    ts: Annotated[bool, typer.Option("--ts", help="A TypeScript node instead.")] = False,
) -> None:
    """A node package nano-node-NAME (Python by default, --ts for TypeScript), with tests."""
    target = dir or Path(f"nano-node-{name.replace('_', '-')}")
    if ts:
        _create(NODE_TS, name, target, f"cd {target} && npm ci && npm test")
    else:
        _create(NODE_PY, name, target, f"pip install -e {target} && nano nodes list")


@new_app.command("workflow")
def new_workflow(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    dir: Annotated[Path, typer.Option("--dir", help="The folder of workflow files.")] = Path(
        "workflows"
    ),
) -> None:
    """A workflow file DIR/NAME.yaml (refuses to overwrite one)."""
    target = dir / f"{name}.yaml"
    _create(WORKFLOW, name, target, f"nano validate {target}")
