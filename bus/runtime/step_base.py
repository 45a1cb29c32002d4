"""What every step runner shares: its table, its scope, and how it publishes and fails.

:class:`StepBase` holds a step's compiled pieces and the outbound half of the hot path:
publish the output to the chosen targets (or the result), tell joins about dead paths,
wait for every PubAck, then ack; or, on failure, nak with backoff, route the error, or
dead-letter it. The inbound half and the control flow build on it (:mod:`.runner`,
:mod:`.join_flow`, :mod:`.call_flow`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec
from pydantic import ValidationError

from nanoservice import subjects
from nanoservice.errors import NonRetryableError
from nanoservice.runtime.cancel import CancelWatcher
from nanoservice.runtime.client import Client
from nanoservice.runtime.envelope import DeadLetter, Envelope, ErrorInfo, Result, encode, msg_id
from nanoservice.runtime.joins import JoinStore
from nanoservice.sdk.node import NodeInstance, NodeType
from nanoservice.types import (
    EXECUTION,
    MSG_ID,
    RETURN,
    ROUTE,
    SKIP,
    STEP,
    TRACEPARENT,
    WORKFLOW,
    Delivery,
    KeyValueStore,
    Transport,
)
from nanoservice.workflow.expr import Expression, ExpressionError
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["Plan", "Services", "StepBase", "settle"]

log = logging.getLogger("nanoservice.runtime.host")

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071  # JetStream: the subject already has a message
_NOT_RETRYABLE = (
    NonRetryableError,
    ValidationError,
    ExpressionError,
    msgspec.DecodeError,
    jsonschema.ValidationError,
)


@dataclass
class Services:
    """What control flow needs beyond the transport (absent ones disable the feature)."""

    transport: Transport
    joins: JoinStore | None = None
    calls: KeyValueStore | None = None
    cancels: CancelWatcher | None = None
    client: Client | None = None


@dataclass
class Plan:
    """Where a step's output goes: targets, dead paths, loop-back."""

    targets: list[str]
    routes: list[str]
    untaken: list[str]
    env: Envelope


class StepBase:
    """One step of one workflow: its compiled pieces and its outbound path."""

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
        self._acks: deque[tuple[list[asyncio.Future[int]], Delivery, str, Envelope]] = deque()
        self._acker: asyncio.Task[None] | None = None
        self._reach = _reachability(table)
        self._join_branches = [
            (j.name, b)
            for j in table.steps.values()
            if j.join and j.join.mode == "all"
            for b in j.join.steps
        ]

    def _scope(self, execution: str, env: Envelope) -> dict[str, Any]:
        return {
            "input": env.input,
            "prev": env.prev,
            "steps": env.steps,
            "vars": env.vars,
            "execution": {"id": execution, "workflow": self.wf},
        }

    def _carry(self, env: Envelope, output: Any) -> dict[str, dict[str, Any]]:
        name = self.step.name
        if self.keep is None:
            return {**env.steps, name: {"output": output}}
        carried = {k: v for k, v in env.steps.items() if k in self.keep}
        if name in self.keep:
            carried[name] = {"output": output}
        return carried

    def _headers(self, execution: str, delivery: Delivery) -> dict[str, str]:
        """Headers of a step-to-step message: execution and workflow are in the subject."""
        headers = {STEP: self.step.name}
        trace = delivery.headers.get(TRACEPARENT)
        if trace:
            headers[TRACEPARENT] = trace
        return headers

    async def _forward(self, delivery: Delivery, execution: str, plan: Plan, output: Any) -> None:
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
                        input=env.input if self.step.keep_input else None,
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
        except Exception as exc:
            await self._failed(delivery, execution, env, exc, forwarding=True)
            return
        self._acks.append((pending, delivery, execution, env))
        if self._acker is None:
            self._acker = asyncio.get_running_loop().create_task(self._ack_in_order())

    async def _ack_in_order(self) -> None:
        """Ack each delivery once all it published is stored, in the order they were handled.

        One task per step does this, so handling a message never waits for PubAcks (and most
        messages need no task of their own); PubAcks come back in publish order anyway.
        """
        try:
            while self._acks:
                pending, delivery, execution, env = self._acks.popleft()
                try:
                    await settle(pending)
                except Exception as exc:
                    await self._failed(delivery, execution, env, exc, forwarding=True)
                    continue
                await delivery.ack()
        finally:
            self._acker = None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every handled delivery has been acked or failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._acker is not None and loop.time() < deadline:
            await asyncio.wait({self._acker}, timeout=deadline - loop.time())

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
            EXECUTION: execution,
            WORKFLOW: self.wf,
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
            {
                **headers,
                EXECUTION: execution,
                WORKFLOW: self.wf,
                RETURN: execution,
                MSG_ID: f"{execution}:{subjects.DONE}:return",
            },
        )

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
                plan = Plan(list(self.step.on_error), ["error"], untaken, env)
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
        await settle(pending)

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


async def settle(pending: list[asyncio.Future[int]]) -> None:
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
