"""The join gate of a join step: record a branch, fire once, time out, forget when over.

A branch's arrival is recorded in KV by CAS (:mod:`nanoservice.runtime.joins`). The
delivery that completes the join continues through the pipeline with the merged envelope;
every other arrival is settled here. Join timers travel on their own subject and consumer
(``nano.<wf>._timers.<step>.<execution>``), never on the join's, so waiting timers cannot
use up the join consumer's ack-pending slots. Once every branch is resolved and the join
has fired, its key is deleted after the delivery that saw that is acked.
"""

from __future__ import annotations

import time

from nanoservice import subjects
from nanoservice.errors import NonRetryableError, RoutingError
from nanoservice.runtime.decision import DeadLetter, Decision, Done, Outbound, Publish, Wait
from nanoservice.runtime.envelope import Envelope, ErrorInfo, loop_suffix, msg_id
from nanoservice.runtime.joins import Decision as JoinDecision
from nanoservice.runtime.joins import JoinStore, merge
from nanoservice.runtime.outbox import Outbox
from nanoservice.runtime.routing import Plan
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import (
    EXECUTION,
    JOIN_KEY,
    JOIN_TIMER,
    MSG_ID,
    REVISION,
    SKIP,
    STEP,
    Delivery,
)

__all__ = ["Arrival", "JoinGate"]


class Arrival:
    """A delivery that fires the join: its merged envelope, and the key to forget after."""

    __slots__ = ("cleanup", "env")

    def __init__(self, env: Envelope, cleanup: str | None) -> None:
        self.env = env
        self.cleanup = cleanup


class JoinGate:
    """Join arrivals and timers of one join step."""

    def __init__(self, step: CompiledStep, store: JoinStore | None, outbox: Outbox) -> None:
        join = step.step.join
        assert join is not None
        self.step = step
        self.join = join
        self.store = store
        self.outbox = outbox
        self.timer_prefix = subjects.timer_prefix(step.workflow, step.name) + "."

    def key(self, execution: str, loops: dict[str, int]) -> str:
        """``<workflow>.<step>.<execution>[.<loop iterations>]`` (docs/protocol.md)."""
        suffix = loop_suffix(loops)
        key = f"{self.step.workflow}.{self.step.name}.{execution}"
        return f"{key}.{suffix}" if suffix else key

    def _store(self) -> JoinStore:
        if self.store is None:
            raise NonRetryableError("joins need a KV store (host started without one)")
        return self.store

    async def arrive(self, delivery: Delivery, execution: str, env: Envelope) -> Arrival | Decision:
        """Record a branch: an :class:`Arrival` if this delivery fires, else its decision."""
        join, headers = self.join, delivery.headers
        branch = headers.get(SKIP) or headers.get(STEP, "")
        if branch not in join.steps:
            raise RoutingError(f"'{branch}' is not a branch of this join ({join.steps})")
        key = self.key(execution, env.loops)
        outcome = await self._store().arrive(
            key,
            branch,
            None if SKIP in headers else env,
            branches=join.steps,
            mode=join.mode,
        )
        cleanup = key if outcome.complete else None
        if outcome.decision is JoinDecision.FIRE:
            return Arrival(merge(outcome.state, join.steps), cleanup)
        if outcome.decision is JoinDecision.DEAD:
            # No branch came: this join is a dead path too; pass that on.
            skips = self.outbox.skips(execution, env, [], self.step.step.successors())
            return Publish(skips, outcome="skipped", cleanup=cleanup)
        if outcome.created and join.timeout is not None and not outcome.complete:
            deadline = outcome.state.started + join.timeout
            return Publish([self._timer(execution, env, key, deadline)], outcome="waiting")
        return Done(
            outcome="waiting" if outcome.decision is JoinDecision.WAIT else "ignored",
            cleanup=cleanup,
        )

    def _timer(self, execution: str, env: Envelope, key: str, deadline: float) -> Outbound:
        return Outbound(
            self.timer_prefix + execution,
            b"",
            {
                EXECUTION: execution,
                JOIN_TIMER: f"{deadline:.3f}",
                STEP: self.step.name,
                JOIN_KEY: key,
                REVISION: self.step.revision,
                MSG_ID: msg_id(execution, self.step.name, "timer", env.loops),
            },
        )

    async def timer(self, delivery: Delivery, execution: str) -> Decision:
        """A join timer: wait until its deadline, then claim the join for ``on_timeout``."""
        join = self.join
        remaining = float(delivery.headers[JOIN_TIMER]) - time.time()
        if remaining > 0.01:
            return Wait(remaining)
        key = delivery.headers.get(JOIN_KEY) or self.key(execution, {})
        outcome = await self._store().time_out(key)
        if outcome.decision is not JoinDecision.TIMEOUT:
            return Done(outcome="ignored")
        partial = {b: env.prev for b, env in outcome.state.arrived.items()}
        missing = [b for b in join.steps if b not in outcome.state.arrived]
        message = f"join timed out after {join.timeout:g} s waiting for {', '.join(missing)}"
        first = next(iter(outcome.state.arrived.values()), Envelope())
        if not join.on_timeout:
            return DeadLetter(ErrorInfo("JoinTimeout", message), first, execution)
        failure = {
            "error": {"type": "JoinTimeout", "message": message},
            "step": self.step.name,
            "arrived": partial,
            "missing": missing,
        }
        plan = Plan(list(join.on_timeout), ["timeout"], [], first)
        return Publish(
            self.outbox.forward(delivery, execution, plan, failure), outcome="timeout_route"
        )
