"""`nano up --cluster` in nano mode (a 3-server local cluster, R3 streams, one process per
step): SIGKILL of one server mid-batch loses nothing and every execution completes with
exactly one result."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from nanoservice.nats.client import Client
from nanoservice.nats.local_server import PID_FILE
from tests.e2e.modes_project import Up, make_project, on_nats, results_per_execution

pytestmark = pytest.mark.timeout(400)

SLOW = """\
name: slow
steps:
  a: {node: transform, with: {expr: '{"n": input.n}'}, next: b}
  b: {node: delay, with: {seconds: 0.1}, concurrency: 4, timeout: 2, next: c}
  c: {node: transform, with: {expr: '{"n": prev.n * 10}'}, timeout: 2}
"""


def test_a_server_lost_mid_batch_loses_nothing_in_nano_mode(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", workflows={"slow": SLOW})
    up = Up(root, "--cluster", "--mode", "nano", ready_timeout=120)
    try:
        pid = int((root / ".nano" / "cluster" / "n2" / PID_FILE).read_text())

        async def batch(nc: nats.NATS) -> None:
            client = Client(nc)
            runs = [
                asyncio.ensure_future(client.run("slow", {"n": n}, timeout=150)) for n in range(40)
            ]
            await asyncio.sleep(0.5)  # mid-batch
            os.kill(pid, signal.SIGKILL)
            outcomes = await asyncio.gather(*runs)
            assert [o.output for o in outcomes] == [{"n": n * 10} for n in range(40)]
            # A new stream leader may answer stream info before it applied every
            # message (seen: half the results for a second or two): wait, bounded.
            ids = {o.execution for o in outcomes}
            for _ in range(60):
                results = await results_per_execution(nc, "slow")
                if ids <= results.keys():
                    break
                await asyncio.sleep(0.5)
            assert {results.get(o.execution) for o in outcomes} == {1}, results

        first = up.url.split(",")[0]  # n1: the server this test's connection stays on
        on_nats(first, batch)
        assert up.stop() == 0, up.process.output()
    finally:
        up.close()
