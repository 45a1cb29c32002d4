"""Waiting for many executions' outcomes through one subscription per process.

A client that waits for one execution subscribes to its `_done` and `_dlq` subjects and
flushes: two subscriptions and a round trip per wait. A process that waits for thousands (the
HTTP bridge, the request server) instead holds :class:`Results`: one subscription on
``nano.*._done.*`` and one on ``nano.*._dlq.*``, opened once, and a table of waiting futures
by (workflow, execution). A message nobody waits for costs a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from nanoservice import subjects
from nanoservice.nats import claims
from nanoservice.runtime.outcome import Outcome, outcome_of

__all__ = ["Results", "Watch"]

_PENDING = 1 << 20
"""Messages a subscription may buffer: every outcome of every workflow passes through."""


class Watch:
    """One wait: ``outcome`` resolves when the execution's result or dead letter arrives."""

    def __init__(self, results: Results, key: tuple[str, str]) -> None:
        self.results, self.key = results, key
        self.outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def close(self) -> None:
        self.results._forget(self)


class Results:
    """The process's outcome subscriptions and the waits on them."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._waiting: dict[tuple[str, str], list[Watch]] = {}
        self._subs: list[Any] = []

    @property
    def waiting(self) -> int:
        """Executions being waited for."""
        return len(self._waiting)

    async def start(self) -> None:
        """Subscribe (once) and flush, so no outcome published after this returns is missed."""
        if self._subs:
            return
        for kind in (subjects.DONE, subjects.DLQ):
            self._subs.append(
                await self.nc.subscribe(
                    f"{subjects.PREFIX}.*.{kind}.*",
                    cb=self._on_msg,
                    pending_msgs_limit=_PENDING,
                    pending_bytes_limit=-1,
                )
            )
        await self.nc.flush()

    def watch(self, workflow: str, execution: str) -> Watch:
        """Start waiting; call before publishing the trigger, then ``close`` the watch."""
        key = (workflow, execution)
        watch = Watch(self, key)
        self._waiting.setdefault(key, []).append(watch)
        return watch

    def _forget(self, watch: Watch) -> None:
        watches = self._waiting.get(watch.key)
        if watches is None:
            return
        with contextlib.suppress(ValueError):
            watches.remove(watch)
        if not watches:
            del self._waiting[watch.key]

    async def _on_msg(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        if len(tokens) != 4:
            return
        key = (tokens[1], tokens[3])
        if key not in self._waiting:
            return
        data = await claims.body_of(self.nc, msg.headers, msg.data)
        outcome = outcome_of(key[1], msg.subject, data)
        for watch in self._waiting.get(key, ()):
            if not watch.outcome.done():
                watch.outcome.set_result(outcome)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
