"""The routing tables a bridge or scheduler serves: those stored on the server, followed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client as NATS

from nanoservice.nats.provision import load_tables
from nanoservice.workflow.table import RoutingTable

__all__ = ["StoredTables"]

log = logging.getLogger("nanoservice.triggers")


class StoredTables:
    """The tables in ``nano_tables``, re-read every ``interval`` seconds (a new revision
    `nano up` or a deploy stores is served within that)."""

    def __init__(self, nc: NATS, *, interval: float = 2.0) -> None:
        self.nc, self.interval = nc, interval
        self.tables: list[RoutingTable] = []
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[RoutingTable]], None]] = []

    def __call__(self) -> list[RoutingTable]:
        return self.tables

    def on_change(self, listener: Callable[[list[RoutingTable]], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._follow())

    async def refresh(self) -> None:
        loaded = await load_tables(self.nc.jetstream())
        tables = [loaded[name] for name in sorted(loaded)]
        if [(t.workflow, t.revision) for t in tables] != [
            (t.workflow, t.revision) for t in self.tables
        ]:
            self.tables = tables
            for listener in self._listeners:
                listener(tables)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.nc.is_connected:
                continue
            try:
                await self.refresh()
            except Exception as exc:  # the server may be electing a leader: next time
                log.debug("cannot read the routing tables: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
