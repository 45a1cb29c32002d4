"""A step compiled for running: its route in the table and the expressions it evaluates.

Built once per step when a host starts (or picks up a new table revision); every part of the
pipeline reads from it and none of them changes it.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from nanoservice.runtime.envelope import Envelope
from nanoservice.workflow.expr import Expression
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["CompiledStep", "reachability"]


class CompiledStep:
    """One step of one table revision, with everything precomputed that messages share."""

    def __init__(
        self,
        table: RoutingTable,
        step: StepRoute,
        callers: frozenset[str] = frozenset(),
        reach: dict[str, set[str]] | None = None,
    ) -> None:
        self.table = table
        self.step = step
        self.name = step.name
        self.workflow = table.workflow
        self.revision = table.revision
        self.prefix = step.subject + "."
        self.start_prefix = table.start_subject + "."
        self.callers = callers
        """Step subject prefixes of the calling steps this workflow may return to."""
        self.input_expr = Expression(step.input) if step.input else None
        self.output_expr = Expression(table.output) if table.output else None
        self.conditions = [(name, Expression(r.when)) for name, r in step.routes.items() if r.when]
        self.until = Expression(step.loop.until) if step.loop else None
        self.items = Expression(step.for_each.items) if step.for_each else None
        self.set_vars = [(k, Expression(v)) for k, v in step.set_vars.items()]
        self.keep = None if step.keep is None else frozenset(step.keep)
        self.validator = (
            jsonschema.Draft202012Validator(table.input_schema)
            if table.input_schema is not None and step.name in table.start
            else None
        )
        self.reach = reach if reach is not None else reachability(table)
        """Every step reachable from each step (one computation per table, shared)."""
        self.join_branches = [
            (j.name, b)
            for j in table.steps.values()
            if j.join and j.join.mode == "all"
            for b in j.join.steps
        ]
        # Most steps just continue to `next`: their plan is the same for every message.
        self.straight = not (step.routes or step.default or step.loop or step.set_vars)

    def scope(self, execution: str, env: Envelope) -> dict[str, Any]:
        """What expressions see."""
        return {
            "input": env.input,
            "prev": env.prev,
            "steps": env.steps,
            "vars": env.vars,
            "execution": {"id": execution, "workflow": self.workflow},
        }

    def input_of(self, scope: dict[str, Any], default: Any) -> Any:
        """The node's input: the step's ``input`` expression, or ``default``."""
        return self.input_expr.evaluate(scope) if self.input_expr is not None else default

    def carry(self, env: Envelope, output: Any) -> dict[str, dict[str, Any]]:
        """The step outputs that travel onward: only those later steps read."""
        if self.keep is None:
            return {**env.steps, self.name: {"output": output}}
        carried = {k: v for k, v in env.steps.items() if k in self.keep}
        if self.name in self.keep:
            carried[self.name] = {"output": output}
        return carried


def reachability(table: RoutingTable) -> dict[str, set[str]]:
    """For each step, every step reachable from it."""
    reach: dict[str, set[str]] = {}
    for name in table.steps:
        seen: set[str] = set()
        todo = list(table.steps[name].successors())
        while todo:
            current = todo.pop()
            if current not in seen and current in table.steps:
                seen.add(current)
                todo.extend(table.steps[current].successors())
        reach[name] = seen
    return reach
