"""The NATS transport: JetStream on the lean paths.

Two things nats-py's convenience APIs leave on the table (see docs/architecture.md):

- a *continuous pull* (:mod:`.puller`) instead of ``sub.fetch()``;
- an *async publish* (:class:`Publisher`): a core publish with a per-message reply subject
  under one wildcard inbox, the PubAck resolving a future, instead of
  ``js.publish_async()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from nanoservice.nats.claims import Claims
from nanoservice.nats.puller import Puller
from nanoservice.nats.wire import PayloadTooLargeError, PublishError, send
from nanoservice.types import DeliveryHandler, Headers

__all__ = ["NatsTransport", "Publisher"]

log = logging.getLogger("nanoservice.transport")


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_puback = msgspec.json.Decoder(_PubAck).decode


class Publisher:
    """Async JetStream publish: ``await publish(...)`` returns a future of the stream seq.

    Messages go out through :func:`send` (framed here, no per-header validation). With
    ``claims``, a body over its threshold, or one whose frame would still exceed the server's
    max payload, is stored in the object store and the message carries the claim.
    """

    def __init__(
        self,
        nc: NATS,
        *,
        max_pending: int = 4000,
        ack_timeout: float = 10.0,
        claims: Claims | None = None,
    ) -> None:
        self.nc = nc
        self.claims = claims
        self.max_pending = max_pending
        self.ack_timeout = ack_timeout
        self._pending: dict[int, tuple[asyncio.Future[int], float]] = {}
        self._seq = 0
        self._space = asyncio.Event()
        self._space.set()
        self._prefix = ""
        self._cut = 0
        self._clock = time.monotonic()  # advanced by the sweeper: no clock read per publish
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox()
        self._cut = len(self._prefix) + 1
        await self.nc.subscribe(
            self._prefix + ".*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(PublishError("publisher closed"))
        self._pending.clear()

    async def publish(
        self, subject: str, data: bytes, headers: Headers | None = None
    ) -> asyncio.Future[int]:
        while len(self._pending) >= self.max_pending:
            self._space.clear()
            await self._space.wait()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        claims = self.claims
        if claims is not None and len(data) > claims.threshold:
            try:
                data, headers = await claims.stash(subject, data, headers)
            except Exception as exc:
                fut.set_exception(PublishError(f"claim check for {subject} failed: {exc}"))
                return fut
        self._seq += 1
        seq = self._seq
        self._pending[seq] = (fut, self._clock + self.ack_timeout)
        reply = f"{self._prefix}.{seq}"
        try:
            try:
                await send(self.nc, subject, data, reply, headers)
            except PayloadTooLargeError:
                if claims is None or not data:
                    raise
                # under the threshold, but the headers push the frame over: claim it too
                data, headers = await claims.stash(subject, data, headers)
                await send(self.nc, subject, data, reply, headers)
        except Exception as exc:
            self._pending.pop(seq, None)
            if not isinstance(exc, PublishError):
                exc = PublishError(f"publish to {subject} failed: {exc}")
            fut.set_exception(exc)
        return fut

    async def _on_ack(self, msg: Msg) -> None:
        try:
            entry = self._pending.pop(int(msg.subject[self._cut :]), None)
        except ValueError:
            return
        if entry is not None and not entry[0].done():
            fut = entry[0]
            status = msg.headers.get("Status") if msg.headers else None
            if status == "503":
                fut.set_exception(PublishError("no stream captures this subject", 503))
            elif b'"error"' in msg.data:
                err = _decode_puback(msg.data).error or {}
                fut.set_exception(
                    PublishError(str(err.get("description", err)), err.get("err_code"))
                )
            else:
                fut.set_result(_decode_puback(msg.data).seq)
        if len(self._pending) < self.max_pending:
            self._space.set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._clock = now = time.monotonic()
            late = [k for k, (_, deadline) in self._pending.items() if deadline < now]
            for key in late:
                fut, _ = self._pending.pop(key)
                if not fut.done():
                    fut.set_exception(PublishError("no PubAck in time (server unreachable?)"))
            if late:
                self._space.set()


class NatsTransport:
    """:class:`~nanoservice.types.Transport` over one NATS connection.

    ``claim_threshold``: bodies over this many bytes travel as claim checks (default
    ``$NANO_CLAIM_THRESHOLD``, else 7/8 of the server's max payload; see
    :mod:`~nanoservice.nats.claims`).
    """

    def __init__(self, nc: NATS, *, claim_threshold: int | None = None) -> None:
        self.nc = nc
        self.claims = Claims(nc, threshold=claim_threshold)
        self.publisher = Publisher(nc, claims=self.claims)
        self._pullers: list[Puller] = []

    async def start(self) -> None:
        await self.publisher.start()

    def publish(self, subject: str, data: bytes, headers: Headers | None = None) -> Any:
        return self.publisher.publish(subject, data, headers)

    async def consume(
        self,
        stream: str,
        consumer: str,
        handler: DeliveryHandler,
        *,
        max_inflight: int,
        inline: bool = False,
    ) -> Puller:
        puller = Puller(
            self.nc,
            stream,
            consumer,
            handler,
            max_inflight=max_inflight,
            inline=inline,
            claims=self.claims,
        )
        await puller.start()
        self._pullers.append(puller)
        return puller

    async def close(self, drain_timeout: float = 10.0) -> None:
        await asyncio.gather(*(p.stop(drain_timeout) for p in self._pullers))
        await self.publisher.close()
