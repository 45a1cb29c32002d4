"""Autoscaling: a group with ``replicas: {min, max}`` follows its consumers' backlog.

Every ``interval`` the backlog (pending + ack-pending messages of the group's step
consumers, read by a callable: through the JetStream API in ``nano up``) gives the wanted
count, ``ceil(backlog / target)`` clamped to ``[min, max]``; a change is made at most once
per ``cooldown`` and each decision is logged with its reason.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nanoservice.deploy.groups import ReplicaPolicy

__all__ = ["Autoscaler", "Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    wanted: int
    reason: str


def decide(current: int, backlog: int, policy: ReplicaPolicy) -> Decision:
    """How many replicas ``backlog`` calls for, and why."""
    raw = math.ceil(backlog / policy.target) if backlog > 0 else 0
    wanted = min(max(raw, policy.min), policy.max)
    why = f"backlog {backlog} (target {policy.target} per replica"
    if raw > policy.max:
        why += f", capped at max {policy.max}"
    elif raw < policy.min:
        why += f", floor min {policy.min}"
    return Decision(wanted, why + ")")


class Autoscaler:
    """Scales one group through ``scale(count)``; ``backlog()`` reads its consumers."""

    def __init__(
        self,
        name: str,
        policy: ReplicaPolicy,
        backlog: Callable[[], Awaitable[int]],
        current: Callable[[], int],
        scale: Callable[[int], None],
        say: Callable[[str], None],
    ) -> None:
        self.name, self.policy = name, policy
        self.backlog, self.current, self.scale, self.say = backlog, current, scale, say
        self.last_change = float("-inf")

    async def step(self) -> Decision | None:
        """One read and, outside the cool-down, one decision; the decision if it scaled."""
        try:
            backlog = await self.backlog()
        except Exception as exc:  # a server election, a missing consumer: try again later
            self.say(f"autoscale {self.name}: cannot read the backlog ({exc}); keeping the count")
            return None
        current = self.current()
        decision = decide(current, backlog, self.policy)
        if decision.wanted == current:
            return None
        now = time.monotonic()
        if now - self.last_change < self.policy.cooldown:
            return None
        self.last_change = now
        verb = "up" if decision.wanted > current else "down"
        self.say(
            f"autoscale {self.name}: {verb} {current} -> {decision.wanted} replicas, "
            f"{decision.reason}"
        )
        self.scale(decision.wanted)
        return decision

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.policy.interval)
