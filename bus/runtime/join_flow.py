"""Join steps: recording branches in KV by CAS, firing once, timing out."""

from __future__ import annotations

import time

from nanoservice.errors import NonRetryableError, RoutingError
from nanoservice.runtime.envelope import Envelope, loop_suffix, msg_id
from nanoservice.runtime.joins import Decision, merge
from nanoservice.runtime.step_base import Plan, StepBase, settle
from nanoservice.types import EXECUTION, JOIN_TIMER, MSG_ID, SKIP, STEP, Delivery

__all__ = ["JoinFlow"]


class JoinFlow(StepBase):
    """The join half of a step runner."""

    def _join_key(self, execution: str, loops: dict[str, int]) -> str:
        suffix = loop_suffix(loops)
        key = f"{self.wf}.{self.step.name}.{execution}"
        return f"{key}.{suffix}" if suffix else key

    async def _join_arrival(
        self, delivery: Delivery, execution: str, env: Envelope
    ) -> Envelope | None:
        """Record a branch; the merged envelope if this delivery fires the join, else None."""
        join, store = self.step.join, self.services.joins
        assert join is not None
        if store is None:
            raise NonRetryableError("joins need a JetStream KV store (host started without)")
        headers = delivery.headers
        branch = headers.get(SKIP) or headers.get(STEP, "")
        if branch not in join.steps:
            raise RoutingError(f"'{branch}' is not a branch of this join ({join.steps})")
        skipped = SKIP in headers
        key = self._join_key(execution, env.loops)
        outcome = await store.arrive(
            key, branch, None if skipped else env, branches=join.steps, mode=join.mode
        )
        if outcome.created and join.timeout is not None:
            deadline = outcome.state.started + join.timeout
            await settle(
                [
                    await self.transport.publish(
                        self.prefix + execution,
                        b"",
                        {
                            EXECUTION: execution,
                            JOIN_TIMER: f"{deadline:.3f}",
                            STEP: self.step.name,
                            "Nano-Join-Key": key,
                            MSG_ID: msg_id(execution, self.step.name, "timer", env.loops),
                        },
                    )
                ]
            )
        if outcome.decision is Decision.FIRE:
            return merge(outcome.state, join.steps)
        if outcome.decision is Decision.DEAD:
            # No branch came: this join is a dead path too; pass that on.
            successors = self.step.successors()
            pending = await self._skip_dead_paths(execution, env, [], successors)
            await settle(pending)
        await delivery.ack()
        return None

    async def _join_timer(self, delivery: Delivery, execution: str) -> None:
        join, store = self.step.join, self.services.joins
        if join is None or store is None:
            await delivery.ack()
            return
        remaining = float(delivery.headers[JOIN_TIMER]) - time.time()
        if remaining > 0.01:
            await delivery.nak(remaining)
            return
        key = delivery.headers.get("Nano-Join-Key") or self._join_key(execution, {})
        outcome = await store.time_out(key)
        if outcome.decision is not Decision.TIMEOUT:
            await delivery.ack()
            return
        partial = {b: env.prev for b, env in outcome.state.arrived.items()}
        missing = [b for b in join.steps if b not in outcome.state.arrived]
        message = f"join timed out after {join.timeout:g} s waiting for {', '.join(missing)}"
        first = next(iter(outcome.state.arrived.values()), Envelope())
        if not join.on_timeout:
            await self._failed(delivery, execution, first, NonRetryableError(message))
            return
        failure = {
            "error": {"type": "JoinTimeout", "message": message},
            "step": self.step.name,
            "arrived": partial,
            "missing": missing,
        }
        plan = Plan(list(join.on_timeout), ["timeout"], [], first)
        await self._forward(delivery, execution, plan, failure)
