#!/usr/bin/env python3
"""Deployment modes: the 3-step workflow in nano mode (3 processes) against the monolith,
and 3 replicas of a slow step against 1; same server, same run, through `nano up`.

One nats-server is started (``LocalServer``, free port, temp store); each run is a
``nano up --nats-url URL --mode M`` in a temporary project (as a user runs it), loaded by
one publisher with ``--window`` triggers in flight, results counted on
``nano.<wf>._done.>``. The monolith is the baseline of the nano run; 1 replica is the
baseline of the 3-replica run.

Usage::

    python tests/bench/bench_modes.py [--n 5000] [--window 500] [--slow-n 60] [--json out.json]

Results and their meaning: docs/benchmarks.md ("Deployment modes").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions, free_port

NANO = Path(sys.executable).parent / "nano"
THREE = """\
name: three
steps:
  s1: {node: transform, with: {expr: 'input'}, next: s2}
  s2: {node: transform, with: {expr: 'input'}, next: s3}
  s3: {node: transform, with: {expr: 'input'}}
"""
SLOW = """\
name: slow
steps:
  work: {node: delay, with: {seconds: 0.05}, concurrency: 1}
"""


class Up:
    """``nano up`` in ``root`` until it prints ``ready:``."""

    def __init__(self, root: Path, url: str, mode: str) -> None:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [str(NANO), "up", "--nats-url", url, "--mode", mode, "--log-level", "warning"],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ready:"):
                return
        raise RuntimeError(f"nano up --mode {mode} ended before it was ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)


def project(root: Path, workflow: str, nano_yaml: str = "") -> Path:
    (root / "workflows").mkdir(parents=True)
    name = workflow.split("\n", 1)[0].removeprefix("name: ")
    (root / "workflows" / f"{name}.yaml").write_text(workflow)
    if nano_yaml:
        (root / "nano.yaml").write_text(nano_yaml)
    return root


async def load(url: str, workflow: str, n: int, window: int) -> float:
    """Executions per second: ``n`` triggers, ``window`` in flight, until every result."""
    nc = await nats.connect(url)
    client = Client(nc)
    done = asyncio.Event()
    seen: set[str] = set()
    run = os.urandom(4).hex()
    gate = asyncio.Semaphore(window)  # executions in flight: taken per trigger, freed per result

    async def on_result(msg: Any) -> None:
        execution = msg.subject.rsplit(".", 1)[-1]
        if execution.startswith(run) and execution not in seen:
            seen.add(execution)
            gate.release()
            if len(seen) >= n:
                done.set()

    await nc.subscribe(f"nano.{workflow}._done.>", cb=on_result)

    async def one(i: int) -> None:
        await gate.acquire()
        await client.start(workflow, {"i": i}, execution=f"{run}{i}")

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - began
    await nc.close()
    return n / elapsed


def measure(
    url: str, workflow: str, text: str, mode: str, n: int, window: int, yml: str = ""
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        up = Up(project(Path(tmp), text, yml), url, mode)
        try:
            asyncio.run(load(url, workflow, min(200, n), window))  # warm-up
            return asyncio.run(load(url, workflow, n, window))
        finally:
            up.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--slow-n", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = LocalServer(ServerOptions(store_dir=Path(store), port=free_port()))
        server.start()
        try:
            url = server.url
            result: dict[str, Any] = {"cores": os.cpu_count(), "n": args.n, "window": args.window}
            result["monolith"] = measure(url, "three", THREE, "monolith", args.n, args.window)
            result["nano"] = measure(url, "three", THREE, "nano", args.n, args.window)
            one = "groups:\n  w: {steps: [slow], replicas: 1}\n"
            three = "groups:\n  w: {steps: [slow], replicas: 3}\n"
            result["slow_1_replica"] = measure(url, "slow", SLOW, "nano", args.slow_n, 60, one)
            result["slow_3_replicas"] = measure(url, "slow", SLOW, "nano", args.slow_n, 60, three)
        finally:
            server.stop()
    result["nano_vs_monolith"] = result["nano"] / result["monolith"]
    result["replicas_3_vs_1"] = result["slow_3_replicas"] / result["slow_1_replica"]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
