"""The bridge's routes: every ``trigger.http`` entry of the live routing tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jsonschema

from nanoservice.workflow.table import HttpRoute, RoutingTable
from nanoservice.workflow.triggers import compile_path

__all__ = ["Match", "Routes", "Target"]


@dataclass(frozen=True)
class Target:
    """One route: the workflow it starts and how."""

    table: RoutingTable
    route: HttpRoute
    pattern: re.Pattern[str]
    validator: jsonschema.Draft202012Validator | None


@dataclass(frozen=True)
class Match:
    """A request's route (``target``), or why there is none (``allowed``: methods of a path
    that exists, for a 405)."""

    target: Target | None = None
    params: dict[str, str] | None = None
    allowed: tuple[str, ...] = ()


class Routes:
    """Routes of a set of tables; a path declared by two workflows goes to the first by name
    and ``conflicts`` says so."""

    def __init__(self, tables: Sequence[RoutingTable]) -> None:
        self.targets: list[Target] = []
        self.conflicts: list[str] = []
        seen: dict[tuple[str, str], str] = {}
        for table in sorted(tables, key=lambda t: t.workflow):
            validator = (
                jsonschema.Draft202012Validator(table.input_schema)
                if table.input_schema is not None
                else None
            )
            for route in table.http:
                key = (route.method, compile_path(route.path).pattern)
                if key in seen:
                    self.conflicts.append(
                        f"{route.method} {route.path} of workflow {table.workflow} is "
                        f"already a route of {seen[key]}; ignored"
                    )
                    continue
                seen[key] = table.workflow
                self.targets.append(Target(table, route, compile_path(route.path), validator))
        self.key = tuple((t.workflow, t.revision) for t in tables)

    def match(self, method: str, path: str) -> Match:
        allowed: list[str] = []
        for target in self.targets:
            found = target.pattern.match(path)
            if found is None:
                continue
            if target.route.method == method or (method == "HEAD" and target.route.method == "GET"):
                return Match(target, found.groupdict())
            allowed.append(target.route.method)
        return Match(allowed=tuple(sorted(set(allowed))))
