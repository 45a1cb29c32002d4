"""The console's live view: recent executions, fed by a tail, fanned out to SSE clients.

One core NATS subscription on ``nano.*.*.*`` (the same as ``nano tail``: it costs the
streams nothing) turns every stored message into an :class:`~nanoservice.inspect.tail.Event`
and updates that execution's :class:`Summary`. At start, the triggers, results and dead
letters of the last ``history`` seconds are read back by subject filter from near the end
of each stream (:meth:`Hub.backfill`), so the list is not empty after a restart.
Everything is bounded: the summaries kept (``keep``), the history read back, and each
client's queue (the oldest update is dropped when a slow client falls behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from nanoservice import subjects
from nanoservice.inspect.history import Record, bounds, read
from nanoservice.inspect.tail import Event, Tail
from nanoservice.types import REPLAY_OF
from nanoservice.workflow.table import RoutingTable

__all__ = ["OUTCOMES", "SCAN", "Hub", "Summary", "matches"]

OUTCOMES = ("running", "succeeded", "failed")
"""What the execution list filters on."""

_QUEUE = 256

SCAN = 20
"""Stream messages looked at per execution kept, when reading back the history."""


@dataclass
class Summary:
    """One execution as the list shows it."""

    workflow: str
    execution: str
    started: float
    updated: float
    outcome: str = "running"
    last_step: str = ""
    """The step that sent the latest message (``trigger`` at the start)."""
    messages: int = 0
    replay_of: str | None = None
    """``<workflow>.<execution>`` of the original, for a replay."""
    error_step: str | None = None


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[Summary] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: int = 0


class Hub:
    """Recent executions (bounded), live from a tail; ``updates()`` streams changes."""

    def __init__(
        self,
        nc: NATS,
        tables: Callable[[], dict[str, RoutingTable]],
        *,
        keep: int = 500,
        history: float = 3600.0,
    ) -> None:
        self.nc, self._tables, self.keep, self.history = nc, tables, keep, history
        self._recent: OrderedDict[tuple[str, str], Summary] = OrderedDict()
        self._clients: set[_Client] = set()
        self._tail = Tail()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe first (nothing is missed), then read back the recent history."""
        self._sub = await self.nc.subscribe(f"{subjects.PREFIX}.*.*.*", cb=self._on_msg)
        await self.backfill()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def backfill(self) -> None:
        """Triggers, results and dead letters of the last ``history`` seconds, per workflow.

        Only the stream's last ``keep * SCAN`` messages are looked at (read by subject
        filter from there), so a busy stream costs a bounded read and the newest show.
        """
        since = time.time() - self.history
        found: list[Record] = []
        for name, table in sorted(self._tables().items()):
            kinds = [subjects.START, subjects.DONE, subjects.DLQ]
            filters = [f"{subjects.PREFIX}.{name}.{kind}.*" for kind in kinds]
            with contextlib.suppress(Exception):  # a missing stream: nothing to show yet
                held = await bounds(self.nc, table.stream.name)
                if not held.messages:
                    continue
                start = max(held.first_seq, held.last_seq - self.keep * SCAN + 1)
                async for record in read(self.nc, table.stream.name, filters, start_seq=start):
                    if record.time >= since:
                        found.append(record)
        for record in sorted(found, key=lambda r: r.time):  # one list, in time order
            self._apply(record.subject, record.headers, record.time, notify=False)

    def recent(
        self,
        *,
        workflow: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[Summary]:
        """The newest executions first, filtered by workflow, outcome and start time."""
        found: list[Summary] = []
        for summary in reversed(self._recent.values()):
            if matches(summary, workflow=workflow, outcome=outcome, since=since):
                found.append(summary)
                if len(found) >= limit:
                    break
        return found

    def get(self, workflow: str, execution: str) -> Summary | None:
        return self._recent.get((workflow, execution))

    def replays_of(self, workflow: str, execution: str) -> list[Summary]:
        original = f"{workflow}.{execution}"
        return [s for s in self._recent.values() if s.replay_of == original]

    @contextlib.asynccontextmanager
    async def updates(self) -> AsyncIterator[_Client]:
        """A client's queue of changed summaries while the context is open."""
        client = _Client()
        self._clients.add(client)
        try:
            yield client
        finally:
            self._clients.discard(client)

    async def _on_msg(self, msg: Msg) -> None:
        headers = {k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)}
        self._apply(msg.subject, headers, time.time(), notify=True)

    def _apply(self, subject: str, headers: dict[str, str], at: float, *, notify: bool) -> None:
        event = self._tail.event(subject, headers, at)
        if event is None:
            return
        summary = self._update(event, headers)
        if notify:
            for client in self._clients:
                if client.queue.full():
                    client.queue.get_nowait()
                    client.dropped += 1
                client.queue.put_nowait(summary)

    def _update(self, event: Event, headers: dict[str, str]) -> Summary:
        key = (event.workflow, event.execution)
        summary = self._recent.get(key)
        if summary is None:
            summary = Summary(event.workflow, event.execution, event.time, event.time)
            self._recent[key] = summary
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        summary.updated, summary.messages = event.time, summary.messages + 1
        summary.last_step = event.step
        if event.outcome == "started":
            summary.started = min(summary.started, event.time)
            summary.replay_of = headers.get(REPLAY_OF, summary.replay_of)
        elif event.outcome == "done":
            summary.outcome = "succeeded"
        elif event.outcome == "failed":
            summary.outcome, summary.error_step = "failed", event.step
        elif summary.outcome == "failed":  # a retried dead letter runs again
            summary.outcome, summary.error_step = "running", None
        return summary


def matches(
    summary: Summary,
    *,
    workflow: str | None = None,
    outcome: str | None = None,
    since: float | None = None,
) -> bool:
    """Whether ``summary`` passes the execution list's filters (None: any)."""
    return (
        (not workflow or summary.workflow == workflow)
        and (not outcome or summary.outcome == outcome)
        and (since is None or summary.started >= since)
    )
