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

from nanoservice.errors import NanoError
from nanoservice.nats.buckets import CANCEL, bucket
from nanoservice.subjects import is_valid_token

__all__ = ["CancelWatcher", "cancel_execution"]

log = logging.getLogger("nanoservice.runtime.cancel")


async def cancel_execution(js: JetStreamContext, workflow: str, execution: str) -> None:
    """Mark ``workflow``'s ``execution`` cancelled (hosts watch the bucket)."""
    for name in (workflow, execution):
        if not is_valid_token(name):
            raise NanoError(f"invalid workflow or execution name {name!r}")
    kv = await bucket(js, CANCEL)
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
        kv = await bucket(js, CANCEL)
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
