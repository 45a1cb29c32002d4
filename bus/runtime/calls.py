"""Call steps: start another workflow, once or once per item, and take its result.

A waiting call stores the caller's envelope in the ``nano_calls`` bucket and starts the child
with a ``Nano-Parent`` header naming the calling step's subject; the child's last step (or
its dead letter) sends a ``Nano-Return`` message there. A call per item runs the children
from the step itself, with ids derived from the parent, so a redelivered step finds the
children that already finished.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from nanoservice import subjects
from nanoservice.errors import NonRetryableError
from nanoservice.runtime.decision import Outbound
from nanoservice.runtime.envelope import (
    Envelope,
    decode_dead_letter,
    decode_envelope,
    decode_result,
    encode,
    loop_suffix,
)
from nanoservice.runtime.foreach import for_each
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import (
    ERROR,
    EXECUTION,
    MSG_ID,
    PARENT,
    PARENT_REVISION,
    RETURN,
    STEP,
    WORKFLOW,
    Backend,
    Delivery,
    Headers,
    KeyValueStore,
)

__all__ = ["CallFailedError", "Caller"]


class CallFailedError(NonRetryableError):
    """A called workflow ended in its dead-letter subject."""

    def __init__(self, message: str, error_type: str = "", error_message: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type or "CallFailedError"
        self.error_message = error_message or message


def child_id(base: str) -> str:
    """An execution id for a child: readable when it fits one token, else a hash."""
    if len(base) > 64 or not subjects.is_valid_token(base):
        return hashlib.blake2s(base.encode(), digest_size=16).hexdigest()
    return base


class Caller:
    """The call half of a call step."""

    def __init__(
        self,
        step: CompiledStep,
        calls: KeyValueStore | None,
        backend: Backend,
        not_retryable: tuple[type[BaseException], ...],
    ) -> None:
        assert step.step.call is not None
        self.step = step
        self.call = step.step.call
        self.calls = calls
        self.backend = backend
        self.not_retryable = not_retryable

    def child(self, execution: str, env: Envelope) -> str:
        base = f"{execution}-{self.step.name}"
        suffix = loop_suffix(env.loops)
        return child_id(f"{base}-{suffix}" if suffix else base)

    def _kv(self) -> KeyValueStore:
        if self.calls is None:
            raise NonRetryableError("calls need a KV store (host started without one)")
        return self.calls

    def _start(self, child: str, value: Any, parent: str | None) -> Outbound:
        headers = {
            EXECUTION: child,
            WORKFLOW: self.call.workflow,
            STEP: self.step.name,
            MSG_ID: f"{child}:_start",
        }
        if parent is not None:
            headers[PARENT] = parent
            headers[PARENT_REVISION] = self.step.revision
        return Outbound(subjects.start_subject(self.call.workflow, child), encode(value), headers)

    async def start(self, execution: str, env: Envelope) -> tuple[str, Outbound]:
        """The child's id and its trigger; a waiting call stores this step's envelope first."""
        value = self.step.input_of(self.step.scope(execution, env), env.prev)
        child = self.child(execution, env)
        parent = None
        if self.call.wait:
            await self._kv().put(child, encode(env))
            parent = self.step.prefix + execution
        return child, self._start(child, value, parent)

    async def caller_envelope(self, delivery: Delivery) -> Envelope:
        """The envelope this step had when it made the call that is now returning."""
        entry = await self._kv().get(delivery.headers[RETURN])
        return decode_envelope(entry.value or b"{}")

    def returned(self, delivery: Delivery) -> Any:
        """The called workflow's output, or its failure raised as this step's."""
        if delivery.headers.get(ERROR):
            dead = decode_dead_letter(delivery.data)
            raise CallFailedError(
                f"called workflow '{self.call.workflow}' (execution "
                f"{delivery.headers[RETURN]}) failed at step '{dead.step}': "
                f"{dead.error.type}: {dead.error.message}",
                dead.error.type,
                dead.error.message,
            )
        return decode_result(delivery.data).output

    async def map(self, execution: str, env: Envelope) -> list[Any]:
        """Run the called workflow once per item (bounded), results in input order."""
        each, backend = self.step.step.for_each, self.backend
        assert each is not None and self.step.items is not None
        scope = self.step.scope(execution, env)
        items = self.step.items.evaluate(scope)
        base = self.child(execution, env)
        workflow = self.call.workflow
        ends = _Ends(backend, workflow)
        await ends.open()
        try:

            async def one(index: int, item: Any) -> Any:
                value = self.step.input_of({**scope, "item": item, "index": index}, item)
                child = child_id(f"{base}-{index}")
                waiting = ends.expect(child)
                if not await ends.stored(child):
                    start = self._start(child, value, None)
                    await (
                        await backend.transport.publish(start.subject, start.data, start.headers)
                    )
                subject, data = await waiting
                if f".{subjects.DONE}." in subject:
                    return decode_result(data).output
                dead = decode_dead_letter(data)
                raise CallFailedError(
                    f"called workflow '{workflow}' failed at step '{dead.step}': "
                    f"{dead.error.type}: {dead.error.message}",
                    dead.error.type,
                    dead.error.message,
                )

            return await for_each(
                items,
                one,
                concurrency=each.concurrency,
                on_item_error=each.on_item_error,
                not_retryable=self.not_retryable,
            )
        finally:
            await ends.close()


class _Ends:
    """Waits for the results or dead letters of a set of child executions."""

    def __init__(self, backend: Backend, workflow: str) -> None:
        self.backend = backend
        self.workflow = workflow
        self.stream = subjects.stream_name(workflow)
        self.waiting: dict[str, asyncio.Future[tuple[str, bytes]]] = {}
        self.subs: list[Any] = []

    async def open(self) -> None:
        for kind in (subjects.DONE, subjects.DLQ):
            pattern = f"{subjects.PREFIX}.{self.workflow}.{kind}.*"
            self.subs.append(await self.backend.subscribe(pattern, self._seen))

    def _seen(self, subject: str, data: bytes, headers: Headers) -> None:
        fut = self.waiting.get(subjects.execution_of(subject))
        if fut is not None and not fut.done():
            fut.set_result((subject, data))

    def expect(self, child: str) -> asyncio.Future[tuple[str, bytes]]:
        fut: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self.waiting[child] = fut
        return fut

    async def stored(self, child: str) -> bool:
        """Whether the child already ended (a redelivered step): resolves its future."""
        for subject in (
            subjects.done_subject(self.workflow, child),
            subjects.dlq_subject(self.workflow, child),
        ):
            found = await self.backend.last_message(self.stream, subject)
            if found is not None:
                self._seen(subject, found.data, found.headers)
                return True
        return False

    async def close(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()
