"""The per-message hot path of one step: decode, run the node, route, publish, then ack.

A delivery is always settled: acked once everything it caused is stored, nak'ed with the
step's backoff while tries remain, or sent to the error route / dead-letter subject.
Control flow (joins, loops, sub-workflow calls, for-each, conditions) is decided here from
the routing table and the headers; joins keep their state in KV (:mod:`nanoservice.runtime.joins`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import jsonschema
import msgspec

from nanoservice import subjects
from nanoservice.errors import InvalidMessageError, NonRetryableError, RoutingError
from nanoservice.runtime.call_flow import CallFlow
from nanoservice.runtime.eager import run_with_timeout
from nanoservice.runtime.envelope import Envelope, decode_envelope
from nanoservice.runtime.join_flow import JoinFlow
from nanoservice.runtime.step_base import _NOT_RETRYABLE, _SKIPPED, Plan, Services
from nanoservice.sdk.node import Context, Routed
from nanoservice.types import EXECUTION, JOIN_TIMER, PARENT, RETURN, Delivery

__all__ = ["LoopLimitError", "Services", "StepRunner"]


class LoopLimitError(NonRetryableError):
    """A loop reached its ``max`` without its ``until`` condition holding."""


class StepRunner(JoinFlow, CallFlow):
    """Executes one step of one workflow: the inbound half and the control flow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        step = self.step
        # Most steps just continue to `next`: their plan is the same for every message.
        self._straight = not (step.routes or step.default or step.loop or step.set_vars)
        self._next = list(step.next)
        # A pure node on a plain step can be handled inline in the consumer's callback.
        self.inline = bool(
            self.node_type is not None
            and self.node_type.pure
            and not (step.join or step.call or step.for_each)
        )

    # -- entry ----------------------------------------------------------------------------

    @property
    def handler(self) -> Callable[[Delivery], Coroutine[Any, Any, None]]:
        """What the consumer calls: inline steps skip the in-flight bookkeeping, which only
        serves heartbeats for nodes that wait."""
        return self._handle if self.inline else self.handle

    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery; always settles it."""
        self.inflight[delivery] = time.monotonic()
        try:
            await self._handle(delivery)
        finally:
            self.inflight.pop(delivery, None)

    async def _handle(self, delivery: Delivery) -> None:
        subject, headers = delivery.subject, delivery.headers
        env: Envelope | None = None
        execution = subject.rsplit(".", 1)[-1]
        try:
            if subject.startswith(self.prefix):
                execution = subject[len(self.prefix) :]
                if self._cancelled(execution):
                    await self._record_cancel(delivery, execution)
                    return
                if JOIN_TIMER in headers:
                    await self._join_timer(delivery, execution)
                    return
                if RETURN in headers:
                    env = await self._caller_envelope(delivery)
                    output: Any = self._returned(delivery)
                    plan = self._plan(execution, env, output, None)
                    await self._forward(delivery, execution, plan, output)
                    return
                env = decode_envelope(delivery.data) if delivery.data else Envelope()
                if self.step.join is not None:
                    env = await self._join_arrival(delivery, execution, env)
                    if env is None:
                        return
            else:
                execution, env = self._trigger(delivery)
                if self._cancelled(execution):
                    await self._record_cancel(delivery, execution)
                    return
            if delivery.delivered > self.step.retry.max_attempts:
                raise InvalidMessageError(
                    f"gave up after {delivery.delivered - 1} deliveries without an outcome "
                    "(did processing kill the host?)"
                )
            chosen: list[str] | None = None
            if self.step.call is not None and self.step.for_each is not None:
                async with asyncio.timeout(self.step.timeout):
                    output = await self._map_call(execution, env)
            elif self.step.call is not None:
                if await self._call(delivery, execution, env):
                    return
                output = {"execution": self._child_id(execution, env)}
            else:
                output, chosen = await self._run(delivery, execution, env)
            plan = self._plan(execution, env, output, chosen)
        except Exception as exc:
            await self._failed(delivery, execution, env, exc)
            return
        await self._forward(delivery, execution, plan, output)

    def _cancelled(self, execution: str) -> bool:
        cancels = self.services.cancels
        return cancels is not None and cancels.is_cancelled(self.wf, execution)

    def _trigger(self, delivery: Delivery) -> tuple[str, Envelope]:
        subject = delivery.subject
        if subject.startswith(self.start_prefix):
            execution = subject[len(self.start_prefix) :]
        else:
            execution = delivery.headers.get(EXECUTION) or f"s{delivery.stream_seq}"
        if not subjects.is_valid_token(execution):
            raise InvalidMessageError(f"invalid execution id {execution!r}")
        try:
            payload = msgspec.json.decode(delivery.data) if delivery.data else None
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"trigger payload is not JSON: {exc}") from None
        if self.validator is not None:
            error = jsonschema.exceptions.best_match(self.validator.iter_errors(payload))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                raise InvalidMessageError(
                    f"input does not match the workflow's schema at {where}: {error.message}"
                )
        return execution, Envelope(
            input=payload,
            prev=payload,
            vars=dict(self.table.vars),
            parent=delivery.headers.get(PARENT),
        )

    # -- running the node -----------------------------------------------------------------
    async def _run(
        self, delivery: Delivery, execution: str, env: Envelope
    ) -> tuple[Any, list[str] | None]:
        assert self.node_type is not None and self.instance is not None
        scope = self._scope(execution, env)
        ctx = Context(
            execution_id=execution,
            workflow=self.wf,
            step=self.step.name,
            attempt=delivery.delivered,
            scope=scope,
            heartbeat=delivery.in_progress,
        )
        if self.items is not None:
            async with asyncio.timeout(self.step.timeout):
                return await self._for_each(ctx, scope), None
        value = self.input_expr.evaluate(scope) if self.input_expr is not None else env.prev
        result = await run_with_timeout(
            self.instance.handle(ctx, self.node_type.validate_input(value)), self.step.timeout
        )
        chosen = list(ctx.routes) if ctx.routes else None
        if isinstance(result, Routed):
            chosen, result = [result.route], result.output
        if ctx.updated_vars:
            env.vars = {**env.vars, **ctx.updated_vars}
        return self.node_type.dump_output(result), chosen

    async def _for_each(self, ctx: Context, scope: dict[str, Any]) -> list[Any]:
        assert self.items is not None and self.step.for_each is not None
        assert self.node_type is not None and self.instance is not None
        items = self.items.evaluate(scope)
        if not isinstance(items, list):
            raise NonRetryableError(f"for_each items must be a list, got {type(items).__name__}")
        policy = self.step.for_each.on_item_error
        slots = asyncio.Semaphore(self.step.for_each.concurrency)
        node_type, instance = self.node_type, self.instance

        async def one(index: int, item: Any) -> Any:
            item_scope = {**scope, "item": item, "index": index}
            async with slots:
                try:
                    value = (
                        self.input_expr.evaluate(item_scope)
                        if self.input_expr is not None
                        else item
                    )
                    item_ctx = Context(
                        execution_id=ctx.execution_id,
                        workflow=ctx.workflow,
                        step=ctx.step,
                        attempt=ctx.attempt,
                        scope=item_scope,
                    )
                    result = await instance.handle(item_ctx, node_type.validate_input(value))
                    if isinstance(result, Routed):
                        result = result.output
                    return node_type.dump_output(result)
                except Exception as exc:
                    if policy == "fail":
                        if isinstance(exc, _NOT_RETRYABLE):
                            raise NonRetryableError(
                                f"item {index}: {type(exc).__name__}: {exc}"
                            ) from exc
                        raise
                    return (
                        _SKIPPED
                        if policy == "skip"
                        else {"error": {"type": type(exc).__name__, "message": str(exc)}}
                    )

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return [r for r in results if r is not _SKIPPED]

    # -- where the output goes --------------------------------------------------------------

    def _plan(self, execution: str, env: Envelope, output: Any, chosen: list[str] | None) -> Plan:
        step = self.step
        if chosen is None and self._straight:
            return Plan(self._next, [], [], env)
        if self.set_vars or self.until is not None:
            env = msgspec.structs.replace(env)
        if self.set_vars:
            scope = {**self._scope(execution, env), "output": output}
            env.vars = {**env.vars, **{k: e.evaluate(scope) for k, e in self.set_vars}}
        if self.until is not None and step.loop is not None:
            scope = {**self._scope(execution, env), "output": output}
            done = self.until.evaluate(scope)
            if not isinstance(done, bool):
                raise NonRetryableError(f"loop until must be true or false, got {done!r}")
            iteration = env.loops.get(step.name, 0) + 1
            if not done:
                if iteration < step.loop.max:
                    env.loops = {**env.loops, step.name: iteration}
                    return Plan([step.loop.back_to], [], [], env)
                if step.loop.on_max == "fail":
                    raise LoopLimitError(
                        f"loop reached max {step.loop.max} iterations without '{step.loop.until}'"
                    )
            env.loops = {k: v for k, v in env.loops.items() if k != step.name}
        if chosen is None and self.conditions:
            scope = {**self._scope(execution, env), "output": output}
            chosen = []
            for name, condition in self.conditions:
                if condition.evaluate(scope) is True:
                    chosen.append(name)
                    if step.choose == "first":
                        break
        targets = list(step.next)
        for name in chosen or ():
            if name not in step.routes:
                known = ", ".join(step.routes) or "none"
                raise RoutingError(f"node chose route '{name}', but the step's routes are: {known}")
            targets += step.routes[name].to
        if not chosen and step.routes:
            if step.default:
                targets += step.default
            elif not step.next:
                raise RoutingError(
                    f"no route chosen or holding; step routes are "
                    f"{', '.join(step.routes)} and there is no default"
                )
        targets = list(dict.fromkeys(targets))
        possible = [t for r in step.routes.values() for t in r.to] + list(step.default)
        untaken = [t for t in dict.fromkeys(possible) if t not in targets]
        return Plan(targets, list(chosen or ()), untaken, env)
