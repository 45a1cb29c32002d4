"""A continuous pull from one durable JetStream consumer (no ``sub.fetch()``).

One callback subscription on an inbox receives the messages; pull requests to
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` keep up to ``max_inflight`` of them coming.
Requests die with a connection, so they are re-issued at once after a reconnect, and by a
watchdog after a silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from nanoservice.nats.claims import ClaimMissingError, Claims, missing_body
from nanoservice.nats.wire import send
from nanoservice.runtime.eager import start_eagerly
from nanoservice.types import CLAIM, CLAIM_MISSING, DeliveryHandler, Headers

__all__ = ["NatsDelivery", "Puller"]

log = logging.getLogger("nanoservice.transport")

_EMPTY: dict[str, str] = {}


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


class Puller:
    """A continuous pull from one durable consumer, at most ``max_inflight`` unsettled.

    With ``claims``, a claimed delivery (``Nano-Claim`` header) is resolved in a task before
    the handler sees it, so ``delivery.data`` is the full body. A claim that cannot be
    fetched is nak'ed with a delay until its ``claim_attempts``-th delivery (or the
    consumer's last one); then the handler gets a non-JSON body stating the reason and a
    ``Nano-Claim-Missing`` header, which the step dead-letters without running its node.
    """

    claim_attempts = 3
    claim_retry_delay = 1.0

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
        claims: Claims | None = None,
    ) -> None:
        self.nc = nc
        self.handler = handler
        self.claims = claims
        self.stream, self.consumer = stream, consumer
        self._max_deliver: int | None = None
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
        if headers and CLAIM in headers and self.claims is not None:
            self._track(asyncio.create_task(self._resolve(delivery, self.claims)))
            return
        if self.inline:
            # Handled right here unless it has to wait; then a task finishes it.
            if start_eagerly(self.handler(delivery), self._track):
                self._maybe_top_up()
            return
        self._track(asyncio.create_task(self.handler(delivery)))

    async def _resolve(self, delivery: NatsDelivery, claims: Claims) -> None:
        """Fetch a claimed body, then hand the delivery to the handler."""
        try:
            delivery.data = await claims.fetch(delivery.headers)
        except ClaimMissingError as exc:
            if delivery.delivered < await self._claim_attempts():
                log.warning("%s (delivery %d, retrying)", exc, delivery.delivered)
                await delivery.nak(self.claim_retry_delay * delivery.delivered)
                return
            log.error("%s: handing %s over as failed", exc, delivery.subject)
            delivery.data = missing_body(str(exc))
            delivery.headers = {**delivery.headers, CLAIM_MISSING: str(exc)}
        await self.handler(delivery)

    async def _claim_attempts(self) -> int:
        """Deliveries a missing claim is retried for: at most the consumer's ``max_deliver``."""
        if self._max_deliver is None:
            try:
                info = await self.nc.jetstream().consumer_info(self.stream, self.consumer)
                self._max_deliver = info.config.max_deliver or -1
            except Exception:
                return self.claim_attempts
        limit = self._max_deliver
        return self.claim_attempts if limit <= 0 else min(self.claim_attempts, limit)

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
