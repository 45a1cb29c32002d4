"""The node registry: an object (never a global) mapping node names to node types.

Nodes arrive from installed packages (entry point group ``nanoservice.nodes``) and from a
project's local ``nodes/`` folder. Tests build, copy or narrow registries freely.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from nanoservice.errors import NanoError, UnknownNodeError
from nanoservice.sdk.node import Node, NodeType, as_node_type

__all__ = ["ENTRY_POINT_GROUP", "Registry"]

ENTRY_POINT_GROUP = "nanoservice.nodes"


class Registry:
    """Node types by name."""

    def __init__(self, types: Iterable[Any] = ()) -> None:
        self._types: dict[str, NodeType] = {}
        for item in types:
            self.add(item)

    def add(self, obj: Any, *, replace: bool = False) -> NodeType:
        node_type = as_node_type(obj)
        if node_type.name in self._types and not replace:
            raise NanoError(f"node '{node_type.name}' is registered twice")
        self._types[node_type.name] = node_type
        return node_type

    def get(self, name: str) -> NodeType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownNodeError(name, list(self._types)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def copy(self) -> Registry:
        return Registry(self._types.values())

    def narrow(self, names: Iterable[str]) -> Registry:
        return Registry(self.get(n) for n in names)

    @classmethod
    def discover(cls, local_dirs: Iterable[str | Path] = ()) -> Registry:
        """Installed nodes (entry points), then each local folder's ``*.py`` node modules."""
        registry = cls()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            registry.add(ep.load(), replace=True)
        for folder in local_dirs:
            for obj in load_local_nodes(Path(folder)):
                registry.add(obj, replace=True)
        return registry


def load_local_nodes(folder: Path) -> list[NodeType]:
    """Import every ``*.py`` in ``folder`` and collect the nodes defined there."""
    found: list[NodeType] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"nanoservice_local_nodes.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise NanoError(f"{path}: cannot import node module: {exc!r}") from exc
        for value in vars(module).values():
            if isinstance(value, NodeType) or (
                isinstance(value, type)
                and issubclass(value, Node)
                and value is not Node
                and value.__module__ == module_name
                and getattr(value, "name", None)
            ):
                found.append(as_node_type(value))
    return found
