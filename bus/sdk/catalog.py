"""What nodes exist, read from package metadata and source files, without importing any node.

Installed nodes are entry points in the ``nanoservice.nodes`` group: the entry point's name
is the node's name. Two distributions declaring one name are a clash, resolved only by
naming the one to use (``prefer``, from the project's ``nano.yaml``).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, distributions
from pathlib import Path

from nanoservice.errors import NanoError

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "NodeEntry",
    "installed_nodes",
    "local_nodes",
]

ENTRY_POINT_GROUP = "nanoservice.nodes"
BUILTIN_DISTRIBUTION = "nanoservice-py"


@dataclass(frozen=True)
class NodeEntry:
    """One declared node: where it comes from, as metadata or source tells it."""

    name: str
    distribution: str
    """The distribution's name, or ``local`` for a project's ``nodes/`` folder."""
    version: str
    summary: str
    target: str
    """``module:attribute`` of an entry point, or the file of a local node."""
    entry_point: EntryPoint | None = None

    @property
    def builtin(self) -> bool:
        return self.target.startswith("nanoservice.nodes.")


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_nodes(
    prefer: Mapping[str, str] | None = None, dists: Iterable[Distribution] | None = None
) -> list[NodeEntry]:
    """Every installed node by name, sorted; a name two distributions declare is a
    :class:`NanoError` naming both, unless ``prefer`` names the distribution to use."""
    prefer = {name: _canonical(dist) for name, dist in (prefer or {}).items()}
    by_name: dict[str, list[NodeEntry]] = {}
    seen: set[str] = set()
    for dist in distributions() if dists is None else dists:
        dist_name = dist.metadata["Name"] or "?"
        if _canonical(dist_name) in seen:  # the same distribution twice on sys.path
            continue
        seen.add(_canonical(dist_name))
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            summary = _module_summary(ep.module).removeprefix(f"{ep.name}: ")
            summary = summary or dist.metadata["Summary"] or ""
            entry = NodeEntry(ep.name, dist_name, dist.version, summary, ep.value, ep)
            by_name.setdefault(ep.name, []).append(entry)
    chosen: list[NodeEntry] = []
    for name, entries in sorted(by_name.items()):
        entries.sort(key=lambda e: _canonical(e.distribution))
        if name in prefer:
            picked = [e for e in entries if _canonical(e.distribution) == prefer[name]]
            if not picked:
                have = ", ".join(e.distribution for e in entries)
                raise NanoError(
                    f"node '{name}': nano.yaml prefers distribution {prefer[name]}, which "
                    f"does not declare it (declared by: {have})"
                )
            entries = picked
        if len(entries) > 1:
            both = " and ".join(f"{e.distribution} {e.version} ({e.target})" for e in entries)
            raise NanoError(
                f"node '{name}' is declared by two installed distributions: {both}; "
                f"choose one in nano.yaml (prefer: {{{name}: {entries[0].distribution}}}) "
                "or uninstall one"
            )
        chosen.append(entries[0])
    return chosen


def _module_summary(module: str) -> str:
    """The first line of a module's docstring, read from its source file (not executed;
    finding a submodule imports its parent packages only)."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return ""
        doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text()))
    except (ImportError, ValueError, SyntaxError, OSError, UnicodeDecodeError):
        return ""
    return (doc or "").strip().split("\n", 1)[0]


def local_nodes(folder: Path) -> list[NodeEntry]:
    """Nodes a folder's ``*.py`` modules define, found by reading (not importing) them:
    ``@node("name")`` decorators and classes with ``name = "..."``."""
    found: list[NodeEntry] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as exc:
            raise NanoError(f"{path}: cannot read node module: {exc}") from None
        for item in tree.body:
            name = _declared_name(item)
            if name is not None:
                doc = None
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    doc = ast.get_docstring(item)
                summary = (doc or ast.get_docstring(tree) or "").strip().split("\n", 1)[0]
                found.append(NodeEntry(name, "local", "-", summary, str(path)))
    return found


def _declared_name(item: ast.stmt) -> str | None:
    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
        for deco in item.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Name | ast.Attribute)
                and (getattr(deco.func, "id", None) or getattr(deco.func, "attr", None)) == "node"
                and deco.args
                and isinstance(deco.args[0], ast.Constant)
                and isinstance(deco.args[0].value, str)
            ):
                return deco.args[0].value
    if isinstance(item, ast.ClassDef):
        for stmt in item.body:
            if (
                isinstance(stmt, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                return stmt.value.value
    return None
