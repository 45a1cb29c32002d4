"""Schedules on a real server: one execution per tick with two scheduler replicas, missed
ticks skipped or caught up (bounded), the tick time in the input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import nats
import pytest

from nanoservice import subjects
from nanoservice.nats.buckets import SCHEDULES, bucket
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.triggers.schedule import Scheduler, next_tick, ticks_between
from nanoservice.workflow.table import ScheduleRoute
from tests.integration.triggers_support import workflows

TICKER = """
name: {name}
trigger:
  schedules:
    - {{name: beat, every: 1, missed: {missed}, max_catch_up: 3, input: {{source: clock}}}}
steps:
  note:
    node: transform
    with:
      expr: '{{"at": input.tick, "from": input.source}}'
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as s:
        yield s


def test_tick_times_are_the_same_for_every_replica() -> None:
    every = ScheduleRoute(name="b", every=60)
    assert next_tick(every, 119.5) == 120 and next_tick(every, 120) == 180
    assert ticks_between(every, 0, 600, 3) == [480, 540, 600]
    cron = ScheduleRoute(name="c", cron="*/15 * * * *")
    start = datetime(2026, 1, 1, 0, 7, tzinfo=UTC).timestamp()
    assert next_tick(cron, start) == datetime(2026, 1, 1, 0, 15, tzinfo=UTC).timestamp()
    hour = ticks_between(cron, start, start + 3600, 10)
    assert [datetime.fromtimestamp(t, UTC).minute for t in hour] == [15, 30, 45, 0]


async def _starts(nc: nats.NATS, workflow: str) -> dict[str, int]:
    info = await nc.jetstream().stream_info(
        subjects.stream_name(workflow), subjects_filter=f"nano.{workflow}._start.>"
    )
    return dict(info.state.subjects or {})


@pytest.mark.asyncio(loop_scope="module")
async def test_two_replicas_start_one_execution_per_tick(server: LocalServer) -> None:
    text = TICKER.format(name="ticker", missed="skip")
    async with workflows(server.url, [text]) as (nc, tables, _):
        other = await nats.connect(server.url)
        replicas = [Scheduler(nc, lambda: tables), Scheduler(other, lambda: tables)]
        begin = time.time()
        for replica in replicas:
            replica.refresh()
        await asyncio.sleep(3.6)
        for replica in replicas:
            await replica.stop()
        end = time.time()
        await other.close()
        starts = await _starts(nc, "ticker")
        ticks = sorted(int(s.rsplit("-", 1)[-1]) for s in starts)
        assert len(ticks) >= 3
        assert all(count == 1 for count in starts.values()), starts
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # none missed
        assert begin < ticks[0] and ticks[-1] <= end
        assert sum(r.started for r in replicas) == len(ticks)  # each tick stored once
        js = nc.jetstream()
        stream = subjects.stream_name("ticker")
        for tick in ticks:
            execution = f"tick-beat-{tick}"
            for _ in range(100):
                try:
                    done = await js.get_last_msg(stream, subjects.done_subject("ticker", execution))
                    break
                except nats.js.errors.NotFoundError:
                    await asyncio.sleep(0.05)
            output = msgspec.json.decode(done.data)["output"]
            stamp = datetime.fromtimestamp(tick, UTC).isoformat().replace("+00:00", "Z")
            assert output == {"at": stamp, "from": "clock"}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("missed", ["skip", "catch_up"])
async def test_missed_ticks_after_downtime(server: LocalServer, missed: str) -> None:
    name = f"missed-{missed.replace('_', '')}"
    async with workflows(server.url, [TICKER.format(name=name, missed=missed)]) as (nc, t, _):
        kv = await bucket(nc.jetstream(), SCHEDULES)
        down_since = time.time() - 6.5  # the last tick started before a 6.5 s downtime
        await kv.put(f"{name}.beat", repr(float(int(down_since))).encode())
        scheduler = Scheduler(nc, lambda: t)
        started = time.time()
        scheduler.refresh()
        await asyncio.sleep(0.4)
        await scheduler.stop()
        past = sorted(
            int(s.rsplit("-", 1)[-1])
            for s in await _starts(nc, name)
            if int(s.rsplit("-", 1)[-1]) <= started
        )
        if missed == "skip":
            assert past == []
        else:  # the latest 3 of the 6 missed
            assert past == [int(started) - 2, int(started) - 1, int(started)]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_tick_is_started_once_even_after_the_duplicate_window(
    server: LocalServer,
) -> None:
    text = TICKER.format(name="late", missed="catch_up") + "stream: {duplicate_window: 1}\n"
    async with workflows(server.url, [text]) as (nc, t, _):
        kv = await bucket(nc.jetstream(), SCHEDULES)
        last = repr(float(int(time.time()) - 4)).encode()
        counts = []
        for _ in range(2):  # the second replica comes late, from the same stored last tick
            await kv.put("late.beat", last)
            scheduler = Scheduler(nc, lambda: t)
            scheduler.refresh()
            await asyncio.sleep(0.3)
            await scheduler.stop()
            counts.append(scheduler.started)
            await asyncio.sleep(1.2)  # past the stream's duplicate window
        starts = await _starts(nc, "late")
        assert all(count == 1 for count in starts.values()), starts
        assert counts[0] >= 3 and counts[1] <= 2  # only ticks that came meanwhile
        assert sum(counts) == len(starts)
