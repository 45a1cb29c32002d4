"""The host: runs the consumers of a set of steps in one process and routes by the table.

A host is the same code in every deployment mode: monolith runs all steps, micro a group,
nano one. Per message it decodes the envelope, maps the node's input, calls the node, and
publishes the output to the next steps' subjects; it acks only once every downstream publish
is stored. Failures are nak'ed with backoff; when the retry budget is spent they go to the
step's error route or to the workflow's dead-letter subject, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec
from pydantic import ValidationError

from . import subjects
from .envelope import DeadLetter, Envelope, ErrorInfo, Result, decode_envelope, encode, msg_id
from .errors import InvalidMessageError, NonRetryableError, RoutingError
from .expr import Expression, ExpressionError
from .node import Context, NodeInstance, NodeType, Routed
from .registry import Registry
from .table import RoutingTable, StepRoute
from .types import EXECUTION, MSG_ID, ROUTE, STEP, TRACEPARENT, WORKFLOW, Delivery, Transport

__all__ = ["Host", "StepRunner", "select_steps"]

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


@dataclass(frozen=True)
class _Target:
    name: str
    subject: str


class StepRunner:
    """Executes one step of one workflow: the per-message hot path."""

    def __init__(
        self,
        table: RoutingTable,
        step: StepRoute,
        node_type: NodeType,
        instance: NodeInstance,
        transport: Transport,
    ) -> None:
        self.table = table
        self.step = step
        self.node_type = node_type
        self.instance = instance
        self.transport = transport
        wf = table.workflow
        self.prefix = step.subject + "."
        self.start_prefix = table.start_subject + "."
        self.input_expr = Expression(step.input) if step.input else None
        self.output_expr = Expression(table.output) if table.output else None
        self.keep = None if step.keep is None else frozenset(step.keep)
        self.next = [_Target(n, table.steps[n].subject + ".") for n in step.next]
        self.routes = {
            r: [_Target(n, table.steps[n].subject + ".") for n in targets]
            for r, targets in step.routes.items()
        }
        self.on_error = [_Target(n, table.steps[n].subject + ".") for n in step.on_error]
        self.done_prefix = subjects.done_subject(wf, "")
        self.dlq_prefix = subjects.dlq_subject(wf, "")
        self.validator = (
            jsonschema.Draft202012Validator(table.input_schema)
            if table.input_schema is not None and step.name in table.start
            else None
        )

    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery; always settles it (ack, nak or dead letter)."""
        subject = delivery.subject
        env: Envelope | None = None
        try:
            if subject.startswith(self.prefix):
                execution = subject[len(self.prefix) :]
                env = decode_envelope(delivery.data)
            else:
                execution, env = self._trigger(delivery)
            if delivery.delivered > self.step.retry.max_attempts:
                raise InvalidMessageError(
                    f"gave up after {delivery.delivered - 1} deliveries without an "
                    "outcome (did processing kill the host?)"
                )
            output, route = await self._run(delivery, execution, env)
            targets = self._targets(route)
        except Exception as exc:
            await self._failed(delivery, subject.rsplit(".", 1)[-1], env, exc)
            return
        await self._forward(delivery, execution, env, output, route, targets)

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
        return execution, Envelope(input=payload, prev=payload, vars=dict(self.table.vars))

    def _scope(self, execution: str, env: Envelope) -> dict[str, Any]:
        return {
            "input": env.input,
            "prev": env.prev,
            "steps": env.steps,
            "vars": env.vars,
            "execution": {"id": execution, "workflow": self.table.workflow},
        }

    async def _run(
        self, delivery: Delivery, execution: str, env: Envelope
    ) -> tuple[Any, str | None]:
        scope = self._scope(execution, env)
        value = self.input_expr.evaluate(scope) if self.input_expr is not None else env.prev
        value = self.node_type.validate_input(value)
        ctx = Context(
            execution_id=execution,
            workflow=self.table.workflow,
            step=self.step.name,
            attempt=delivery.delivered,
            scope=scope,
            heartbeat=delivery.in_progress,
        )
        async with asyncio.timeout(self.step.timeout):
            result = await self.instance.handle(ctx, value)
        route = ctx.route
        if isinstance(result, Routed):
            route, result = result.route, result.output
        if ctx.updated_vars:
            env.vars = {**env.vars, **ctx.updated_vars}
        return self.node_type.dump_output(result), route

    def _targets(self, route: str | None) -> list[_Target]:
        if route is None:
            if self.routes and not self.next:
                raise RoutingError(f"node chose no route; step routes are {', '.join(self.routes)}")
            return self.next
        if route not in self.routes:
            known = ", ".join(self.routes) or "none"
            raise RoutingError(f"node chose route '{route}', but the step's routes are: {known}")
        return self.next + self.routes[route]

    def _carry(self, env: Envelope, output: Any) -> dict[str, dict[str, Any]]:
        steps = env.steps
        name = self.step.name
        if self.keep is None:
            return {**steps, name: {"output": output}}
        carried = {k: v for k, v in steps.items() if k in self.keep}
        if name in self.keep:
            carried[name] = {"output": output}
        return carried

    async def _forward(
        self,
        delivery: Delivery,
        execution: str,
        env: Envelope,
        output: Any,
        route: str | None,
        targets: list[_Target],
    ) -> None:
        name = self.step.name
        headers = {EXECUTION: execution, WORKFLOW: self.table.workflow, STEP: name}
        if route is not None:
            headers[ROUTE] = route
        trace = delivery.headers.get(TRACEPARENT)
        if trace:
            headers[TRACEPARENT] = trace
        try:
            pending = []
            if targets:
                data = encode(
                    Envelope(
                        input=env.input, prev=output, steps=self._carry(env, output), vars=env.vars
                    )
                )
                for target in targets:
                    pending.append(
                        await self.transport.publish(
                            target.subject + execution,
                            data,
                            {**headers, MSG_ID: msg_id(execution, name, target.name)},
                        )
                    )
            else:
                pending.append(await self._publish_done(execution, env, output, headers))
            for fut in pending:
                try:
                    await fut
                except Exception as exc:
                    if getattr(exc, "code", None) != _WRONG_LAST_SEQUENCE:
                        raise
        except Exception as exc:
            await self._failed(delivery, execution, env, exc, forwarding=True)
            return
        await delivery.ack()

    async def _publish_done(
        self, execution: str, env: Envelope, output: Any, headers: dict[str, str]
    ) -> asyncio.Future[int]:
        result = output
        if self.output_expr is not None:
            scope = self._scope(execution, env)
            scope["steps"] = {**env.steps, self.step.name: {"output": output}}
            scope["prev"] = output
            result = self.output_expr.evaluate(scope)
        body = encode(Result(output=result, step=self.step.name))
        # One result per execution, whatever the dedup window: the subject must be empty.
        done_headers = {
            **headers,
            MSG_ID: msg_id(execution, self.step.name, subjects.DONE),
            EXPECTED_LAST_SUBJECT_SEQ: "0",
        }
        return await self.transport.publish(self.done_prefix + execution, body, done_headers)

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
            self.table.workflow,
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
            if self.on_error and env is not None and not forwarding:
                await self._route_error(execution, env, error)
            else:
                await self._dead_letter(delivery, execution, error)
        except Exception as publish_exc:  # could not store the failure: try again later
            log.error("could not record failure of %s: %s", execution, publish_exc)
            await delivery.nak(retry.delay(attempt))
            return
        await delivery.ack()

    async def _route_error(self, execution: str, env: Envelope, error: ErrorInfo) -> None:
        name = self.step.name
        failure = {
            "error": {"type": error.type, "message": error.message},
            "step": name,
            "input": env.prev,
        }
        data = encode(
            Envelope(input=env.input, prev=failure, steps=self._carry(env, failure), vars=env.vars)
        )
        headers = {EXECUTION: execution, WORKFLOW: self.table.workflow, STEP: name, ROUTE: "error"}
        futures = [
            await self.transport.publish(
                t.subject + execution, data, {**headers, MSG_ID: msg_id(execution, name, t.name)}
            )
            for t in self.on_error
        ]
        for fut in futures:
            await fut

    async def _dead_letter(self, delivery: Delivery, execution: str, error: ErrorInfo) -> None:
        if not subjects.is_valid_token(execution):
            execution = f"s{delivery.stream_seq}"
        try:
            data: Any = msgspec.json.decode(delivery.data)
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
            WORKFLOW: self.table.workflow,
            STEP: self.step.name,
            "Nano-Error": f"{error.type}: {error.message}"[:512],
            MSG_ID: msg_id(execution, self.step.name, subjects.DLQ),
        }
        await (await self.transport.publish(self.dlq_prefix + execution, body, headers))


def select_steps(
    tables: Iterable[RoutingTable], only: Iterable[str] | None = None
) -> list[tuple[RoutingTable, StepRoute]]:
    """The steps a host runs: all, or those named ``workflow`` or ``workflow.step``."""
    wanted = set(only) if only is not None else None
    chosen: list[tuple[RoutingTable, StepRoute]] = []
    for table in tables:
        for step in table.steps.values():
            if (
                wanted is None
                or table.workflow in wanted
                or f"{table.workflow}.{step.name}" in wanted
            ):
                chosen.append((table, step))
    return chosen


class Host:
    """Runs the consumers of the given steps over one transport."""

    def __init__(
        self, transport: Transport, registry: Registry, steps: list[tuple[RoutingTable, StepRoute]]
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.steps = steps
        self.runners: list[StepRunner] = []
        self._subscriptions: list[Any] = []
        self._instances: list[NodeInstance] = []

    async def start(self) -> None:
        for table, step in self.steps:
            node_type = self.registry.get(step.node)
            instance = node_type.build(step.config)
            await instance.setup()
            self._instances.append(instance)
            self.runners.append(StepRunner(table, step, node_type, instance, self.transport))
        for runner in self.runners:
            sub = await self.transport.consume(
                runner.table.stream.name,
                runner.step.consumer,
                runner.handle,
                max_inflight=runner.step.concurrency,
            )
            self._subscriptions.append(sub)
            log.info(
                "consuming %s.%s (node %s)",
                runner.table.workflow,
                runner.step.name,
                runner.step.node,
            )

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop pulling, let in-flight messages settle, release node resources."""
        await asyncio.gather(*(s.stop(drain_timeout) for s in self._subscriptions))
        for instance in self._instances:
            try:
                await instance.close()
            except Exception as exc:  # closing must not hide the others
                log.warning("node close failed: %s", exc)
