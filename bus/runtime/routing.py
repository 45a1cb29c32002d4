"""Where a step's output goes: routes chosen by the node or by conditions, loops, dead paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from nanoservice.errors import NonRetryableError, RoutingError
from nanoservice.runtime.envelope import Envelope
from nanoservice.runtime.step import CompiledStep

__all__ = ["LoopLimitError", "Plan", "dead_branches", "plan"]


class LoopLimitError(NonRetryableError):
    """A loop reached its ``max`` without its ``until`` condition holding."""


@dataclass(slots=True)
class Plan:
    """Where a step's output goes: targets, the routes taken, and the targets not taken."""

    targets: list[str]
    routes: list[str]
    untaken: list[str]
    env: Envelope


def plan(
    step: CompiledStep, execution: str, env: Envelope, output: Any, chosen: list[str] | None
) -> Plan:
    """The targets for ``output``: the node's choice, else conditions, loops and defaults."""
    route = step.step
    if chosen is None and step.straight:
        return Plan(list(route.next), [], [], env)
    if step.set_vars or step.until is not None:
        env = msgspec.structs.replace(env)
    if step.set_vars:
        scope = {**step.scope(execution, env), "output": output}
        env.vars = {**env.vars, **{k: e.evaluate(scope) for k, e in step.set_vars}}
    if step.until is not None and route.loop is not None:
        scope = {**step.scope(execution, env), "output": output}
        done = step.until.evaluate(scope)
        if not isinstance(done, bool):
            raise NonRetryableError(f"loop until must be true or false, got {done!r}")
        iteration = env.loops.get(route.name, 0) + 1
        if not done:
            if iteration < route.loop.max:
                env.loops = {**env.loops, route.name: iteration}
                return Plan([route.loop.back_to], [], [], env)
            if route.loop.on_max == "fail":
                raise LoopLimitError(
                    f"loop reached max {route.loop.max} iterations without '{route.loop.until}'"
                )
        env.loops = {k: v for k, v in env.loops.items() if k != route.name}
    if chosen is None and step.conditions:
        scope = {**step.scope(execution, env), "output": output}
        chosen = []
        for name, condition in step.conditions:
            if condition.evaluate(scope) is True:
                chosen.append(name)
                if route.choose == "first":
                    break
    targets = list(route.next)
    for name in chosen or ():
        if name not in route.routes:
            known = ", ".join(route.routes) or "none"
            raise RoutingError(f"node chose route '{name}', but the step's routes are: {known}")
        targets += route.routes[name].to
    if not chosen and route.routes:
        if route.default:
            targets += route.default
        elif not route.next:
            raise RoutingError(
                f"no route chosen or holding; step routes are "
                f"{', '.join(route.routes)} and there is no default"
            )
    targets = list(dict.fromkeys(targets))
    possible = [t for r in route.routes.values() for t in r.to] + list(route.default)
    untaken = [t for t in dict.fromkeys(possible) if t not in targets]
    return Plan(targets, list(chosen or ()), untaken, env)


def dead_branches(
    step: CompiledStep, taken: list[str], untaken: list[str]
) -> list[tuple[str, str]]:
    """``(join, branch)`` pairs whose branch can no longer come (synchronizing merge)."""
    if not untaken or not step.join_branches:
        return []
    live = set(taken).union(*(step.reach[t] for t in taken))
    dead = set(untaken).union(*(step.reach[t] for t in untaken)) - live
    return [
        (join, branch) for join, branch in step.join_branches if branch in dead and join not in dead
    ]
