"""The set of cancelled executions every host keeps, followed from the ``nano_cancel`` bucket.

``nano cancel`` puts ``<workflow>.<execution>`` into the bucket; hosts follow it with a KV
watch into a set, so checking an execution on the hot path is a set lookup, not a KV read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nanoservice.types import KeyValueStore

__all__ = ["CancelWatcher"]

log = logging.getLogger("nanoservice.runtime.cancel")


class CancelWatcher:
    """Keeps the set of cancelled executions current."""

    def __init__(self) -> None:
        self.cancelled: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def is_cancelled(self, workflow: str, execution: str) -> bool:
        return bool(self.cancelled) and f"{workflow}.{execution}" in self.cancelled

    async def start(self, kv: KeyValueStore, *, wait: float = 5.0) -> None:
        """Follow ``kv``; returns once the current entries are known (or after ``wait``)."""
        self._task = asyncio.create_task(self._follow(kv))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), wait)

    async def _follow(self, kv: KeyValueStore) -> None:
        async for entry in kv.watch():
            if entry is None:  # end of the current values
                self.ready.set()
            elif entry.value is None:
                self.cancelled.discard(entry.key)
            else:
                self.cancelled.add(entry.key)
                log.info("execution %s cancelled", entry.key)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
