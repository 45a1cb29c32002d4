"""The NATS backend: the engine's :class:`~nanoservice.types.Backend` over one connection.

Everything nats-py specific that the runtime needs lives here or below: the transport
(lean publish and continuous pull), KV buckets with the project's own error types, direct
gets of an execution's last message, and live subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from nanoservice.nats.buckets import bucket
from nanoservice.nats.connect import connect
from nanoservice.nats.provision import Provisioned, provision
from nanoservice.nats.transport import NatsTransport
from nanoservice.types import (
    WRONG_LAST_SEQUENCE,
    Headers,
    KeyExistsError,
    KeyNotFoundError,
    Subscription,
)
from nanoservice.workflow.table import RoutingTable

__all__ = ["NatsBackend", "NatsKV", "nats_backend"]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    value: bytes | None
    revision: int | None


@dataclass(frozen=True, slots=True)
class _Stored:
    subject: str
    data: bytes
    headers: Headers = field(default_factory=dict)


def _lost_race(exc: Exception) -> bool:
    if isinstance(exc, KeyWrongLastSequenceError):
        return True
    return isinstance(exc, APIError) and (
        exc.err_code == WRONG_LAST_SEQUENCE
        or "wrong last sequence" in str(exc.description or "").lower()
    )


class NatsKV:
    """A JetStream KV bucket behind the engine's :class:`~nanoservice.types.KeyValueStore`."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> _Entry:
        try:
            entry = await self.kv.get(key)
        except NotFoundError:  # KeyNotFoundError and KeyDeletedError alike
            raise KeyNotFoundError(key) from None
        return _Entry(key, entry.value, entry.revision)

    async def put(self, key: str, value: bytes) -> int:
        return await self.kv.put(key, value)

    async def create(self, key: str, value: bytes) -> int:
        try:
            return await self.kv.create(key, value)
        except Exception as exc:
            if _lost_race(exc):
                raise KeyExistsError(key) from None
            raise

    async def update(self, key: str, value: bytes, last: int) -> int:
        try:
            return await self.kv.update(key, value, last=last)
        except Exception as exc:
            if _lost_race(exc):
                raise KeyExistsError(key) from None
            raise

    async def delete(self, key: str) -> None:
        await self.kv.delete(key)

    async def watch(self) -> AsyncIterator[_Entry | None]:
        watcher = await self.kv.watchall()
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=60 * 60)  # type: ignore[no-untyped-call]
                except NatsError:  # nothing changed for an hour
                    continue
                if entry is None:
                    yield None
                elif entry.operation in ("DEL", "PURGE"):
                    yield _Entry(entry.key, None, entry.revision)
                else:
                    yield _Entry(entry.key, entry.value, entry.revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


class _CoreSubscription:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    async def unsubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()


class NatsBackend:
    """:class:`~nanoservice.types.Backend` over one NATS connection."""

    def __init__(self, nc: NATS, *, replicas: int = 1) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.replicas = replicas
        self._transport = NatsTransport(nc)
        self._buckets: dict[str, NatsKV] = {}
        self._lock = asyncio.Lock()

    @property
    def transport(self) -> NatsTransport:
        return self._transport

    async def start(self) -> None:
        await self._transport.start()

    @property
    def closed(self) -> bool:
        return bool(self.nc.is_closed)

    async def kv(self, name: str) -> NatsKV:
        async with self._lock:
            if name not in self._buckets:
                self._buckets[name] = NatsKV(await bucket(self.js, name, replicas=self.replicas))
            return self._buckets[name]

    async def last_message(self, stream: str, subject: str) -> _Stored | None:
        try:
            msg = await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        return _Stored(msg.subject or subject, msg.data or b"", dict(msg.headers or {}))

    async def subscribe(
        self, subject: str, callback: Callable[[str, bytes, Headers], None]
    ) -> Subscription:
        async def on_msg(msg: Msg) -> None:
            callback(msg.subject, msg.data, msg.headers or {})

        sub = await self.nc.subscribe(subject, cb=on_msg)
        await self.nc.flush()
        return _CoreSubscription(sub)

    async def provision(self, table: RoutingTable) -> Provisioned:
        """Create or update the workflow's stream, consumers and stored table."""
        return await provision(self.js, table, replicas=self.replicas)

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Stop the transport and drain the connection."""
        await self._transport.close(drain_timeout)
        with contextlib.suppress(Exception):
            await self.nc.drain()


@contextlib.asynccontextmanager
async def nats_backend(
    url: str, *, name: str = "nanoservice", replicas: int = 1
) -> AsyncIterator[NatsBackend]:
    """Connect to ``url`` and yield a started backend; drain and close it when done."""
    nc = await connect(url, name=name)
    backend = NatsBackend(nc, replicas=replicas)
    try:
        await backend.start()
        yield backend
    finally:
        await backend.close(drain_timeout=2.0)
        if not nc.is_closed:
            await nc.close()
