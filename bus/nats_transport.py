"""The NATS transport: JetStream on the lean paths.

Two things nats-py's convenience APIs leave on the table (see docs/architecture.md):

- a *continuous pull*: one callback subscription on an inbox, topped up by pull requests to
  ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` instead of ``sub.fetch()``;
- an *async publish*: a core publish with a per-message reply subject under one wildcard inbox,
  the PubAck resolving a future, instead of ``js.publish_async()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from .eager import start_eagerly
from .errors import NonRetryableError
from .types import DeliveryHandler, Headers

__all__ = [
    "NatsDelivery",
    "NatsTransport",
    "PayloadTooLargeError",
    "PublishError",
    "Publisher",
    "Puller",
    "frame",
    "send",
]

log = logging.getLogger("nanoservice.transport")

_EMPTY: dict[str, str] = {}


class PublishError(Exception):
    """The server did not store a message (error PubAck, no stream, or no answer in time)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_puback = msgspec.json.Decoder(_PubAck).decode


class NatsDelivery:
    """A JetStream message from a pull consumer; settle it with ack/nak/in_progress/term."""

    __slots__ = ("_nc", "data", "delivered", "headers", "reply", "stream_seq", "subject")

    def __init__(self, nc: NATS, msg: Msg) -> None:
        self._nc = nc
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: Headers = msg.headers or _EMPTY
        self.reply: str = msg.reply
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or the v2
        # form with domain and account hash in front (and a token after): count from the end.
        tokens = self.reply.split(".")
        base = 2 if len(tokens) == 9 else 4
        self.delivered = int(tokens[base + 2])
        self.stream_seq = int(tokens[base + 3])

    async def ack(self) -> None:
        await send(self._nc, self.reply, b"+ACK")

    async def nak(self, delay: float = 0.0) -> None:
        body = b'-NAK {"delay": %d}' % int(delay * 1000000000.0) if delay > 0 else b"-NAK"
        await send(self._nc, self.reply, body)

    async def in_progress(self) -> None:
        await send(self._nc, self.reply, b"+WPI")

    async def term(self, reason: str = "") -> None:
        await send(self._nc, self.reply, b"+TERM " + reason.encode() if reason else b"+TERM")


async def send(
    nc: NATS, subject: str, data: bytes, reply: str = "", headers: Headers | None = None
) -> None:
    """Core publish of an engine-built message, straight into the connection's buffer.

    nats-py's ``publish`` validates every subject and header name; the engine builds its
    own from validated names, and that validation costs more than the rest of a publish.
    Falls back to ``publish`` if the client's internals are not the ones expected.
    """
    if len(data) > nc.max_payload:
        raise PayloadTooLargeError(
            f"message of {len(data)} bytes to {subject} exceeds the server's max payload "
            f"of {nc.max_payload} bytes"
        )
    if not _DIRECT:
        await nc.publish(subject, data, reply=reply, headers=dict(headers or {}) or None)
        return
    if nc.is_closed:
        raise PublishError("connection closed")
    command = frame(subject, reply, data, headers)
    if not nc.is_connected and nc._pending_data_size + len(command) > nc._max_pending_size:
        raise PublishError("disconnected and the reconnect buffer is full")
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(data)
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


_DIRECT = all(hasattr(NATS, a) for a in ("_send_command", "_flush_pending"))


class PayloadTooLargeError(PublishError, NonRetryableError):
    """A message over the server's max payload: retrying cannot make it fit."""


def _clean(value: str) -> str:
    return value if "\n" not in value and "\r" not in value else " ".join(value.splitlines())


def frame(subject: str, reply: str, data: bytes, headers: Headers | None) -> bytes:
    """The PUB/HPUB protocol line and payload for one message (NATS client protocol)."""
    if not headers:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(data), data)
    lines = "".join(f"{k}: {_clean(v)}\r\n" for k, v in headers.items())
    head = f"NATS/1.0\r\n{lines}\r\n".encode()
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(head),
        len(head) + len(data),
        head,
        data,
    )


class Publisher:
    """Async JetStream publish: ``await publish(...)`` returns a future of the stream seq.

    Messages go out through :func:`send` (framed here, no per-header validation).
    """

    def __init__(self, nc: NATS, *, max_pending: int = 4000, ack_timeout: float = 10.0) -> None:
        self.nc = nc
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
        self._seq += 1
        seq = self._seq
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[seq] = (fut, self._clock + self.ack_timeout)
        try:
            await send(self.nc, subject, data, f"{self._prefix}.{seq}", headers)
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


class Puller:
    """A continuous pull from one durable consumer, at most ``max_inflight`` unsettled."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        handler: DeliveryHandler,
        *,
        max_inflight: int = 256,
        batch: int | None = None,
        expires: float = 5.0,
        inline: bool = False,
    ) -> None:
        self.nc = nc
        self.handler = handler
        self.inline = inline
        self.max_inflight = max_inflight
        self.batch = batch or max(1, min(256, max_inflight // 2))
        self.expires = expires
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._request = json.dumps({"batch": self.batch, "expires": int(expires * 1e9)}).encode()
        self.outstanding = 0
        self.inflight = 0
        self.stopped = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_seen = time.monotonic()
        self._topping_up = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._inbox = ""
        self._watchdog: asyncio.Task[None] | None = None
        self._sub: Any = None

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        await self._top_up()
        self._watchdog = asyncio.create_task(self._watch())

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop pulling and wait (bounded) for the messages in flight to settle."""
        self.stopped = True
        if self._watchdog:
            self._watchdog.cancel()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _top_up(self) -> None:
        while (
            not self.stopped
            and self.nc.is_connected
            and self.outstanding + self.inflight + self.batch <= self.max_inflight
        ):
            self.outstanding += self.batch
            await self.nc.publish(self.subject, self._request, reply=self._inbox)
        if (
            self.outstanding == 0
            and self.inflight < self.max_inflight
            and not self.stopped
            and self.nc.is_connected
        ):
            # max_inflight smaller than a batch: ask for what fits.
            want = self.max_inflight - self.inflight
            self.outstanding += want
            req = json.dumps({"batch": want, "expires": int(self.expires * 1e9)}).encode()
            await self.nc.publish(self.subject, req, reply=self._inbox)

    async def _on_msg(self, msg: Msg) -> None:
        self._last_seen = time.monotonic()
        headers = msg.headers
        if headers and not msg.reply:
            status = headers.get("Status")
            if status == "100":  # idle heartbeat
                return
            if status is not None:  # 404/408 request over, 409 limits: release its credit
                left = headers.get("Nats-Pending-Messages")
                self.outstanding = max(0, self.outstanding - int(left)) if left else 0
                await self._top_up()
                return
        self.outstanding = max(0, self.outstanding - 1)
        if self.stopped:  # hand it back at once so another replica can take it
            await self.nc.publish(msg.reply, b"-NAK")
            return
        delivery = NatsDelivery(self.nc, msg)
        if self.inline:
            # Handled right here unless it has to wait; then a task finishes it.
            if start_eagerly(self.handler(delivery), self._track):
                self._maybe_top_up()
            return
        self._track(asyncio.create_task(self.handler(delivery)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self.inflight += 1
        self._idle.clear()
        self._tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.inflight -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("handler failed outside its error handling", exc_info=task.exception())
        if self.inflight == 0:
            self._idle.set()
        self._maybe_top_up()

    def _maybe_top_up(self) -> None:
        if (
            not self._topping_up
            and not self.stopped
            and self.outstanding + self.inflight + self.batch <= self.max_inflight
        ):
            self._topping_up = True
            top_up = asyncio.create_task(self._top_up())
            self._tasks.add(top_up)
            top_up.add_done_callback(self._topped_up)

    def _topped_up(self, task: asyncio.Task[None]) -> None:
        self._topping_up = False
        self._tasks.discard(task)

    async def _watch(self) -> None:
        """Pull requests die with a connection: re-issue them after a reconnect, or when
        nothing at all has been heard for two request lifetimes."""
        reconnects = self.nc.stats["reconnects"]
        while not self.stopped:
            await asyncio.sleep(min(0.5, self.expires))
            if not self.nc.is_connected:
                continue
            silent = time.monotonic() - self._last_seen > 2 * self.expires
            if self.nc.stats["reconnects"] != reconnects or silent:
                reconnects = self.nc.stats["reconnects"]
                self.outstanding = 0
                self._last_seen = time.monotonic()
                await self._top_up()


class NatsTransport:
    """:class:`~nanoservice.types.Transport` over one NATS connection."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.publisher = Publisher(nc)
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
            self.nc, stream, consumer, handler, max_inflight=max_inflight, inline=inline
        )
        await puller.start()
        self._pullers.append(puller)
        return puller

    async def close(self, drain_timeout: float = 10.0) -> None:
        await asyncio.gather(*(p.stop(drain_timeout) for p in self._pullers))
        await self.publisher.close()
