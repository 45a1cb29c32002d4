"""Cancellation: a KV bucket of cancelled executions that every host watches.

``nano cancel`` puts ``<workflow>.<execution>`` into the bucket; hosts keep the keys in a set
(a watch, not a lookup per message), drop that execution's messages and record one
``Cancelled`` outcome on its dead-letter subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

__all__ = ["CANCEL_BUCKET", "CancelWatcher", "cancel_bucket", "cancel_execution"]

CANCEL_BUCKET = "nano_cancel"
log = logging.getLogger("nanoservice.cancel")


async def cancel_bucket(
    js: JetStreamContext, *, replicas: int = 1, ttl: float = 86_400.0
) -> KeyValue:
    try:
        return await js.key_value(CANCEL_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=CANCEL_BUCKET,
                history=1,
                ttl=ttl,
                replicas=replicas,
                direct=True,
                description="nanoservice cancelled executions",
            )
        )


async def cancel_execution(js: JetStreamContext, workflow: str, execution: str) -> None:
    kv = await cancel_bucket(js)
    await kv.put(f"{workflow}.{execution}", b"cancelled")


class CancelWatcher:
    """Keeps the set of cancelled executions current."""

    def __init__(self) -> None:
        self.cancelled: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._watcher: object | None = None
        self.ready = asyncio.Event()

    def is_cancelled(self, workflow: str, execution: str) -> bool:
        return bool(self.cancelled) and f"{workflow}.{execution}" in self.cancelled

    async def start(self, js: JetStreamContext) -> None:
        kv = await cancel_bucket(js)
        watcher = await kv.watchall()
        self._watcher = watcher
        self._task = asyncio.create_task(self._follow(watcher))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5)

    async def _follow(self, watcher: object) -> None:
        updates = watcher.updates  # type: ignore[attr-defined]
        while True:
            try:
                entry = await updates(timeout=60 * 60)
            except asyncio.CancelledError:
                raise
            except Exception:  # nats-py raises a timeout when nothing changed
                continue
            if entry is None:  # end of the initial values
                self.ready.set()
                continue
            if entry.operation in ("DEL", "PURGE"):
                self.cancelled.discard(entry.key)
            else:
                self.cancelled.add(entry.key)
                log.info("execution %s cancelled", entry.key)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()  # type: ignore[attr-defined]
