"""Streams, durable consumers and deliveries in one process, for the memory backend.

They keep what the engine relies on: streams capturing subjects, consumers with filters,
explicit acks, naks with delay, redelivery after ``ack_wait``, ``max_deliver``,
``Nats-Msg-Id`` de-duplication and the expected-last-subject check. And one thing a server
cannot: a delivery settled twice by the engine is recorded as a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nanoservice.runtime.eager import start_eagerly
from nanoservice.subjects import matches
from nanoservice.types import DeliveryHandler

__all__ = ["MemoryDelivery", "MemoryPublishError", "Pull", "StoredMessage", "matches"]


class MemoryPublishError(Exception):
    """What the memory backend refuses to store (with JetStream's error code)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StoredMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


@dataclass
class Consumer:
    name: str
    filters: list[str]
    ack_wait: float
    max_deliver: int
    messages: dict[int, StoredMessage]
    ready: deque[int] = field(default_factory=deque)
    delivered: dict[int, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: StoredMessage) -> None:
        if any(matches(f, message.subject) for f in self.filters):
            self.ready.append(message.seq)
            self.wake.set()

    def requeue(self, seq: int, delay: float) -> None:
        if self.max_deliver > 0 and self.delivered.get(seq, 0) >= self.max_deliver:
            self.delivered.pop(seq, None)  # the server gives up (an advisory on NATS)
            return

        def ready() -> None:
            self.ready.append(seq)
            self.wake.set()

        if delay > 0:
            asyncio.get_running_loop().call_later(delay, ready)
        else:
            ready()


@dataclass
class Stream:
    name: str
    subjects: list[str]
    duplicate_window: float
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    last_by_subject: dict[str, int] = field(default_factory=dict)
    ids: dict[str, tuple[int, float]] = field(default_factory=dict)
    consumers: dict[str, Consumer] = field(default_factory=dict)
    seq: int = 0


class MemoryDelivery:
    """A delivery from a memory consumer; settling it schedules what the server would."""

    def __init__(
        self, consumer: Consumer, message: StoredMessage, violation: Callable[[str], None]
    ) -> None:
        self._consumer, self._message, self._violation = consumer, message, violation
        self.subject, self.headers, self.data = message.subject, message.headers, message.data
        self.stream_seq = message.seq
        self.delivered = consumer.delivered.get(message.seq, 0) + 1
        consumer.delivered[message.seq] = self.delivered
        self._expired = False
        self._settled_by: str | None = None
        self._timer = asyncio.get_running_loop().call_later(consumer.ack_wait, self._expire)

    def _expire(self) -> None:
        if self._settled_by is None and not self._expired:
            self._expired = True
            self._consumer.requeue(self._message.seq, 0.0)

    def _settle(self, how: str) -> bool:
        """True if this settlement counts; a second one by the engine is a violation."""
        if self._settled_by is not None:
            self._violation(
                f"{self.subject} (seq {self.stream_seq}) settled twice: {self._settled_by}, {how}"
            )
            return False
        self._settled_by = how
        self._timer.cancel()
        return not self._expired  # the server ignores a settlement after ack_wait

    async def ack(self) -> None:
        if self._settle("ack"):
            self._consumer.delivered.pop(self._message.seq, None)

    async def term(self, reason: str = "") -> None:
        if self._settle("term"):
            self._consumer.delivered.pop(self._message.seq, None)

    async def nak(self, delay: float = 0.0) -> None:
        if self._settle("nak"):
            self._consumer.requeue(self._message.seq, delay)

    async def in_progress(self) -> None:
        if self._settled_by is None and not self._expired:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(
                self._consumer.ack_wait, self._expire
            )


class Pull:
    """A running memory consumer: hands ready messages to the handler, bounded.

    ``inline`` handlers are started eagerly, as the NATS puller does.
    """

    def __init__(
        self,
        consumer: Consumer,
        handler: DeliveryHandler,
        max_inflight: int,
        inline: bool,
        violation: Callable[[str], None],
    ) -> None:
        self.consumer, self.handler, self.inline = consumer, handler, inline
        self.violation = violation
        self.slots = asyncio.Semaphore(max_inflight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        consumer = self.consumer
        while True:
            while not consumer.ready:
                consumer.wake.clear()
                await consumer.wake.wait()
            seq = consumer.ready.popleft()
            message = consumer.messages.get(seq)
            if message is None:
                continue
            await self.slots.acquire()
            delivery = MemoryDelivery(consumer, message, self.violation)
            if self.inline:
                if start_eagerly(self._run(delivery), self._track):
                    continue
            else:
                self._track(asyncio.get_running_loop().create_task(self._run(delivery)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, delivery: MemoryDelivery) -> None:
        try:
            await self.handler(delivery)
        finally:
            self.slots.release()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self.loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.loop_task
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=drain_timeout)
