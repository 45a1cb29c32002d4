"""Join state in a JetStream KV bucket, updated by compare-and-set.

One key per join instance (``<workflow>.<step>.<execution>[.<loop iterations>]``) holds the
branches that arrived (with their envelopes), the branches known not to come (dead paths),
and who fired the join. Every change is a CAS write, so two replicas, a redelivery or a crash
can never fire a join twice or lose a branch: the branch whose write completed the join is
recorded as its firer, and only a delivery from that branch (the first, or its redelivery)
runs the step. A key is deleted once every branch is resolved and the join has fired (see
:class:`~nanoservice.runtime.join_gate.JoinGate`), so join state does not outlive its execution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import msgspec

from nanoservice.runtime.envelope import Envelope
from nanoservice.types import KeyExistsError, KeyNotFoundError, KeyValueStore

__all__ = ["Decision", "JoinState", "JoinStore", "merge"]

TIMEOUT = "_timeout"
DEAD = "_dead"


class JoinState(msgspec.Struct, omit_defaults=True):
    arrived: dict[str, Envelope] = {}
    skipped: list[str] = []
    fired: str | None = None
    started: float = 0.0


class Decision(Enum):
    FIRE = "fire"  # this delivery runs the step
    WAIT = "wait"  # recorded; others still to come
    IGNORE = "ignore"  # already fired (or timed out) by someone else
    DEAD = "dead"  # every branch was skipped: the join itself is a dead path
    TIMEOUT = "timeout"  # the timer won: route the partial results


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    state: JoinState
    created: bool = False
    complete: bool = False
    """Every branch has arrived or been skipped: nothing more will come for this key."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(JoinState).decode


class JoinStore:
    """CAS updates of join states."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    async def _load(self, key: str) -> tuple[JoinState | None, int | None]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, None
        if not entry.value:
            return None, None
        return _decode(entry.value), entry.revision

    async def _store(self, key: str, state: JoinState, revision: int | None) -> bool:
        try:
            if revision is None:
                await self.kv.create(key, _encode(state))
            else:
                await self.kv.update(key, _encode(state), last=revision)
        except KeyExistsError:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Forget a join that is over."""
        await self.kv.delete(key)

    async def arrive(
        self, key: str, branch: str, envelope: Envelope | None, *, branches: list[str], mode: str
    ) -> Outcome:
        """Record a branch (``envelope`` None: the branch is a dead path) and decide."""
        while True:
            state, revision = await self._load(key)
            created = state is None
            if state is None:
                state = JoinState(started=time.time())
            recorded = branch in state.arrived or branch in state.skipped
            if state.fired is not None and (
                recorded or state.fired in (branch, f"{DEAD}:{branch}")
            ):
                complete = _resolved(state) >= set(branches)
                if state.fired == branch:
                    return Outcome(Decision.FIRE, state, complete=complete)
                if state.fired == f"{DEAD}:{branch}":
                    return Outcome(Decision.DEAD, state, complete=complete)
                return Outcome(Decision.IGNORE, state, complete=complete)
            if recorded:
                return Outcome(Decision.WAIT, state)  # redelivery of a recorded branch
            if envelope is None:
                state.skipped = [*state.skipped, branch]
            else:
                state.arrived = {**state.arrived, branch: envelope}
            complete = _resolved(state) >= set(branches)
            decision = Decision.WAIT
            if state.fired is not None:
                decision = Decision.IGNORE  # a late branch: recorded so the key can go
            elif mode == "any" and envelope is not None:
                state.fired, decision = branch, Decision.FIRE
            elif complete:
                if state.arrived:
                    state.fired, decision = branch, Decision.FIRE
                else:
                    state.fired, decision = f"{DEAD}:{branch}", Decision.DEAD
            if await self._store(key, state, revision):
                return Outcome(decision, state, created=created, complete=complete)

    async def time_out(self, key: str) -> Outcome:
        """The join's timer fired: claim the join unless it already fired."""
        while True:
            state, revision = await self._load(key)
            if state is None:  # the join is over and forgotten
                return Outcome(Decision.IGNORE, JoinState())
            if state.fired is not None:
                decision = Decision.TIMEOUT if state.fired == TIMEOUT else Decision.IGNORE
                return Outcome(decision, state)
            state.fired = TIMEOUT
            if await self._store(key, state, revision):
                return Outcome(Decision.TIMEOUT, state)


def _resolved(state: JoinState) -> set[str]:
    return set(state.arrived) | set(state.skipped)


def merge(state: JoinState, branches: list[str]) -> Envelope:
    """One envelope from the arrived branches: ``prev`` maps branch -> its output."""
    arrived = [(b, state.arrived[b]) for b in branches if b in state.arrived]
    first = arrived[0][1]
    steps: dict[str, dict[str, object]] = {}
    variables: dict[str, object] = {}
    for _, env in arrived:
        steps.update(env.steps)
        variables.update(env.vars)
    return Envelope(
        input=first.input,
        prev={b: env.prev for b, env in arrived},
        steps=steps,
        vars=variables,
        loops=dict(first.loops),
        parent=first.parent,
        parent_revision=first.parent_revision,
    )
