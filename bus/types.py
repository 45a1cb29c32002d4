"""The contract at the bottom of the engine: header names, the delivery and the transport.

This module imports nothing of the project. Everything that moves messages (the NATS
transport, the in-memory bus used by unit tests) implements :class:`Transport`; everything
that handles messages (the host) sees only :class:`Delivery`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeAlias

__all__ = [
    "ATTEMPT",
    "CLAIM",
    "CLAIM_MISSING",
    "CLAIM_SIZE",
    "ERROR",
    "EXECUTION",
    "JOIN_TIMER",
    "MSG_ID",
    "PARENT",
    "RETURN",
    "ROUTE",
    "SKIP",
    "STEP",
    "TRACEPARENT",
    "TRACESTATE",
    "WORKFLOW",
    "Delivery",
    "DeliveryHandler",
    "Headers",
    "JSONValue",
    "KeyValueStore",
    "PullSubscription",
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
PARENT = "Nano-Parent"
RETURN = "Nano-Return"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MSG_ID = "Nats-Msg-Id"
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


class KeyValueStore(Protocol):
    """The part of a JetStream KV bucket the engine uses (revisions make CAS possible)."""

    async def get(self, key: str) -> Any:
        """The entry (``.value``, ``.revision``); raises ``KeyNotFoundError`` if absent."""
        ...

    async def put(self, key: str, value: bytes) -> int: ...

    async def create(self, key: str, value: bytes) -> int:
        """Store only if absent; raises ``KeyWrongLastSequenceError`` otherwise."""
        ...

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        """Store only if the revision is still ``last`` (compare-and-set)."""
        ...


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
