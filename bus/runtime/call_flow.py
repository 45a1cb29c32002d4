"""Call steps: running another workflow, once or once per item, and taking its result."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from nanoservice import subjects
from nanoservice.errors import NonRetryableError
from nanoservice.runtime.envelope import (
    Envelope,
    decode_dead_letter,
    decode_envelope,
    decode_result,
    encode,
    loop_suffix,
)
from nanoservice.runtime.step_base import _SKIPPED, StepBase, settle
from nanoservice.types import EXECUTION, MSG_ID, PARENT, RETURN, STEP, WORKFLOW, Delivery

__all__ = ["CallFailedError", "CallFlow"]


class CallFailedError(NonRetryableError):
    """A called workflow ended in its dead-letter subject."""


class CallFlow(StepBase):
    """The sub-workflow half of a step runner."""

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
        await settle(
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
