"""The settler: the only code that acks, naks or publishes what a decision says.

Every delivery a step handles reaches :meth:`Settler.settle` exactly once, with one
:class:`~nanoservice.runtime.decision.Decision`. Messages to publish are stored first and the
delivery is acked only once every PubAck is in (in the order deliveries were handled: one
task per step waits for them, so handling never waits for PubAcks). Failing to *store* is
not a node failure: the same messages (same de-dup ids) are published again with their own
backoff for as long as a server outage plausibly lasts (a stream-leader election takes
seconds), with in-progress heartbeats meanwhile, and the node's retry budget is not spent.
A message that can never be stored (over the size limit) is dead-lettered instead; a dead
letter is always stored, or the delivery is handed back, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from nanoservice.errors import NonRetryableError
from nanoservice.runtime.decision import (
    DeadLetter,
    Decision,
    Done,
    Outbound,
    Publish,
    Retry,
    Wait,
)
from nanoservice.runtime.envelope import ErrorInfo
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.outbox import Outbox
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import WRONG_LAST_SEQUENCE, Delivery, Transport

__all__ = ["OUTAGE_BACKOFF", "Settler", "stored"]

log = logging.getLogger("nanoservice.runtime")

OUTAGE_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Seconds between re-publishes while the server cannot store (the last one repeats)."""


@dataclass(slots=True)
class _Pending:
    delivery: Delivery
    futures: list[asyncio.Future[int]]
    messages: list[Outbound]
    execution: str
    dead_letter: bool
    cleanup: str | None


async def stored(futures: list[asyncio.Future[int]]) -> list[int]:
    """Indexes of the messages that were not stored (empty: all stored).

    Raises the error of a message that can never be stored (``NonRetryableError``).
    """
    failed: list[int] = []
    for i, fut in enumerate(futures):
        try:
            await fut
        except Exception as exc:
            if getattr(exc, "code", None) == WRONG_LAST_SEQUENCE:
                continue
            if isinstance(exc, NonRetryableError):
                raise
            failed.append(i)
    return failed


class Settler:
    """Carries out decisions for one step."""

    def __init__(
        self,
        step: CompiledStep,
        outbox: Outbox,
        transport: Transport,
        joins: JoinStore | None = None,
        *,
        outage: float = 120.0,
    ) -> None:
        self.step = step
        self.outbox = outbox
        self.transport = transport
        self.joins = joins
        self.outage = outage
        self.unsettled = 0
        """Deliveries handed to the settler and not yet acked or nak'ed."""
        self._queue: deque[_Pending] = deque()
        self._acker: asyncio.Task[None] | None = None

    async def settle(self, delivery: Delivery, decision: Decision, execution: str = "") -> None:
        """Carry out ``decision`` for ``delivery``: the one place that settles it."""
        if type(decision) is Publish:
            await self._publish(delivery, decision.messages, execution, False, decision.cleanup)
        elif type(decision) is Done:
            await delivery.ack()
            if decision.cleanup:
                await self._forget(decision.cleanup)
        elif type(decision) is Retry or type(decision) is Wait:
            await delivery.nak(decision.delay)
        elif type(decision) is DeadLetter:
            messages = self.outbox.dead_letter(
                delivery, decision.execution, decision.envelope, decision.error, decision.id_suffix
            )
            await self._publish(delivery, messages, decision.execution, True, None)
        else:  # pragma: no cover - the Decision union is closed
            raise TypeError(f"not a decision: {decision!r}")

    async def _publish(
        self,
        delivery: Delivery,
        messages: list[Outbound],
        execution: str,
        dead_letter: bool,
        cleanup: str | None,
    ) -> None:
        publish = self.transport.publish
        futures = [await publish(m.subject, m.data, m.headers) for m in messages]
        self._queue.append(_Pending(delivery, futures, messages, execution, dead_letter, cleanup))
        self.unsettled += 1
        if self._acker is None:
            self._acker = asyncio.get_running_loop().create_task(self._ack_in_order())

    async def _ack_in_order(self) -> None:
        try:
            while self._queue:
                pending = self._queue.popleft()
                try:
                    await self._store(pending)
                finally:
                    self.unsettled -= 1
        finally:
            self._acker = None

    async def _store(self, pending: _Pending) -> None:
        delivery = pending.delivery
        try:
            failed = await stored(pending.futures)
            if failed:
                failed = await self._republish(pending, failed)
        except NonRetryableError as exc:
            await self._cannot_store(pending, exc)
            return
        if failed:
            log.error(
                "%s/%s execution %s: could not store %s for %.0f s; handing it back",
                self.step.workflow,
                self.step.name,
                pending.execution,
                "its dead letter" if pending.dead_letter else "its output",
                self.outage,
                extra=self._fields(pending),
            )
            await delivery.nak(1.0)
            return
        await delivery.ack()
        if pending.cleanup:
            await self._forget(pending.cleanup)

    async def _republish(self, pending: _Pending, failed: list[int]) -> list[int]:
        """Publish the messages not yet stored again, until stored or the outage is too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.outage
        attempt = 0
        while failed and loop.time() < deadline:
            delay = OUTAGE_BACKOFF[min(attempt, len(OUTAGE_BACKOFF) - 1)]
            attempt += 1
            if attempt == 3:
                log.warning(
                    "%s/%s execution %s: the server is not storing messages; retrying",
                    self.step.workflow,
                    self.step.name,
                    pending.execution,
                    extra=self._fields(pending),
                )
            await asyncio.sleep(delay)
            await self._heartbeat(pending)
            messages = [pending.messages[i] for i in failed]
            publish = self.transport.publish
            futures = [await publish(m.subject, m.data, m.headers) for m in messages]
            again = await stored(futures)
            failed = [failed[i] for i in again]
        return failed

    async def _heartbeat(self, pending: _Pending) -> None:
        """Keep this delivery and those queued behind it from being redelivered meanwhile."""
        for item in (pending, *self._queue):
            with contextlib.suppress(Exception):
                await item.delivery.in_progress()

    async def _cannot_store(self, pending: _Pending, exc: Exception) -> None:
        if pending.dead_letter:
            log.error(
                "%s/%s execution %s: dead letter refused by the server (%s); handing it back",
                self.step.workflow,
                self.step.name,
                pending.execution,
                exc,
                extra=self._fields(pending),
            )
            await pending.delivery.nak(5.0)
            return
        error = ErrorInfo(type(exc).__name__, f"could not store the step's output: {exc}")
        messages = self.outbox.dead_letter(pending.delivery, pending.execution, None, error)
        futures = [await self.transport.publish(m.subject, m.data, m.headers) for m in messages]
        await self._store(
            _Pending(pending.delivery, futures, messages, pending.execution, True, None)
        )

    def _fields(self, pending: _Pending) -> dict[str, object]:
        """The log fields of a delivery (these lines are logged after its handling ended)."""
        step = self.step
        return {
            "workflow": step.workflow,
            "step": step.name,
            "execution": pending.execution,
            "attempt": pending.delivery.delivered,
        }

    async def _forget(self, key: str) -> None:
        if self.joins is None:
            return
        try:
            await self.joins.delete(key)
        except Exception as exc:  # the bucket's TTL removes it later
            log.warning("could not delete join key %s: %s", key, exc)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every delivery handed over has been acked or nak'ed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._acker is not None and loop.time() < deadline:
            await asyncio.wait({self._acker}, timeout=deadline - loop.time())
