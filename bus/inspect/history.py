"""Reading stored messages by server-side subject filter, never by scanning a stream.

A read is an ephemeral pull consumer (no acks, memory storage, deleted after use) filtered
on the subjects asked for; the server sends only those, in stream order. Claimed bodies
(docs/protocol.md, "Large payloads") are resolved, so callers see the body that was sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from nanoservice.errors import NanoError
from nanoservice.nats import claims

__all__ = ["Record", "StreamBounds", "bounds", "message_at", "read", "read_all"]

_BATCH = 256
_WAIT = 5.0


@dataclass(frozen=True)
class Record:
    """One stored message: where it is, when it was stored, what it says."""

    seq: int
    time: float
    """Unix seconds when the server stored it."""
    subject: str
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""

    def json(self) -> Any:
        """The body as JSON, or its text when it is not JSON (None when empty)."""
        if not self.data:
            return None
        try:
            return msgspec.json.decode(self.data)
        except msgspec.DecodeError:
            return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class StreamBounds:
    """What a stream still holds: its first and last sequence and the first one's time."""

    stream: str
    first_seq: int
    last_seq: int
    first_time: float | None
    messages: int


async def bounds(nc: NATS, stream: str) -> StreamBounds:
    js = nc.jetstream()
    try:
        state = (await js.stream_info(stream)).state
    except NotFoundError:
        raise NanoError(f"no stream {stream} on this server") from None
    first: float | None = None
    if state.messages:
        with contextlib.suppress(NotFoundError):  # emptied meanwhile
            msg = await js.get_msg(stream, state.first_seq, subject=">", next=True)
            first = msg.time.timestamp() if isinstance(msg.time, datetime) else None
    return StreamBounds(stream, state.first_seq, state.last_seq, first, state.messages)


async def read(
    nc: NATS,
    stream: str,
    filters: Sequence[str],
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    limit: int | None = None,
) -> AsyncIterator[Record]:
    """The messages stored on ``filters`` (from ``start_seq`` or ``start_time``), in order."""
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=30.0,
        filter_subjects=list(filters) if len(filters) > 1 else None,
        filter_subject=filters[0] if len(filters) == 1 else None,
    )
    if start_seq is not None:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start_seq
    elif start_time is not None:
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, start_time
    else:
        config.deliver_policy = DeliverPolicy.ALL
    try:
        sub = await js.pull_subscribe(filters[0], stream=stream, config=config)
    except NotFoundError:
        raise NanoError(f"no stream {stream} on this server") from None
    name: str | None = None
    try:
        info = await sub.consumer_info()
        name, left = info.name, info.num_pending or 0
        count = 0
        while left > 0 and (limit is None or count < limit):
            try:
                msgs = await sub.fetch(min(_BATCH, left), timeout=_WAIT)
            except TimeoutError:  # fewer left than counted: deleted or aged out meanwhile
                break
            for msg in msgs:
                meta = msg.metadata
                headers = {k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)}
                data = await claims.body_of(nc, msg.headers, msg.data or b"")
                yield Record(
                    meta.sequence.stream, meta.timestamp.timestamp(), msg.subject, headers, data
                )
                count += 1
                left = meta.num_pending
                if limit is not None and count >= limit:
                    break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, name)


async def read_all(nc: NATS, stream: str, filters: Sequence[str]) -> list[Record]:
    return [record async for record in read(nc, stream, filters)]


async def message_at(nc: NATS, stream: str, seq: int) -> Record | None:
    """The message stored at ``seq``, or None if it is gone (aged out or deleted)."""
    try:
        msg = await nc.jetstream().get_msg(stream, seq)
    except NotFoundError:
        return None
    headers = {k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)}
    data = await claims.body_of(nc, msg.headers, msg.data or b"")
    stamp = msg.time.timestamp() if msg.time else 0.0
    return Record(msg.seq or seq, stamp, msg.subject or "", headers, data)
