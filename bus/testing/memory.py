"""An in-process backend for fast tests of workflows and nodes.

``MemoryBus`` implements the whole :class:`~nanoservice.types.Backend` seam (transport, KV,
direct gets, live subscriptions) in one process, so the same hosts run on it as on a real
server; :mod:`.memory_stream` keeps the JetStream semantics the engine relies on. It is a
test double, not a broker: no persistence, no limits. The real server is what counts
(``tests/patterns`` runs on both).

    bus = MemoryBus()
    tables = [compile_file("workflows/hello.yaml", registry)]
    async with bus.hosting(tables, registry):
        outcome = await bus.run("hello", {"name": "Ada"})

Every delivery must be settled exactly once: a second settlement is recorded in
``bus.violations``, and ``hosting`` fails when the block ends if there is any.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from nanoservice import subjects
from nanoservice.runtime.host import Host
from nanoservice.runtime.middleware import Middleware
from nanoservice.runtime.outcome import Outcome, outcome_of
from nanoservice.runtime.serve import serve
from nanoservice.sdk.registry import Registry
from nanoservice.subjects import matches
from nanoservice.testing.memory_kv import MemoryKV
from nanoservice.testing.memory_stream import (
    Consumer,
    MemoryPublishError,
    Pull,
    StoredMessage,
    Stream,
)
from nanoservice.types import (
    EXECUTION,
    EXPECTED_LAST_SUBJECT_SEQ,
    MSG_ID,
    WRONG_LAST_SEQUENCE,
    DeliveryHandler,
    Headers,
    Subscription,
)
from nanoservice.workflow.table import RoutingTable

__all__ = ["MemoryBus", "MemoryKV", "matches"]


@dataclass
class _Watch:
    pattern: str
    callback: Callable[[str, bytes, Headers], None]
    bus: MemoryBus

    async def unsubscribe(self) -> None:
        with contextlib.suppress(ValueError):
            self.bus._watchers.remove(self)


class MemoryBus:
    """Streams, consumers and KV buckets in this process: a :class:`Backend` for tests."""

    def __init__(self) -> None:
        self._streams: dict[str, Stream] = {}
        self._watchers: list[_Watch] = []
        self._buckets: dict[str, MemoryKV] = {}
        self.violations: list[str] = []
        """Deliveries the engine settled more than once (must stay empty)."""

    # -- Backend --------------------------------------------------------------------------

    @property
    def transport(self) -> MemoryBus:
        return self

    @property
    def closed(self) -> bool:
        return False

    async def kv(self, bucket: str) -> MemoryKV:
        return self.bucket(bucket)

    def bucket(self, name: str) -> MemoryKV:
        """A KV bucket by name (created on first use), for tests to look into."""
        return self._buckets.setdefault(name, MemoryKV(name))

    async def last_message(self, stream: str, subject: str) -> StoredMessage | None:
        found = self._streams.get(stream)
        if found is None or subject not in found.last_by_subject:
            return None
        return found.messages.get(found.last_by_subject[subject])

    async def subscribe(
        self, subject: str, callback: Callable[[str, bytes, Headers], None]
    ) -> Subscription:
        watch = _Watch(subject, callback, self)
        self._watchers.append(watch)
        return watch

    # -- provisioning and the transport ---------------------------------------------------

    def provision(self, table: RoutingTable) -> None:
        """What :func:`nanoservice.nats.provision.provision` does on a server: the stream,
        its consumers, and the table stored (hosts watching the tables pick it up)."""
        s = table.stream
        stream = self._streams.setdefault(
            s.name, Stream(s.name, list(s.subjects), s.duplicate_window)
        )
        stream.subjects = list(s.subjects)
        for step in table.steps.values():
            stream.consumers.setdefault(
                step.consumer,
                Consumer(
                    step.consumer,
                    list(step.filter_subjects),
                    step.ack_wait,
                    step.retry.max_attempts + 1,
                    stream.messages,
                ),
            )
            if step.join is not None and step.join.timeout is not None:
                name = subjects.timer_consumer(step.name)
                stream.consumers.setdefault(
                    name,
                    Consumer(
                        name,
                        [subjects.timer_prefix(table.workflow, step.name) + ".*"],
                        step.ack_wait,
                        -1,
                        stream.messages,
                    ),
                )
        self.bucket(subjects.TABLES).put_now(table.workflow, table.to_json())

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
            fut.set_exception(MemoryPublishError("no stream captures this subject", 503))
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
        if headers.get(EXPECTED_LAST_SUBJECT_SEQ) == "0" and subject in stream.last_by_subject:
            fut.set_exception(MemoryPublishError("wrong last sequence", WRONG_LAST_SEQUENCE))
            return fut
        stream.seq += 1
        message = StoredMessage(stream.seq, subject, headers, data)
        stream.messages[stream.seq] = message
        stream.last_by_subject[subject] = stream.seq
        if msg_id:
            stream.ids[msg_id] = (stream.seq, now)
        for consumer in stream.consumers.values():
            consumer.offer(message)
        for watch in list(self._watchers):
            if matches(watch.pattern, subject):
                watch.callback(subject, data, headers)
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
    ) -> Pull:
        return Pull(
            self._streams[stream].consumers[consumer],
            handler,
            max_inflight,
            inline,
            self.violations.append,
        )

    def messages(self, stream: str, pattern: str = ">") -> list[tuple[str, bytes]]:
        """Every stored message of a stream whose subject matches ``pattern``."""
        return [
            (m.subject, m.data)
            for m in self._streams[stream].messages.values()
            if matches(pattern, m.subject)
        ]

    # -- running workflows ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def hosting(
        self,
        tables: list[RoutingTable],
        registry: Registry,
        *,
        steps: list[str] | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> AsyncIterator[Host]:
        """Provision the tables and run their steps in one host until the block ends."""
        for table in tables:
            self.provision(table)
        async with serve(
            self, tables, registry, steps=steps, middleware=middleware, drain_timeout=2
        ) as host:
            yield host
        if self.violations:
            raise AssertionError("deliveries settled more than once: " + "; ".join(self.violations))

    async def run(
        self, workflow: str, payload: Any, *, timeout: float = 10.0, execution: str | None = None
    ) -> Outcome:
        """Start an execution and wait for its result or dead letter."""
        execution = execution or subjects.new_execution_id()
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def seen(subject: str, data: bytes, headers: Headers) -> None:
            if not outcome.done():
                outcome.set_result(outcome_of(execution, subject, data))

        watches = [
            await self.subscribe(subjects.done_subject(workflow, execution), seen),
            await self.subscribe(subjects.dlq_subject(workflow, execution), seen),
        ]
        try:
            await self._publish(
                subjects.start_subject(workflow, execution),
                msgspec.json.encode(payload),
                {EXECUTION: execution, MSG_ID: f"{execution}:_start"},
            )
            return await asyncio.wait_for(outcome, timeout)
        finally:
            for watch in watches:
                await watch.unsubscribe()
