"""The per-message hot path of one step: decode, run the node, route, publish, then ack.

A delivery is always settled: acked once everything it caused is stored, nak'ed with the
step's backoff while tries remain, or sent to the error route / dead-letter subject.
Control flow (joins, loops, sub-workflow calls, for-each, conditions) is decided here from
the routing table and the headers; joins keep their state in KV (:mod:`nanoservice.joins`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec
from nats.js.kv import KeyValue
from pydantic import ValidationError

from . import subjects
from .cancel import CancelWatcher
from .client import Client
from .envelope import (
    DeadLetter,
    Envelope,
    ErrorInfo,
    Result,
    decode_dead_letter,
    decode_envelope,
    decode_result,
    encode,
    loop_suffix,
    msg_id,
)
from .errors import InvalidMessageError, NonRetryableError, RoutingError
from .expr import Expression, ExpressionError
from .joins import Decision, JoinStore, merge
from .node import Context, NodeInstance, NodeType, Routed
from .table import RoutingTable, StepRoute
from .types import (
    EXECUTION,
    JOIN_TIMER,
    MSG_ID,
    PARENT,
    RETURN,
    ROUTE,
    SKIP,
    STEP,
    TRACEPARENT,
    WORKFLOW,
    Delivery,
    Transport,
)

__all__ = ["Services", "StepRunner"]

log = logging.getLogger("nanoservice.host")

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071  # JetStream: the subject already has a message
_NOT_RETRYABLE = (
    NonRetryableError,
    ValidationError,
    ExpressionError,
    msgspec.DecodeError,
    jsonschema.ValidationError,
)


class CallFailedError(NonRetryableError):
    """A called workflow ended in its dead-letter subject."""


class LoopLimitError(NonRetryableError):
    """A loop reached its ``max`` without its ``until`` condition holding."""


@dataclass
class Services:
    """What control flow needs beyond the transport (absent ones disable the feature)."""

    transport: Transport
    joins: JoinStore | None = None
    calls: KeyValue | None = None
    cancels: CancelWatcher | None = None
    client: Client | None = None


@dataclass
class _Next:
    """Where a step's output goes: targets, dead paths, loop-back."""

    targets: list[str]
    routes: list[str]
    untaken: list[str]
    env: Envelope


class StepRunner:
    """Executes one step of one workflow."""

    def __init__(
        self,
        table: RoutingTable,
        step: StepRoute,
        node_type: NodeType | None,
        instance: NodeInstance | None,
        services: Services,
    ) -> None:
        self.table = table
        self.step = step
        self.node_type = node_type
        self.instance = instance
        self.services = services
        self.transport = services.transport
        self.wf = table.workflow
        self.prefix = step.subject + "."
        self.start_prefix = table.start_subject + "."
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
        self.inflight: dict[Delivery, float] = {}
        self._reach = _reachability(table)
        self._join_branches = [
            (j.name, b)
            for j in table.steps.values()
            if j.join and j.join.mode == "all"
            for b in j.join.steps
        ]

    # -- entry ----------------------------------------------------------------------------

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
            if self.step.call is not None and self.step.for_each is not None:
                async with asyncio.timeout(self.step.timeout):
                    output = await self._map_call(execution, env)
                chosen = None
            elif self.step.call is not None:
                if await self._call(delivery, execution, env):
                    return
                output = {"execution": self._child_id(execution, env)}
                chosen: list[str] | None = None
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

    def _scope(self, execution: str, env: Envelope) -> dict[str, Any]:
        return {
            "input": env.input,
            "prev": env.prev,
            "steps": env.steps,
            "vars": env.vars,
            "execution": {"id": execution, "workflow": self.wf},
        }

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
        async with asyncio.timeout(self.step.timeout):
            if self.items is not None:
                return await self._for_each(ctx, scope), None
            value = self.input_expr.evaluate(scope) if self.input_expr is not None else env.prev
            result = await self.instance.handle(ctx, self.node_type.validate_input(value))
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

    def _plan(self, execution: str, env: Envelope, output: Any, chosen: list[str] | None) -> _Next:
        step = self.step
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
                    return _Next([step.loop.back_to], [], [], env)
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
        return _Next(targets, list(chosen or ()), untaken, env)

    def _carry(self, env: Envelope, output: Any) -> dict[str, dict[str, Any]]:
        name = self.step.name
        if self.keep is None:
            return {**env.steps, name: {"output": output}}
        carried = {k: v for k, v in env.steps.items() if k in self.keep}
        if name in self.keep:
            carried[name] = {"output": output}
        return carried

    def _headers(self, execution: str, delivery: Delivery) -> dict[str, str]:
        headers = {EXECUTION: execution, WORKFLOW: self.wf, STEP: self.step.name}
        trace = delivery.headers.get(TRACEPARENT)
        if trace:
            headers[TRACEPARENT] = trace
        return headers

    async def _forward(self, delivery: Delivery, execution: str, plan: _Next, output: Any) -> None:
        name = self.step.name
        headers = self._headers(execution, delivery)
        if plan.routes:
            headers[ROUTE] = ",".join(plan.routes)
        env = plan.env
        try:
            pending = []
            if plan.targets:
                data = encode(
                    Envelope(
                        input=env.input,
                        prev=output,
                        steps=self._carry(env, output),
                        vars=env.vars,
                        loops=env.loops,
                        parent=env.parent,
                    )
                )
                for target in plan.targets:
                    pending.append(
                        await self.transport.publish(
                            self.table.steps[target].subject + "." + execution,
                            data,
                            {**headers, MSG_ID: msg_id(execution, name, target, env.loops)},
                        )
                    )
            else:
                pending += await self._finish(execution, env, output, headers)
            pending += await self._skip_dead_paths(execution, env, plan.targets, plan.untaken)
            await _settle(pending)
        except Exception as exc:
            await self._failed(delivery, execution, env, exc, forwarding=True)
            return
        await delivery.ack()

    async def _finish(
        self, execution: str, env: Envelope, output: Any, headers: dict[str, str]
    ) -> list[asyncio.Future[int]]:
        """Publish the execution's result (and return it to a calling workflow)."""
        result = output
        if self.output_expr is not None:
            scope = self._scope(execution, env)
            scope["steps"] = {**env.steps, self.step.name: {"output": output}}
            scope["prev"] = output
            result = self.output_expr.evaluate(scope)
        body = encode(Result(output=result, step=self.step.name))
        # One result per execution, whatever the dedup window: the subject must be empty.
        done = {
            **headers,
            MSG_ID: msg_id(execution, self.step.name, subjects.DONE),
            EXPECTED_LAST_SUBJECT_SEQ: "0",
        }
        pending = [
            await self.transport.publish(subjects.done_subject(self.wf, execution), body, done)
        ]
        if env.parent:
            pending.append(await self._return(env.parent, execution, body, headers))
        return pending

    async def _return(
        self, parent: str, execution: str, body: bytes, headers: dict[str, str]
    ) -> asyncio.Future[int]:
        return await self.transport.publish(
            parent,
            body,
            {**headers, RETURN: execution, MSG_ID: f"{execution}:{subjects.DONE}:return"},
        )

    # -- dead paths and joins ---------------------------------------------------------------

    async def _skip_dead_paths(
        self, execution: str, env: Envelope, taken: list[str], untaken: list[str]
    ) -> list[asyncio.Future[int]]:
        """Tell joins downstream which of their branches will not come (synchronizing merge)."""
        if not untaken or not self._join_branches:
            return []
        live = set(taken).union(*(self._reach[t] for t in taken))
        dead = set(untaken).union(*(self._reach[t] for t in untaken)) - live
        pending = []
        for join, branch in self._join_branches:
            if branch in dead and join not in dead:
                pending.append(
                    await self.transport.publish(
                        self.table.steps[join].subject + "." + execution,
                        b"",
                        {
                            EXECUTION: execution,
                            WORKFLOW: self.wf,
                            STEP: branch,
                            SKIP: branch,
                            MSG_ID: msg_id(execution, branch, join, env.loops) + ":skip",
                        },
                    )
                )
        return pending

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
            await _settle(
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
            await _settle(pending)
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
        plan = _Next(list(join.on_timeout), ["timeout"], [], first)
        await self._forward(delivery, execution, plan, failure)

    # -- sub-workflows ------------------------------------------------------------------

    def _child_id(self, execution: str, env: Envelope) -> str:
        child = f"{execution}-{self.step.name}"
        suffix = loop_suffix(env.loops)
        child = f"{child}-{suffix}" if suffix else child
        if len(child) > 64 or not subjects.is_valid_token(child):
            child = hashlib.blake2s(child.encode(), digest_size=16).hexdigest()
        return child

    async def _call(self, delivery: Delivery, execution: str, env: Envelope) -> bool:
        """Start the called workflow; True if this step now waits for its return."""
        call = self.step.call
        assert call is not None
        scope = self._scope(execution, env)
        value = self.input_expr.evaluate(scope) if self.input_expr is not None else env.prev
        child = self._child_id(execution, env)
        headers = {
            EXECUTION: child,
            WORKFLOW: call.workflow,
            STEP: self.step.name,
            MSG_ID: f"{child}:_start",
        }
        if call.wait:
            if self.services.calls is None:
                raise NonRetryableError("calls need a JetStream KV store (host started without)")
            await self.services.calls.put(child, encode(env))
            headers[PARENT] = self.prefix + execution
        await _settle(
            [
                await self.transport.publish(
                    subjects.start_subject(call.workflow, child), encode(value), headers
                )
            ]
        )
        if call.wait:
            await delivery.ack()
        return call.wait

    async def _map_call(self, execution: str, env: Envelope) -> list[Any]:
        """Run the called workflow once per item (bounded), results in input order.

        Child executions have ids derived from this one and the item's index, so after a
        crash the redelivered step finds the children that already finished.
        """
        call, each, client = self.step.call, self.step.for_each, self.services.client
        assert call is not None and each is not None and self.items is not None
        if client is None:
            raise NonRetryableError("for_each over a call needs a NATS client (host without)")
        scope = self._scope(execution, env)
        items = self.items.evaluate(scope)
        if not isinstance(items, list):
            raise NonRetryableError(f"for_each items must be a list, got {type(items).__name__}")
        slots = asyncio.Semaphore(each.concurrency)
        base = self._child_id(execution, env)

        async def one(index: int, item: Any) -> Any:
            item_scope = {**scope, "item": item, "index": index}
            value = self.input_expr.evaluate(item_scope) if self.input_expr else item
            child = f"{base}-{index}"
            if len(child) > 64:
                child = hashlib.blake2s(child.encode(), digest_size=16).hexdigest()
            async with slots:
                outcome = await client.run(
                    call.workflow, value, execution=child, timeout=self.step.timeout
                )
            if outcome.ok:
                return outcome.output
            error = outcome.error or {}
            if each.on_item_error == "fail":
                raise CallFailedError(
                    f"item {index}: called workflow '{call.workflow}' failed "
                    f"at step '{outcome.step}': {error.get('type')}: "
                    f"{error.get('message')}"
                )
            return (
                _SKIPPED
                if each.on_item_error == "skip"
                else {"error": {"type": error.get("type"), "message": error.get("message")}}
            )

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return [r for r in results if r is not _SKIPPED]

    async def _caller_envelope(self, delivery: Delivery) -> Envelope:
        """The envelope this step had when it made the call that is now returning."""
        if self.services.calls is None:
            raise NonRetryableError("calls need a JetStream KV store (host started without)")
        entry = await self.services.calls.get(delivery.headers[RETURN])
        return decode_envelope(entry.value or b"{}")

    def _returned(self, delivery: Delivery) -> Any:
        """The called workflow's output, or its failure raised as this step's."""
        if delivery.headers.get("Nano-Error"):
            dead = decode_dead_letter(delivery.data)
            called = self.step.call.workflow if self.step.call else "?"
            raise CallFailedError(
                f"called workflow '{called}' (execution {delivery.headers[RETURN]}) failed at "
                f"step '{dead.step}': {dead.error.type}: {dead.error.message}"
            )
        return decode_result(delivery.data).output

    # -- failures -----------------------------------------------------------------------------

    async def _failed(
        self,
        delivery: Delivery,
        execution: str,
        env: Envelope | None,
        exc: BaseException,
        *,
        forwarding: bool = False,
    ) -> None:
        attempt = delivery.delivered
        retry = self.step.retry
        kind = "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
        message = str(exc) or kind
        if isinstance(exc, TimeoutError):
            message = f"step timed out after {self.step.timeout:g} s"
        retryable = not isinstance(exc, _NOT_RETRYABLE) and (
            retry.retry_on is None or kind in retry.retry_on or forwarding
        )
        log.warning(
            "%s/%s execution %s attempt %d failed: %s: %s",
            self.wf,
            self.step.name,
            execution,
            attempt,
            kind,
            message,
        )
        if retryable and attempt < retry.max_attempts:
            await delivery.nak(retry.delay(attempt))
            return
        error = ErrorInfo(type=kind, message=message)
        try:
            if self.step.on_error and env is not None and not forwarding:
                failure = {
                    "error": {"type": kind, "message": message},
                    "step": self.step.name,
                    "input": env.prev,
                }
                untaken = [s for s in self.step.successors() if s not in self.step.on_error]
                plan = _Next(list(self.step.on_error), ["error"], untaken, env)
                await self._forward(delivery, execution, plan, failure)
                return
            await self._dead_letter(delivery, execution, env, error)
        except Exception as publish_exc:  # could not store the failure: try again later
            log.error("could not record failure of %s: %s", execution, publish_exc)
            await delivery.nak(retry.delay(attempt))
            return
        await delivery.ack()

    async def _dead_letter(
        self,
        delivery: Delivery,
        execution: str,
        env: Envelope | None,
        error: ErrorInfo,
        *,
        id_suffix: str | None = None,
    ) -> None:
        if not subjects.is_valid_token(execution):
            execution = f"s{delivery.stream_seq}"
        try:
            data: Any = msgspec.json.decode(delivery.data) if delivery.data else None
        except msgspec.DecodeError:
            data = delivery.data[:4096].decode("utf-8", "replace")
        body = encode(
            DeadLetter(
                step=self.step.name,
                error=error,
                attempts=delivery.delivered,
                subject=delivery.subject,
                data=data,
            )
        )
        headers = {
            EXECUTION: execution,
            WORKFLOW: self.wf,
            STEP: self.step.name,
            "Nano-Error": f"{error.type}: {error.message}"[:512],
            MSG_ID: id_suffix or msg_id(execution, self.step.name, subjects.DLQ),
        }
        pending = [
            await self.transport.publish(subjects.dlq_subject(self.wf, execution), body, headers)
        ]
        if env is not None and env.parent:
            pending.append(
                await self.transport.publish(
                    env.parent,
                    body,
                    {**headers, RETURN: execution, MSG_ID: f"{execution}:{subjects.DLQ}:return"},
                )
            )
        await _settle(pending)

    async def _record_cancel(self, delivery: Delivery, execution: str) -> None:
        try:
            await self._dead_letter(
                delivery,
                execution,
                None,
                ErrorInfo(type="Cancelled", message="execution cancelled"),
                id_suffix=f"{execution}:_cancelled",
            )
        except Exception as exc:
            log.error("could not record cancellation of %s: %s", execution, exc)
            await delivery.nak(1.0)
            return
        await delivery.ack()


class _Skipped:
    pass


_SKIPPED = _Skipped()


async def _settle(pending: list[asyncio.Future[int]]) -> None:
    """Wait for every PubAck; a result refused because one exists already counts as stored."""
    for fut in pending:
        try:
            await fut
        except Exception as exc:
            if getattr(exc, "code", None) != _WRONG_LAST_SEQUENCE:
                raise


def _reachability(table: RoutingTable) -> dict[str, set[str]]:
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
