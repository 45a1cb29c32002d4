"""The step pipeline: one straight line from a delivery to its decision, then the settler.

    decode -> (cancelled? join gate / call return / trigger) -> node through the middleware
    chain (once, per item, or a call) -> plan the targets -> one decision -> settle

Each part is a small object of its own (:mod:`.join_gate`, :mod:`.calls`,
:mod:`.foreach`, :mod:`.routing`, :mod:`.outbox`, :mod:`.failure`); this module only
calls them in order. Any exception on the way becomes a decision of the failure policy, so
every delivery is settled exactly once, by :class:`~nanoservice.runtime.settler.Settler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec

from nanoservice import subjects
from nanoservice.errors import InvalidMessageError
from nanoservice.runtime.calls import Caller
from nanoservice.runtime.cancellations import CancelWatcher
from nanoservice.runtime.decision import DeadLetter, Decision, Done, Publish
from nanoservice.runtime.eager import run_with_timeout
from nanoservice.runtime.envelope import Envelope, ErrorInfo, decode_envelope
from nanoservice.runtime.failure import NOT_RETRYABLE, FailurePolicy, UnserializableOutputError
from nanoservice.runtime.foreach import for_each
from nanoservice.runtime.join_gate import Arrival, JoinGate
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.middleware import (
    Invocation,
    Middleware,
    NodeCall,
    chain_messages,
    chain_nodes,
)
from nanoservice.runtime.outbox import Outbox
from nanoservice.runtime.routing import plan
from nanoservice.runtime.settler import Settler
from nanoservice.runtime.step import CompiledStep
from nanoservice.sdk.node import Context, NodeInstance, NodeType, Routed
from nanoservice.types import (
    EXECUTION,
    JOIN_TIMER,
    PARENT,
    PARENT_REVISION,
    RETURN,
    Backend,
    Delivery,
    KeyValueStore,
)

__all__ = ["Parts", "StepPipeline"]

log = logging.getLogger("nanoservice.runtime")


@dataclass
class Parts:
    """What control flow needs beyond the node (absent ones fail those steps clearly)."""

    backend: Backend
    joins: JoinStore | None = None
    calls: KeyValueStore | None = None
    cancels: CancelWatcher | None = None


class StepPipeline:
    """Handles the deliveries of one step of one table revision."""

    def __init__(
        self,
        step: CompiledStep,
        node_type: NodeType | None,
        instance: NodeInstance | None,
        parts: Parts,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        route = step.step
        self.step = step
        self.node_type = node_type
        self.instance = instance
        self.parts = parts
        self.outbox = Outbox(step)
        self.failure = FailurePolicy(step, self.outbox)
        self.settler = Settler(step, self.outbox, parts.backend.transport, parts.joins)
        self.gate = JoinGate(step, parts.joins, self.outbox) if route.join else None
        self.caller = (
            Caller(step, parts.calls, parts.backend, NOT_RETRYABLE) if route.call else None
        )
        self.timer_prefix = self.gate.timer_prefix if self.gate else None
        self.inflight: dict[Delivery, float] = {}
        """Deliveries of nodes that wait, with their start time (for heartbeats)."""
        # A pure node on a plain step can be handled inline in the consumer's callback.
        self.inline = bool(
            node_type is not None
            and node_type.pure
            and not (route.join or route.call or route.for_each)
        )
        for mw in middleware:
            mw.setup(step)
        invoke = chain_nodes(middleware, self._call_node)
        self._invoke: NodeCall | None = None if invoke == self._call_node else invoke
        self._decide: Callable[[Delivery], Awaitable[Decision]] = chain_messages(
            middleware, step, self.decide
        )

    # -- entry ----------------------------------------------------------------------------

    @property
    def handler(self) -> Callable[[Delivery], Coroutine[Any, Any, None]]:
        """What the consumer calls; inline steps skip the in-flight bookkeeping, which only
        serves heartbeats for nodes that wait."""
        return self._handle if self.inline else self.handle

    async def handle(self, delivery: Delivery) -> None:
        """Decide and settle one delivery, tracked for heartbeats while it runs."""
        self.inflight[delivery] = time.monotonic()
        try:
            await self._handle(delivery)
        finally:
            self.inflight.pop(delivery, None)

    async def _handle(self, delivery: Delivery) -> None:
        decision = await self._decide(delivery)
        await self.settler.settle(delivery, decision, _execution_of(decision, delivery))

    # -- the straight line ----------------------------------------------------------------

    async def decide(self, delivery: Delivery) -> Decision:
        """What to do with one delivery; never raises, never settles."""
        step, subject, headers = self.step, delivery.subject, delivery.headers
        env: Envelope | None = None
        execution = ""
        try:
            cleanup = None
            if subject.startswith(step.prefix):
                execution = subject[len(step.prefix) :]
                if self._cancelled(execution):
                    return _cancelled(execution)
                if RETURN in headers and self.caller is not None:
                    env = await self.caller.caller_envelope(delivery)
                    output: Any = self.caller.returned(delivery)
                    return self._forward(delivery, execution, env, output, None)
                env = decode_envelope(delivery.data) if delivery.data else Envelope()
                if self.gate is not None:
                    arrival = await self.gate.arrive(delivery, execution, env)
                    if not isinstance(arrival, Arrival):
                        return arrival
                    env, cleanup = arrival.env, arrival.cleanup
            elif self.timer_prefix is not None and subject.startswith(self.timer_prefix):
                assert self.gate is not None and JOIN_TIMER in headers
                execution = subject[len(self.timer_prefix) :]
                return await self.gate.timer(delivery, execution)
            else:
                execution = self._trigger_id(delivery)
                if self._cancelled(execution):
                    return _cancelled(execution)
                env = self._trigger(delivery)
            if delivery.delivered > step.step.retry.max_attempts:
                return await self._poison(delivery, execution)
            chosen: list[str] | None = None
            if self.caller is not None and step.items is not None:
                async with asyncio.timeout(step.step.timeout):
                    output = await self.caller.map(execution, env)
            elif self.caller is not None:
                child, start = await self.caller.start(execution, env)
                if self.caller.call.wait:
                    return Publish([start], outcome="call")
                decision = self._forward(delivery, execution, env, {"execution": child}, None)
                assert isinstance(decision, Publish)
                decision.messages.insert(0, start)
                return decision
            else:
                output, chosen = await self._run(delivery, execution, env)
            decision = self._forward(delivery, execution, env, output, chosen)
            if cleanup is not None and isinstance(decision, Publish):
                decision.cleanup = cleanup
            return decision
        except Exception as exc:
            return self.failure.decide(delivery, execution or f"s{delivery.stream_seq}", env, exc)

    def _forward(
        self,
        delivery: Delivery,
        execution: str,
        env: Envelope,
        output: Any,
        chosen: list[str] | None,
    ) -> Decision:
        where = plan(self.step, execution, env, output, chosen)
        try:
            return Publish(
                self.outbox.forward(delivery, execution, where, output), execution=execution
            )
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            raise UnserializableOutputError(f"the output cannot be sent as JSON: {exc}") from exc

    def _cancelled(self, execution: str) -> bool:
        cancels = self.parts.cancels
        return cancels is not None and cancels.is_cancelled(self.step.workflow, execution)

    async def _poison(self, delivery: Delivery, execution: str) -> Decision:
        """A delivery past its retry budget: its processing likely killed the host."""
        wf = self.step.workflow
        done = await self.parts.backend.last_message(
            subjects.stream_name(wf), subjects.done_subject(wf, execution)
        )
        if done is not None:  # the execution finished meanwhile: nothing to record
            return Done(outcome="ignored")
        raise InvalidMessageError(
            f"gave up after {delivery.delivered - 1} deliveries without an outcome "
            "(did processing kill the host?)"
        )

    # -- triggers -------------------------------------------------------------------------

    def _trigger_id(self, delivery: Delivery) -> str:
        """The execution id of a trigger: stable across redeliveries, so de-dup holds."""
        subject = delivery.subject
        if subject.startswith(self.step.start_prefix):
            execution = subject[len(self.step.start_prefix) :]
        else:
            execution = delivery.headers.get(EXECUTION) or f"s{delivery.stream_seq}"
        if not subjects.is_valid_token(execution):
            raise InvalidMessageError(f"invalid execution id {execution[:80]!r}")
        return execution

    def _trigger(self, delivery: Delivery) -> Envelope:
        try:
            payload = msgspec.json.decode(delivery.data) if delivery.data else None
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"trigger payload is not JSON: {exc}") from None
        validator = self.step.validator
        if validator is not None:
            error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                raise InvalidMessageError(
                    f"input does not match the workflow's schema at {where}: {error.message}"
                )
        parent = self._parent(delivery)
        return Envelope(
            input=payload,
            prev=payload,
            vars=dict(self.step.table.vars),
            parent=parent,
            parent_revision=delivery.headers.get(PARENT_REVISION) if parent else None,
        )

    def _parent(self, delivery: Delivery) -> str | None:
        """``Nano-Parent``, honoured only when it names a step that calls this workflow."""
        parent = delivery.headers.get(PARENT)
        if not parent:
            return None
        for prefix in self.step.callers:
            if parent.startswith(prefix) and subjects.is_valid_token(parent[len(prefix) :]):
                return parent
        log.warning(
            "%s: ignoring Nano-Parent %r: not a step that calls this workflow",
            self.step.workflow,
            parent[:200],
        )
        return None

    # -- running the node -----------------------------------------------------------------

    def _call_node(self, call: Invocation) -> Awaitable[Any]:
        assert self.node_type is not None and self.instance is not None
        return self.instance.handle(call.ctx, self.node_type.validate_input(call.input))

    async def _run(
        self, delivery: Delivery, execution: str, env: Envelope
    ) -> tuple[Any, list[str] | None]:
        node_type, instance, step = self.node_type, self.instance, self.step
        assert node_type is not None and instance is not None
        scope = step.scope(execution, env)
        ctx = Context(
            execution_id=execution,
            workflow=step.workflow,
            step=step.name,
            attempt=delivery.delivered,
            scope=scope,
            heartbeat=delivery.in_progress,
        )
        if step.items is not None:
            async with asyncio.timeout(step.step.timeout):
                return await self._for_each(delivery, ctx, scope), None
        value = step.input_of(scope, env.prev)
        if self._invoke is None:
            work = instance.handle(ctx, node_type.validate_input(value))
        else:
            work = self._invoke(  # type: ignore[assignment]
                Invocation(step, execution, ctx.attempt, ctx, value, delivery.headers)
            )
        result = await run_with_timeout(work, step.step.timeout)
        chosen = list(ctx.routes) if ctx.routes else None
        if isinstance(result, Routed):
            chosen, result = [result.route], result.output
        if ctx.updated_vars:
            env.vars = {**env.vars, **ctx.updated_vars}
        return node_type.dump_output(result), chosen

    async def _for_each(self, delivery: Delivery, ctx: Context, scope: dict[str, Any]) -> list[Any]:
        step, node_type = self.step, self.node_type
        assert step.items is not None and step.step.for_each is not None
        assert node_type is not None
        invoke = self._invoke or self._call_node

        async def one(index: int, item: Any) -> Any:
            item_scope = {**scope, "item": item, "index": index}
            value = step.input_of(item_scope, item)
            item_ctx = Context(
                execution_id=ctx.execution_id,
                workflow=ctx.workflow,
                step=ctx.step,
                attempt=ctx.attempt,
                scope=item_scope,
            )
            call = Invocation(
                step, ctx.execution_id, ctx.attempt, item_ctx, value, delivery.headers
            )
            result = await invoke(call)
            if isinstance(result, Routed):
                result = result.output
            return node_type.dump_output(result)

        each = step.step.for_each
        return await for_each(
            step.items.evaluate(scope),
            one,
            concurrency=each.concurrency,
            on_item_error=each.on_item_error,
            not_retryable=NOT_RETRYABLE,
        )

    async def drain(self, timeout: float = 10.0) -> None:
        await self.settler.drain(timeout)


def _cancelled(execution: str) -> DeadLetter:
    return DeadLetter(
        ErrorInfo("Cancelled", "execution cancelled"),
        execution=execution,
        id_suffix=f"{execution}:_cancelled",
    )


def _execution_of(decision: Decision, delivery: Delivery) -> str:
    """The execution a decision is about, for the settler's messages and logs."""
    execution = getattr(decision, "execution", "")
    return execution or subjects.execution_of(delivery.subject)
