#!/usr/bin/env python3
"""The HTTP bridge under load: `nano up` serving a 1-step and a 3-step sync workflow, and a
hand-written Starlette baseline, same server, same run, same load generator.

* **baseline**: a minimal Starlette endpoint (uvicorn, one process) that publishes the body
  to JetStream (PubAck awaited) and waits, through one shared subscription, for the result a
  hand-written durable pull consumer publishes to JetStream (PubAck awaited before its ack).
* **bridge 1-step / 3-step**: the real `nano up --nats-url URL --http-port P` in a temporary
  folder with the workflow (`transform` steps, `expr: input`), route `POST /one` or `/three`.

The load generator is this process: asyncio, ``--connections`` keep-alive HTTP/1.1
connections written by hand on raw streams (no HTTP library: it must not be the bottleneck),
each sending a request as soon as the previous answer is read. Each mode runs ``--warmup``
seconds, then ``--seconds`` measured: requests/s, p50 and p99 latency, errors, and the server
process's RSS at the end.

Usage::

    python tests/bench/bench_bridge.py [--connections 50] [--seconds 10] [--warmup 2]
        [--modes baseline,one,three] [--rounds 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NANO = Path(sys.executable).parent / "nano"

WORKFLOWS = {
    "one": """
name: one
trigger:
  http: {method: POST, path: /one}
steps:
  a: {node: transform, with: {expr: input}}
""",
    "three": """
name: three
trigger:
  http: {method: POST, path: /three}
steps:
  a: {node: transform, with: {expr: input}, next: b}
  b: {node: transform, with: {expr: input}, next: c}
  c: {node: transform, with: {expr: input}}
""",
}
BODY = b'{"name": "Ada", "n": 1}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the hand-written baseline ------------------------------------------------------------


def serve_baseline(url: str, port: int) -> None:
    """A minimal Starlette endpoint + one hand-written JetStream consumer, one process."""
    import uuid

    import nats
    import uvicorn
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    state: dict[str, Any] = {}
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def on_done(msg: Any) -> None:
        future = waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if future is not None and not future.done():
            future.set_result(msg.data)

    async def consume(js: Any) -> None:
        sub = await js.pull_subscribe("base.in.*", durable="worker", stream="BASE")
        while True:
            try:
                msgs = await sub.fetch(256, timeout=1)
            except Exception:
                continue

            async def one(msg: Any) -> None:
                key = msg.subject.rsplit(".", 1)[-1]
                await js.publish(f"base.done.{key}", msg.data)
                await msg.ack()

            await asyncio.gather(*(one(m) for m in msgs))

    async def startup() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BASE", subjects=["base.>"]))
        await js.add_consumer(
            "BASE",
            ConsumerConfig(
                durable_name="worker",
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject="base.in.*",
                max_ack_pending=20_000,
            ),
        )
        await nc.subscribe("base.done.*", cb=on_done)
        await nc.flush()
        state["nc"], state["js"] = nc, js
        state["task"] = asyncio.create_task(consume(js))

    async def run(request: Request) -> Response:
        body = await request.body()
        key = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting[key] = future
        await state["js"].publish(f"base.in.{key}", body)
        result = await asyncio.wait_for(future, 30)
        return Response(result, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await startup()
        yield

    app = Starlette(routes=[Route("/run", run, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the load generator -------------------------------------------------------------------


async def _connection(
    port: int, path: str, stop_at: float, measure_from: float, lat: list[float], errors: list[int]
) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while (sent := clock()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = clock()
            if sent >= measure_from:
                if head[9:12] == b"200":
                    lat.append(done - sent)
                else:
                    errors.append(int(head[9:12]))
    finally:
        writer.close()


async def load(
    port: int, path: str, connections: int, seconds: float, warmup: float
) -> dict[str, Any]:
    now = time.perf_counter()
    measure_from, stop_at = now + warmup, now + warmup + seconds
    lat: list[float] = []
    errors: list[int] = []
    await asyncio.gather(
        *(_connection(port, path, stop_at, measure_from, lat, errors) for _ in range(connections))
    )
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

    return {
        "requests_per_s": round(len(lat) / seconds, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "ok": len(lat),
        "errors": len(errors),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def run_mode(mode: str, url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    port = free_port()
    if mode == "baseline":
        cmd = [sys.executable, __file__, "--serve-baseline", url, "--port", str(port)]
        path, cwd = "/run", folder
    else:
        cwd = folder / mode
        (cwd / "workflows").mkdir(parents=True, exist_ok=True)
        (cwd / "workflows" / f"{mode}.yaml").write_text(WORKFLOWS[mode])
        cmd = [
            str(NANO),
            "up",
            "--nats-url",
            url,
            "--http-port",
            str(port),
            "--log-level",
            "warning",
        ]
        path = f"/{mode}"
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, proc)
        time.sleep(1.0)  # consumers pulling, tables loaded
        result = asyncio.run(load(port, path, args.connections, args.seconds, args.warmup))
        result["rss_mib"] = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"mode": mode, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--modes", default="baseline,one,three")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve-baseline", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.port)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from nanoservice.nats.local_server import LocalServer, ServerOptions

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(ServerOptions(store_dir=Path(tmp) / "nats")) as server,
    ):
        for round_ in range(args.rounds):  # interleaved, so a noisy minute hits every mode
            for mode in args.modes.split(","):
                results.append({"round": round_ + 1, **run_mode(mode, server.url, args, Path(tmp))})
                print(json.dumps(results[-1]), flush=True)
    for r in results:
        base = next(
            (b for b in results if b["mode"] == "baseline" and b["round"] == r["round"]), None
        )
        if base and r is not base and base["requests_per_s"]:
            r["vs_baseline"] = round(r["requests_per_s"] / base["requests_per_s"], 2)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "connections": args.connections,
        "seconds": args.seconds,
        "load_average": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
