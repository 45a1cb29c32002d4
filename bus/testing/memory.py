"""An in-process stand-in for JetStream, for fast tests of workflows and nodes.

``MemoryBus`` swaps exactly one seam, the :class:`~nanoservice.types.Transport`, plus the KV
buckets that joins and calls use. It keeps what the engine relies on: streams capturing
subjects, durable consumers with filters, explicit acks, naks with delay, redelivery after
``ack_wait``, ``max_deliver``, ``Nats-Msg-Id`` de-duplication and the expected-last-subject
check. It is a test double, not a broker: one process, no persistence, no limits. The real
server is what counts (``tests/patterns`` runs on both).

    bus = MemoryBus()
    tables = [compile_file("workflows/hello.yaml", registry)]
    async with bus.hosting(tables, registry):
        outcome = await bus.run("hello", {"name": "Ada"})
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from nanoservice import subjects
from nanoservice.nats.wire import PublishError
from nanoservice.runtime.client import Outcome, outcome_of
from nanoservice.runtime.host import Host, select_steps
from nanoservice.runtime.joins import JoinStore
from nanoservice.runtime.runner import Services
from nanoservice.sdk.registry import Registry
from nanoservice.types import MSG_ID, DeliveryHandler, Headers
from nanoservice.workflow.table import RoutingTable

__all__ = ["MemoryBus", "MemoryKV", "matches"]

_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


@dataclass
class _Message:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


@dataclass
class _Consumer:
    name: str
    filters: list[str]
    ack_wait: float
    max_deliver: int
    ready: deque[int] = field(default_factory=deque)
    delivered: dict[int, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Stream:
    name: str
    subjects: list[str]
    duplicate_window: float
    messages: dict[int, _Message] = field(default_factory=dict)
    last_by_subject: dict[str, int] = field(default_factory=dict)
    ids: dict[str, tuple[int, float]] = field(default_factory=dict)
    consumers: dict[str, _Consumer] = field(default_factory=dict)
    seq: int = 0


class MemoryDelivery:
    """A delivery from a memory consumer; settling it schedules what the server would."""

    def __init__(self, bus: MemoryBus, consumer: _Consumer, message: _Message) -> None:
        self._bus, self._consumer, self._message = bus, consumer, message
        self.subject, self.headers, self.data = message.subject, message.headers, message.data
        self.stream_seq = message.seq
        self.delivered = consumer.delivered.get(message.seq, 0) + 1
        consumer.delivered[message.seq] = self.delivered
        self._settled = False
        self._timer = asyncio.get_running_loop().call_later(consumer.ack_wait, self._expire)

    def _expire(self) -> None:
        if not self._settled:
            self._settled = True
            self._bus._requeue(self._consumer, self._message.seq, 0.0)

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._timer.cancel()
        return True

    async def ack(self) -> None:
        if self._settle():
            self._consumer.delivered.pop(self._message.seq, None)

    async def term(self, reason: str = "") -> None:
        await self.ack()

    async def nak(self, delay: float = 0.0) -> None:
        if self._settle():
            self._bus._requeue(self._consumer, self._message.seq, delay)

    async def in_progress(self) -> None:
        if not self._settled:
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(
                self._consumer.ack_wait, self._expire
            )


class _Pull:
    """A running memory consumer: hands ready messages to the handler, bounded."""

    def __init__(
        self, bus: MemoryBus, consumer: _Consumer, handler: DeliveryHandler, max_inflight: int
    ) -> None:
        self.bus, self.consumer, self.handler = bus, consumer, handler
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
            message = self.bus._message(consumer, seq)
            if message is None:
                continue
            await self.slots.acquire()
            delivery = MemoryDelivery(self.bus, consumer, message)
            task = asyncio.get_running_loop().create_task(self._run(delivery))
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


class MemoryKV:
    """The part of a JetStream KV bucket the engine uses, with revisions for CAS."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._revision = 0

    async def get(self, key: str) -> KeyValue.Entry:
        if key not in self._entries:
            raise KeyNotFoundError()
        value, revision = self._entries[key]
        return KeyValue.Entry(self.name, key, value, revision, None, None, None)

    async def put(self, key: str, value: bytes) -> int:
        self._revision += 1
        self._entries[key] = (value, self._revision)
        return self._revision

    async def create(self, key: str, value: bytes) -> int:
        if key in self._entries:
            raise KeyWrongLastSequenceError(description="wrong last sequence: key exists")
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        if key in self._entries and last is not None and self._entries[key][1] != last:
            raise KeyWrongLastSequenceError(description="wrong last sequence")
        return await self.put(key, value)


class MemoryBus:
    """Streams, consumers and KV in this process: a :class:`Transport` for tests."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._watchers: list[tuple[str, Callable[[str, bytes], None]]] = []
        self.joins = MemoryKV("nano_joins")
        self.calls = MemoryKV("nano_calls")

    def provision(self, table: RoutingTable) -> None:
        """What :func:`nanoservice.nats.provision.provision` does on a server."""
        s = table.stream
        stream = self._streams.setdefault(
            s.name, _Stream(s.name, list(s.subjects), s.duplicate_window)
        )
        stream.subjects = list(s.subjects)
        for step in table.steps.values():
            stream.consumers.setdefault(
                step.consumer,
                _Consumer(
                    step.consumer,
                    list(step.filter_subjects),
                    step.ack_wait,
                    step.retry.max_attempts + 1,
                ),
            )

    def publish(self, subject: str, data: bytes, headers: Headers | None = None) -> Any:
        return self._publish(subject, data, dict(headers or {}))

    async def _publish(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stream = next(
            (s for s in self._streams.values() if any(matches(p, subject) for p in s.subjects)),
            None,
        )
        if stream is None:
            fut.set_exception(PublishError("no stream captures this subject", 503))
            return fut
        now = time.monotonic()
        msg_id = headers.get(MSG_ID)
        if (
            msg_id
            and msg_id in stream.ids
            and now - stream.ids[msg_id][1] < stream.duplicate_window
        ):
            fut.set_result(stream.ids[msg_id][0])
            return fut
        if headers.get(_EXPECTED_LAST) == "0" and subject in stream.last_by_subject:
            fut.set_exception(PublishError("wrong last sequence", _WRONG_LAST_SEQUENCE))
            return fut
        stream.seq += 1
        message = _Message(stream.seq, subject, headers, data)
        stream.messages[stream.seq] = message
        stream.last_by_subject[subject] = stream.seq
        if msg_id:
            stream.ids[msg_id] = (stream.seq, now)
        for consumer in stream.consumers.values():
            if any(matches(f, subject) for f in consumer.filters):
                consumer.ready.append(stream.seq)
                consumer.wake.set()
        for pattern, callback in list(self._watchers):
            if matches(pattern, subject):
                callback(subject, data)
        fut.set_result(stream.seq)
        return fut

    async def consume(
        self,
        stream: str,
        consumer: str,
        handler: DeliveryHandler,
        *,
        max_inflight: int,
        inline: bool = False,
    ) -> _Pull:
        return _Pull(self, self._streams[stream].consumers[consumer], handler, max_inflight)

    def _message(self, consumer: _Consumer, seq: int) -> _Message | None:
        for stream in self._streams.values():
            if consumer in stream.consumers.values():
                return stream.messages.get(seq)
        return None

    def _requeue(self, consumer: _Consumer, seq: int, delay: float) -> None:
        if consumer.delivered.get(seq, 0) >= consumer.max_deliver:
            consumer.delivered.pop(seq, None)  # the server gives up (an advisory on NATS)
            return

        def ready() -> None:
            consumer.ready.append(seq)
            consumer.wake.set()

        if delay > 0:
            asyncio.get_running_loop().call_later(delay, ready)
        else:
            ready()

    def messages(self, stream: str, pattern: str = ">") -> list[tuple[str, bytes]]:
        """Every stored message of a stream whose subject matches ``pattern``."""
        return [
            (m.subject, m.data)
            for m in self._streams[stream].messages.values()
            if matches(pattern, m.subject)
        ]

    @contextlib.asynccontextmanager
    async def hosting(self, tables: list[RoutingTable], registry: Registry) -> AsyncIterator[Host]:
        """Provision the tables and run all their steps in one host until the block ends."""
        for table in tables:
            self.provision(table)
        services = Services(self, joins=JoinStore(self.joins), calls=self.calls)
        host = Host(self, registry, select_steps(tables), services=services)
        await host.start()
        try:
            yield host
        finally:
            await host.stop(drain_timeout=2)

    async def run(
        self, workflow: str, payload: Any, *, timeout: float = 10.0, execution: str | None = None
    ) -> Outcome:
        """Start an execution and wait for its result or dead letter."""
        execution = execution or subjects.new_execution_id()
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def seen(subject: str, data: bytes) -> None:
            if not outcome.done():
                outcome.set_result(outcome_of(execution, subject, data))

        watches = [
            (subjects.done_subject(workflow, execution), seen),
            (subjects.dlq_subject(workflow, execution), seen),
        ]
        self._watchers += watches
        try:
            await self._publish(
                subjects.start_subject(workflow, execution),
                msgspec.json.encode(payload),
                {MSG_ID: f"{execution}:_start"},
            )
            return await asyncio.wait_for(outcome, timeout)
        finally:
            for watch in watches:
                self._watchers.remove(watch)
