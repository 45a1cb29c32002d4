"""The node registry: an object (never a global) mapping node names to node types.

Nodes arrive from installed packages (entry point group ``nanoservice.nodes``) and from a
project's local ``nodes/`` folder. Tests build, copy or narrow registries freely.

A name belongs to one node: a local or installed node named like a built-in or another
installed node is refused, naming both origins, unless it sets ``override = True``
(``@node("x", override=True)``), which replaces the other on purpose. Two installed
distributions declaring one name are refused before anything is imported, unless the
project's ``nano.yaml`` says which to use (``prefer``, see :mod:`.catalog`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nanoservice.errors import NanoError, UnknownNodeError
from nanoservice.sdk.catalog import ENTRY_POINT_GROUP, installed_nodes
from nanoservice.sdk.node import Node, NodeType, as_node_type

__all__ = ["ENTRY_POINT_GROUP", "Registry"]


class Registry:
    """Node types by name."""

    def __init__(self, types: Iterable[Any] = ()) -> None:
        self._types: dict[str, NodeType] = {}
        self._origins: dict[str, str] = {}
        for item in types:
            self.add(item)

    def add(self, obj: Any, *, replace: bool = False, origin: str | None = None) -> NodeType:
        """Register a node; a name taken already is an error unless ``replace``.

        With an ``origin`` (where the node comes from, e.g. ``the local node in
        nodes/x.py``), a clash follows the override rule: the node that sets ``override``
        wins; neither or both is an error naming both origins.
        """
        node_type = as_node_type(obj)
        name = node_type.name
        old = self._types.get(name)
        if old is node_type:  # the same node again (a local module imported it): no clash
            return old
        if old is not None and origin is not None:
            first = self._origins.get(name, "a node registered in code")
            if node_type.override == old.override:
                hint = (
                    "both set override"
                    if old.override
                    else "rename one, or set override=True on the one meant to win"
                )
                raise NanoError(f"node '{name}': {origin} clashes with {first} ({hint})")
            if old.override:
                return old
        elif old is not None and not replace:
            raise NanoError(f"node '{name}' is registered twice")
        self._types[name] = node_type
        if origin is not None:
            self._origins[name] = origin
        return node_type

    def origin(self, name: str) -> str | None:
        """Where the node called ``name`` came from, when discovered."""
        return self._origins.get(name)

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
    def discover(
        cls, local_dirs: Iterable[str | Path] = (), prefer: Mapping[str, str] | None = None
    ) -> Registry:
        """Installed nodes (entry points), then each local folder's ``*.py`` node modules.

        ``prefer`` maps a node name to the distribution that provides it, where two
        installed distributions declare the name.
        """
        registry = cls()
        for entry in installed_nodes(prefer):
            assert entry.entry_point is not None
            if entry.builtin:
                origin = f"the built-in node ({entry.target})"
            else:
                origin = f"the installed node (package {entry.distribution}: {entry.target})"
            try:
                loaded = as_node_type(entry.entry_point.load())
            except Exception as exc:
                raise NanoError(f"{origin}: cannot load node '{entry.name}': {exc!r}") from exc
            if loaded.name != entry.name:
                raise NanoError(
                    f"{origin}: the entry point '{entry.name}' loads a node named "
                    f"'{loaded.name}'; name them alike"
                )
            registry.add(loaded, origin=origin)
        for folder in local_dirs:
            for node_type, path in load_local_nodes(Path(folder)):
                registry.add(node_type, origin=f"the local node in {path}")
        return registry


def load_local_nodes(folder: Path) -> list[tuple[NodeType, Path]]:
    """Import every ``*.py`` in ``folder``; the nodes defined there, with their files."""
    found: list[tuple[NodeType, Path]] = []
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
                found.append((as_node_type(value), path))
    return found
