"""What a claim check costs: one execution of a 3-step transform workflow, small vs 5 MB.

Run: ``python tests/bench/bench_claims.py [--size 5000000] [--runs 5] [--max-payload N]``.
Starts its own nats-server (default 1 MiB max_payload), runs small and large executions
alternately, one at a time, on the same host, and prints the median time of each and their
ratio. With ``--max-payload 16777216`` the large body travels inline: the claim's own cost is
the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats

from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.nats.provision import provision
from nanoservice.nats.transport import NatsTransport
from nanoservice.nodes.transform import transform
from nanoservice.runtime.host import Host, select_steps
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text

WORKFLOW = """
name: claimbench
steps:
  a: {node: transform, with: {expr: '{"blob": input.blob}'}, next: b}
  b: {node: transform, with: {expr: '{"blob": prev.blob}'}, next: c}
  c: {node: transform, with: {expr: '{"blob": prev.blob}'}}
output: '{"size": size(prev.blob)}'
"""


async def bench(url: str, size: int, runs: int) -> dict[str, float]:
    registry = Registry([transform])
    table = compile_text(WORKFLOW, registry, file="bench.yaml")
    nc, hnc = await nats.connect(url), await nats.connect(url)
    await provision(nc.jetstream(), table)
    transport = NatsTransport(hnc)
    await transport.start()
    host = Host(transport, registry, select_steps([table]), nc=hnc)
    await host.start()
    client = Client(nc)
    times: dict[str, list[float]] = {"small": [], "large": []}
    try:
        for _label, n in (("small", 100), ("large", size)):  # warm-up, not counted
            await client.run("claimbench", {"blob": "x" * n}, timeout=120)
        for _ in range(runs):
            for label, n in (("small", 100), ("large", size)):
                payload = {"blob": "x" * n}
                start = time.perf_counter()
                outcome = await client.run("claimbench", payload, timeout=120)
                times[label].append(time.perf_counter() - start)
                assert outcome.ok and outcome.output == {"size": n}, outcome
    finally:
        await host.stop(drain_timeout=2)
        await transport.close()
        await hnc.close()
        await nc.close()
    return {label: statistics.median(ts) for label, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5_000_000, help="large payload bytes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--max-payload",
        type=int,
        default=None,
        help="server max_payload (e.g. 16777216: the large body travels inline, no claim)",
    )
    args = parser.parse_args()
    options = ServerOptions(
        store_dir=Path(tempfile.mkdtemp()) / "nats", max_payload=args.max_payload
    )
    with LocalServer(options) as server:
        result = asyncio.run(bench(server.url, args.size, args.runs))
    small, large = result["small"], result["large"]
    print(f"small execution (100 B):        median {small * 1000:8.1f} ms")
    print(f"large execution ({args.size} B): median {large * 1000:8.1f} ms")
    print(f"ratio large/small: {large / small:.0f}x")


if __name__ == "__main__":
    main()
