"""The contract at the bottom of the engine: header names, the delivery and the backend.

This module imports nothing of the project. Everything that moves and stores messages (the
NATS backend, the in-memory backend used by unit tests) implements :class:`Backend`;
everything that handles messages (the host, the step pipeline) sees only :class:`Delivery`,
:class:`Transport` and :class:`KeyValueStore`, and the errors defined here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeAlias

__all__ = [
    "ATTEMPT",
    "CLAIM",
    "CLAIM_MISSING",
    "CLAIM_SIZE",
    "ERROR",
    "EXECUTION",
    "EXPECTED_LAST_SUBJECT_SEQ",
    "JOIN_KEY",
    "JOIN_TIMER",
    "MSG_ID",
    "PARENT",
    "PARENT_REVISION",
    "REPLAY_OF",
    "RETURN",
    "REVISION",
    "ROUTE",
    "SKIP",
    "STEP",
    "TRACEPARENT",
    "TRACESTATE",
    "WORKFLOW",
    "WRONG_LAST_SEQUENCE",
    "Backend",
    "Delivery",
    "DeliveryHandler",
    "Headers",
    "JSONValue",
    "KVEntry",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValueStore",
    "PullSubscription",
    "StoredMessage",
    "Subscription",
    "Transport",
]

JSONValue: TypeAlias = Any
"""A value that JSON can carry: dict, list, str, int, float, bool or None."""

Headers: TypeAlias = Mapping[str, str]

EXECUTION = "Nano-Execution"
WORKFLOW = "Nano-Workflow"
STEP = "Nano-Step"
ROUTE = "Nano-Route"
ATTEMPT = "Nano-Attempt"
ERROR = "Nano-Error"
SKIP = "Nano-Skip"
JOIN_TIMER = "Nano-Join-Timer"
JOIN_KEY = "Nano-Join-Key"
REVISION = "Nano-Revision"
PARENT = "Nano-Parent"
PARENT_REVISION = "Nano-Parent-Revision"
RETURN = "Nano-Return"
REPLAY_OF = "Nano-Replay-Of"
"""On a replayed trigger (or step input): ``<workflow>.<execution>`` it replays."""
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code when an expected-last check fails (a result that exists already)."""
CLAIM = "Nano-Claim"
CLAIM_SIZE = "Nano-Claim-Size"
CLAIM_MISSING = "Nano-Claim-Missing"


class Delivery(Protocol):
    """One message handed to a consumer; it must be settled exactly once."""

    @property
    def subject(self) -> str: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def data(self) -> bytes: ...

    @property
    def delivered(self) -> int:
        """How many times the server has delivered this message (1 on the first try)."""
        ...

    @property
    def stream_seq(self) -> int: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float = 0.0) -> None: ...

    async def in_progress(self) -> None: ...

    async def term(self, reason: str = "") -> None: ...


DeliveryHandler: TypeAlias = Callable[[Delivery], Coroutine[Any, Any, None]]


class PullSubscription(Protocol):
    """A running consumer; ``stop`` stops pulling and lets in-flight messages settle."""

    async def stop(self, drain_timeout: float = 10.0) -> None: ...


class KeyNotFoundError(LookupError):
    """A KV key that has no value (never written, deleted or expired)."""


class KeyExistsError(Exception):
    """A compare-and-set lost: the key exists (create) or changed since it was read (update)."""


class KVEntry(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def revision(self) -> int | None: ...


class KeyValueStore(Protocol):
    """The part of a KV bucket the engine uses; revisions make compare-and-set possible.

    Implementations raise :class:`KeyNotFoundError` and :class:`KeyExistsError`, never their
    client library's own exception types.
    """

    async def get(self, key: str) -> KVEntry: ...

    async def put(self, key: str, value: bytes) -> int: ...

    async def create(self, key: str, value: bytes) -> int:
        """Store only if absent."""
        ...

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Store only if the revision is still ``last``."""
        ...

    async def delete(self, key: str) -> None: ...

    def watch(self) -> AsyncIterator[KVEntry | None]:
        """Every current entry, then ``None`` once, then each change as it happens
        (a deleted key comes with ``value`` None)."""
        ...


class StoredMessage(Protocol):
    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> Headers: ...


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Transport(Protocol):
    """The seam between the engine and the message system."""

    def publish(
        self, subject: str, data: bytes, headers: Headers | None = None
    ) -> Awaitable[asyncio.Future[int]]:
        """Send to the stream; the returned future resolves to the stream sequence when stored."""
        ...

    async def consume(
        self,
        stream: str,
        consumer: str,
        handler: DeliveryHandler,
        *,
        max_inflight: int,
        inline: bool = False,
    ) -> PullSubscription:
        """Pull continuously from a durable consumer, calling ``handler`` for each message.

        ``inline``: the handler may be started in the consumer's own callback (it does not
        use task-bound features before its first suspension; see ``nanoservice.runtime.eager``).
        """
        ...


class Backend(Protocol):
    """Everything the engine needs of a message system, in one seam.

    The NATS backend (:mod:`nanoservice.nats.backend`) and the memory backend
    (:mod:`nanoservice.testing.memory`) implement it; the host, the client and the CLI take
    one and never import a client library.
    """

    @property
    def transport(self) -> Transport: ...

    async def kv(self, bucket: str) -> KeyValueStore:
        """One of the engine's buckets (``nano_tables``, ``nano_joins``...), created if missing."""
        ...

    async def last_message(self, stream: str, subject: str) -> StoredMessage | None:
        """The last stored message on ``subject`` (a direct get), or None."""
        ...

    async def subscribe(
        self, subject: str, callback: Callable[[str, bytes, Headers], None]
    ) -> Subscription:
        """A live (non-durable) subscription, ready when this returns."""
        ...

    @property
    def closed(self) -> bool:
        """True once the connection is gone for good: a host must then exit."""
        ...
