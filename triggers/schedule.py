"""Schedules: cron and interval ticks start executions, exactly once per tick.

Every replica computes the same tick times (cron in UTC; intervals aligned to the Unix
epoch) and publishes each tick as the trigger ``nano.<wf>._start.tick-<name>-<epoch>`` with
``Nats-Expected-Last-Subject-Sequence: 0``: the server stores the first and refuses the
others, whenever they come (not only within the duplicate window), for as long as the stream
keeps the trigger. The last tick started is kept in ``nano_schedules``, so a scheduler that
was down knows which ticks it missed (``missed: skip`` or ``catch_up``, bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import APIError, KeyNotFoundError

from nanoservice import subjects
from nanoservice.nats.buckets import SCHEDULES, bucket
from nanoservice.types import EXECUTION, EXPECTED_LAST_SUBJECT_SEQ, MSG_ID, WRONG_LAST_SEQUENCE
from nanoservice.workflow.table import RoutingTable, ScheduleRoute
from nanoservice.workflow.triggers import TICK_ID

__all__ = ["Scheduler", "next_tick", "tick_execution", "ticks_between"]

log = logging.getLogger("nanoservice.triggers.schedule")


def next_tick(schedule: ScheduleRoute, after: float) -> float:
    """The first tick strictly after ``after`` (Unix seconds)."""
    if schedule.every is not None:
        return (int(after // schedule.every) + 1) * schedule.every
    from cronsim import CronSim

    assert schedule.cron is not None
    return next(CronSim(schedule.cron, datetime.fromtimestamp(after, UTC))).timestamp()


def ticks_between(schedule: ScheduleRoute, after: float, until: float, limit: int) -> list[float]:
    """Ticks in ``(after, until]``, the latest ``limit`` of them."""
    if schedule.every is not None:  # no walk over a long downtime
        last = int(until // schedule.every)
        first = max(int(after // schedule.every) + 1, last - limit + 1)
        return [k * schedule.every for k in range(first, last + 1)]
    found: list[float] = []
    tick = next_tick(schedule, after)
    while tick <= until:
        found = [*found[-(limit - 1) :], tick] if limit > 1 else [tick]
        tick = next_tick(schedule, tick)
    return found


def tick_execution(schedule: ScheduleRoute, tick: float) -> str:
    return TICK_ID.format(name=schedule.name, epoch=int(tick))


class Scheduler:
    """Runs every schedule of the tables ``tables()`` returns (call ``refresh`` on a change)."""

    def __init__(
        self,
        nc: NATS,
        tables: Callable[[], list[RoutingTable]],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.nc, self.tables, self.now = nc, tables, now
        self.js = nc.jetstream()
        self.started = 0
        """Ticks this replica stored (others found them stored already)."""
        self._tasks: dict[tuple[str, bytes], asyncio.Task[None]] = {}

    def refresh(self, _: Any = None) -> None:
        """Start the loops of new schedules and stop those of removed or changed ones."""
        wanted = {
            (t.workflow, msgspec.json.encode(s)): (t, s) for t in self.tables() for s in t.schedules
        }
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
        for key, (table, schedule) in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(self._run(table, schedule))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, table: RoutingTable, schedule: ScheduleRoute) -> None:
        key = f"{table.workflow}.{schedule.name}"
        kv = await self._retry(lambda: bucket(self.js, SCHEDULES))
        last = await self._retry(lambda: self._last(kv, key))
        now = self.now()
        if last is not None and schedule.missed == "catch_up":
            for tick in ticks_between(schedule, last, now, schedule.max_catch_up):
                await self._fire(table, schedule, tick, kv, key)
        after = now
        while True:
            tick = next_tick(schedule, after)
            await asyncio.sleep(max(0.0, tick - self.now()))
            await self._fire(table, schedule, tick, kv, key)
            after = tick

    async def _retry(self, call: Callable[[], Any]) -> Any:
        """A call to the server, retried every second while it cannot answer."""
        while True:
            try:
                return await call()
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                log.warning("scheduler: cannot reach NATS (%s); retrying", exc)
                await asyncio.sleep(1.0)

    @staticmethod
    async def _last(kv: Any, key: str) -> float | None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return float(entry.value) if entry.value else None

    async def _fire(
        self, table: RoutingTable, schedule: ScheduleRoute, tick: float, kv: Any, key: str
    ) -> None:
        wf = table.workflow
        execution = tick_execution(schedule, tick)
        stamp = datetime.fromtimestamp(tick, UTC).isoformat().replace("+00:00", "Z")
        payload = {**schedule.input, "tick": stamp, "schedule": schedule.name}
        headers = {
            EXECUTION: execution,
            MSG_ID: f"{execution}:_start",
            EXPECTED_LAST_SUBJECT_SEQ: "0",  # once per tick, beyond the duplicate window
        }
        subject = subjects.start_subject(wf, execution)
        for attempt in range(30):
            try:
                ack = await self.js.publish(subject, msgspec.json.encode(payload), headers=headers)
            except APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    break  # another replica started this tick
                log.warning("scheduler: tick %s of %s not stored: %s", execution, wf, exc)
            except Exception as exc:  # no PubAck (a reconnect, an election): same tick again
                log.warning("scheduler: tick %s of %s not stored: %s", execution, wf, exc)
            else:
                if not ack.duplicate:
                    self.started += 1
                    log.info("scheduler: started %s of %s", execution, wf)
                break
            await asyncio.sleep(min(1.0 + attempt, 5.0))
        with contextlib.suppress(Exception):
            await kv.put(key, repr(tick).encode())
