"""Throughput of one step served by the TypeScript node, by the Python host, and by hand.

The step is the templates' word counter (`mynode`: the same logic in both languages), the
last step of a workflow, so each message costs one pull, one node call, one result publish
(PubAck awaited) and one ack. The baseline is that loop hand-written in nats-py. All three
run in the same session on one local nats-server, each on its own workflow/stream:

    python tests/bench/bench_foreign.py --n 5000 --rounds 3

Prints messages per second for each and the ratios to the baseline (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import nats
from nats.js.client import JetStreamContext

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.nats.provision import provision
from nanoservice.runtime.serve import serve
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "templates" / "node-py"))
from nano_node_mynode import mynode  # noqa: E402  (the Python template's node)

TS_MAIN = REPO / "templates" / "node-ts" / "dist" / "src" / "main.js"
TEXT = "the quick brown fox jumps over the lazy dog and the cat"


def workflow(name: str, runtime: str | None) -> str:
    mark = f", runtime: {runtime}" if runtime else ""
    return (
        f"name: {name}\nsteps:\n  shape: {{node: transform, with: {{expr: input}}, next: count}}\n"
        f"  count: {{node: mynode, with: {{lower: true}}, concurrency: 256{mark}}}\n"
    )


async def load(js: JetStreamContext, table: RoutingTable, n: int) -> None:
    """Publish n step messages for `count`, as the `shape` step would send them."""
    body = json.dumps({"prev": {"text": TEXT}}).encode()
    pending: list[Awaitable[Any]] = []
    for i in range(n):
        headers = {
            "Nano-Step": "shape",
            "Nano-Revision": table.revision,
            "Nats-Msg-Id": f"e{i}:shape:count",
        }
        pending.append(js.publish(f"{table.steps['count'].subject}.e{i}", body, headers=headers))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def wait_done(
    js: JetStreamContext, table: RoutingTable, n: int, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = await js.stream_info(
            table.stream.name, subjects_filter=f"nano.{table.workflow}._done.*"
        )
        if len(info.state.subjects or {}) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table.workflow}: {len(info.state.subjects or {})} of {n} results")
        await asyncio.sleep(0.02)


async def pulling(js: JetStreamContext, table: RoutingTable) -> None:
    for _ in range(600):
        info = await js.consumer_info(table.stream.name, "count")
        if info.num_waiting:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the step's consumer never got a pull")


async def measure(js: JetStreamContext, table: RoutingTable, n: int) -> float:
    await pulling(js, table)
    start = time.perf_counter()
    await asyncio.gather(load(js, table, n), wait_done(js, table, n))
    return n / (time.perf_counter() - start)


async def hand_written(url: str, table: RoutingTable, stop: asyncio.Event) -> None:
    """The baseline: pull, count words, publish the result, ack after the PubAck."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("count", table.stream.name)

    async def one(msg: Any) -> None:
        words = json.loads(msg.data)["prev"]["text"].lower().split()
        top = max(set(words), key=words.count) if words else None
        execution = msg.subject.rsplit(".", 1)[1]
        body = json.dumps({"output": {"words": len(words), "top": top}, "step": "count"})
        await js.publish(
            f"nano.{table.workflow}._done.{execution}",
            body.encode(),
            headers={"Nats-Msg-Id": f"{execution}:count:_done", "Nano-Step": "count"},
        )
        await msg.ack()

    while not stop.is_set():
        try:
            msgs = await sub.fetch(256, timeout=0.5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        await asyncio.gather(*(one(m) for m in msgs))
    await nc.close()


async def round_(url: str, js: JetStreamContext, n: int, k: int) -> dict[str, float]:
    registry = Registry.discover()
    registry.add(mynode)
    rates: dict[str, float] = {}

    async def provisioned(name: str, runtime: str | None) -> RoutingTable:
        table = compile_text(workflow(f"{name}{k}", runtime), registry)
        await provision(js, table)
        return table

    table = await provisioned("raw", "none")
    stop = asyncio.Event()
    task = asyncio.create_task(hand_written(url, table, stop))
    rates["hand-written nats-py"] = await measure(js, table, n)
    stop.set()
    await task

    table = await provisioned("py", None)
    async with (
        nats_backend(url) as backend,
        serve(backend, [table], registry, steps=[f"py{k}.count"]),
    ):
        rates["Python host"] = await measure(js, table, n)

    table = await provisioned("ts", "node")
    env = {**os.environ, "NATS_URL": url, "NANO_STEPS": f"ts{k}.count"}
    proc = await asyncio.create_subprocess_exec(
        "node", str(TS_MAIN), env=env, stdout=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    try:
        rates["TypeScript node"] = await measure(js, table, n)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not TS_MAIN.exists():
        sys.exit("build the TypeScript node first: cd templates/node-ts && npm ci && npx tsc -p .")
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(ServerOptions(store_dir=Path(tmp))) as server,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        rounds = []
        for k in range(args.rounds):
            rates = await round_(server.url, js, args.n, k)
            base = rates["hand-written nats-py"]
            print(
                f"round {k + 1}: "
                + ", ".join(
                    f"{name} {rate:,.0f}/s ({rate / base:.2f}x)" for name, rate in rates.items()
                )
            )
            rounds.append(rates)
        await nc.close()
    print(f"median of {args.rounds} round(s), {args.n} messages each:")
    for name in rounds[0]:
        rate = statistics.median(r[name] for r in rounds)
        ratio = statistics.median(r[name] / r["hand-written nats-py"] for r in rounds)
        print(f"  {name:22s} {rate:8,.0f} msg/s  {ratio:.2f}x the hand-written step")


if __name__ == "__main__":
    asyncio.run(main())
