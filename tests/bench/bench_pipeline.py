#!/usr/bin/env python3
"""Engine vs. hand-written nats-py: a 3-stage pipeline, same server, same run.

Measures, in one process against one nats-server:

* **baseline**: a hand-written 3-stage JetStream pipeline in plain nats-py, written the lean
  way (as ``../shared/bench/raw_pipeline.py``): durable pull consumers on one file stream, a
  continuous pull on an inbox, an async publish with PubAcks matched by reply subject, each
  stage acking only after its downstream PubAck. One NATS connection per stage.
* **engine**: the workflow ``s1 -> s2 -> s3`` of a ``passthrough`` node, provisioned with
  :func:`~nanoservice.nats.provision.provision` and run by one monolith
  :class:`~nanoservice.runtime.host.Host`
  (one NATS connection for all three steps; ``--hosts 3``: one Host and connection per step),
  result read from ``nano.<wf>._done.<id>``.

Both get the same trigger bytes (a JSON object with a ``perf_counter_ns`` send time, an index
and padding to ``--payload`` bytes), published by the same lean publisher, and the same
in-flight window. Latency is end to end: result received minus send time. Each mode is run at
the saturating window (throughput, loaded latency) and at window 1 (unloaded latency).

Usage::

    python tests/bench/bench_pipeline.py [--url URL] [--n 20000] [--window 1000]
        [--payload 128] [--latency-n 5000] [--rounds 1] [--hosts 1|3] [--concurrency N]
        [--uvloop/--no-uvloop] [--json out.json]

See docs/benchmarks.md for what the numbers mean and the ones measured so far.

Without ``--url`` it starts its own nats-server (``LocalServer``, free port, temp store) and
also reports the server's RSS (``/varz`` ``mem``) and CPU time per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from nanoservice import subjects
from nanoservice.nats.backend import NatsBackend
from nanoservice.nats.buckets import TABLES
from nanoservice.nats.connect import connect as engine_connect
from nanoservice.nats.provision import provision
from nanoservice.runtime.host import freeze_startup_heap
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text

__all__ = [
    "REGISTRY",
    "RunResult",
    "bench_payload",
    "main",
    "passthrough",
    "run_baseline",
    "run_engine",
]

MAX_PENDING = 8 * 1024 * 1024  # client-side buffer, as the engine's own connect() uses


# --------------------------------------------------------------------------- the node


@node("passthrough", pure=True)
async def passthrough(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    """Returns its input unchanged (``dict[str, Any]``: no validation)."""
    return input


REGISTRY = Registry([passthrough])

WORKFLOW_YAML = """\
name: {name}
steps:
  s1:
    node: passthrough
    next: s2{concurrency}
  s2:
    node: passthrough
    next: s3{concurrency}
  s3:
    node: passthrough{concurrency}
"""


# --------------------------------------------------------------------------- payload


class _Probe(msgspec.Struct):
    t: int
    i: int


class _ResultProbe(msgspec.Struct):
    output: _Probe
    step: str = ""


_decode_probe = msgspec.json.Decoder(_Probe).decode
_decode_result_probe = msgspec.json.Decoder(_ResultProbe).decode


def bench_payload(index: int, size: int) -> bytes:
    """``{"t":<perf_counter_ns>,"i":<index>,"pad":"xx.."}``, padded to ``size`` bytes."""
    head = b'{"t":%d,"i":%d,"pad":"' % (time.perf_counter_ns(), index)
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class RunResult:
    """What one measured run produced."""

    mode: str
    events: int
    window: int
    payload: int
    elapsed_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    results: int  # result messages received (duplicates included)
    distinct: int  # executions with at least one result
    duplicates: int
    mismatched: int  # results whose execution id did not match the payload's index
    client_cpu_us_per_event: float  # this process (all stages/steps + trigger + collector)
    server_cpu_us_per_event: float | None = None
    connections: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Collector:
    """Counts results per execution, releases the window and records latencies."""

    def __init__(self, n: int, window: int) -> None:
        self.n = n
        self.counts = bytearray(n)
        self.latencies: list[int] = []
        self.results = 0
        self.distinct = 0
        self.mismatched = 0
        self.duplicates = 0
        self.slots = asyncio.Semaphore(window)
        self.done = asyncio.Event()
        if n == 0:
            self.done.set()

    def record(self, now_ns: int, probe: _Probe, execution_index: int | None = None) -> None:
        self.results += 1
        i = probe.i
        if execution_index is not None and execution_index != i:
            self.mismatched += 1
        if not 0 <= i < self.n:
            self.mismatched += 1
            return
        c = self.counts[i]
        self.counts[i] = min(255, c + 1)
        if c:
            self.duplicates += 1
            return  # a duplicate: counted, not timed, frees no slot
        self.latencies.append(now_ns - probe.t)
        self.distinct += 1
        self.slots.release()
        if self.distinct >= self.n:
            self.done.set()

    def result(
        self,
        mode: str,
        window: int,
        payload: int,
        elapsed: float,
        cpu: float,
        server_cpu: float | None,
        connections: int,
    ) -> RunResult:
        lat = sorted(self.latencies)

        def pick(q: float) -> float:
            if not lat:
                return float("nan")
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6, 3)

        n = max(1, self.n)
        return RunResult(
            mode=mode,
            events=self.n,
            window=window,
            payload=payload,
            elapsed_s=round(elapsed, 3),
            events_per_s=round(self.n / elapsed) if elapsed > 0 else 0.0,
            p50_ms=pick(0.50),
            p99_ms=pick(0.99),
            results=self.results,
            distinct=self.distinct,
            duplicates=self.duplicates,
            mismatched=self.mismatched,
            client_cpu_us_per_event=round(cpu / n * 1e6, 1),
            server_cpu_us_per_event=None if server_cpu is None else round(server_cpu / n * 1e6, 1),
            connections=connections,
        )


# --------------------------------------------------------------------------- lean nats-py


async def _connect(url: str) -> NATS:
    return await nats.connect(url, pending_size=MAX_PENDING)


class _Puller:
    """Continuous pull consumer delivering to an async handler (as raw_pipeline.py)."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        handler: Callable[[Msg], Awaitable[None]],
        batch: int = 256,
    ) -> None:
        self.nc, self.handler, self.batch = nc, handler, batch
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.request = json.dumps({"batch": batch, "expires": 5_000_000_000}).encode()
        self.outstanding = 0
        self.stopped = False
        self.sub: Any = None

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(
            self.inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        await self._pull()
        await self._pull()

    async def _pull(self) -> None:
        if self.stopped:
            return
        self.outstanding += self.batch
        await self.nc.publish(self.subject, self.request, reply=self.inbox)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status == "100":
            return
        if status:
            left = msg.headers.get("Nats-Pending-Messages") if msg.headers else None
            self.outstanding = self.outstanding - int(left) if left else 0
        else:
            self.outstanding -= 1
            await self.handler(msg)
        while self.outstanding <= self.batch and not self.stopped:
            await self._pull()


class _Publisher:
    """Async JetStream publish returning a future resolved by the PubAck (as raw_pipeline.py)."""

    def __init__(self, nc: NATS, max_pending: int = 4000) -> None:
        self.nc, self.max_pending = nc, max_pending
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.seq = 0
        self.space = asyncio.Event()
        self.space.set()

    async def start(self) -> None:
        self.prefix = self.nc.new_inbox()
        self.cut = len(self.prefix) + 1
        await self.nc.subscribe(
            self.prefix + ".*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
        )

    async def publish(self, subject: str, data: bytes) -> asyncio.Future[None]:
        while len(self.pending) >= self.max_pending:
            self.space.clear()
            await self.space.wait()
        self.seq += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[self.seq] = fut
        await self.nc.publish(subject, data, reply=f"{self.prefix}.{self.seq}")
        return fut

    async def _on_ack(self, msg: Msg) -> None:
        fut = self.pending.pop(int(msg.subject[self.cut :]), None)
        if fut is not None and not fut.done():
            if b'"error"' in msg.data or (msg.headers and msg.headers.get("Status") == "503"):
                fut.set_exception(RuntimeError(msg.data.decode() or "no responders"))
            else:
                fut.set_result(None)
        if len(self.pending) < self.max_pending:
            self.space.set()


async def _drive(
    trigger: _Publisher,
    subject_of: Callable[[int], str],
    collector: _Collector,
    n: int,
    payload: int,
    timeout: float | None,
) -> float:
    """Publish ``n`` triggers keeping at most ``window`` in flight; seconds until all done."""
    start = time.perf_counter()
    for i in range(n):
        await collector.slots.acquire()
        await trigger.publish(subject_of(i), bench_payload(i, payload))
    wait = timeout if timeout is not None else max(60.0, n / 100)
    try:
        await asyncio.wait_for(collector.done.wait(), timeout=wait)
    except TimeoutError:
        raise TimeoutError(
            f"only {collector.distinct} of {n} executions finished within {wait:g} s"
        ) from None
    return time.perf_counter() - start


class _Meter:
    """Client (this process) and server CPU time over a run."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def _server(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> _Meter:
        self.cpu0, self.srv0 = time.process_time(), self._server()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        srv1 = self._server()
        self.srv = None if srv1 is None or self.srv0 is None else srv1 - self.srv0


# --------------------------------------------------------------------------- baseline


async def run_baseline(
    url: str,
    n: int,
    window: int,
    payload: int = 128,
    *,
    tag: str | None = None,
    settle: float = 0.0,
    timeout: float | None = None,
    server_pid: int | None = None,
) -> RunResult:
    """Hand-written 3-stage pipeline: trigger -> a -> b -> c -> done."""
    tag = tag or uuid.uuid4().hex[:10]
    stream = f"BENCHRAW_{tag.upper()}"
    subj = [f"benchraw.{tag}.{s}" for s in "abcd"]
    admin = await _connect(url)
    js = admin.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=subj, storage=StorageType.FILE))
    conns, tasks, pullers = [admin], [], []
    try:

        async def start_stage(i: int) -> None:
            nc = await _connect(url)  # one connection per stage, as separate services
            conns.append(nc)
            pub = _Publisher(nc)
            await pub.start()
            acks: asyncio.Queue[tuple[asyncio.Future[None], Msg]] = asyncio.Queue()

            async def acker() -> None:  # in order, each only after its downstream PubAck
                while True:
                    fut, msg = await acks.get()
                    await fut
                    await msg.ack()

            async def handle(msg: Msg) -> None:
                acks.put_nowait((await pub.publish(subj[i + 1], msg.data), msg))

            tasks.append(asyncio.create_task(acker()))
            name = f"stage{i + 1}"
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    durable_name=name,
                    filter_subject=subj[i],
                    ack_policy=AckPolicy.EXPLICIT,
                    max_ack_pending=20000,
                ),
            )
            puller = _Puller(nc, stream, name, handle)
            pullers.append(puller)
            await puller.start()

        for i in range(3):
            await start_stage(i)

        collector = _Collector(n, window)

        async def on_done(msg: Msg) -> None:
            collector.record(time.perf_counter_ns(), _decode_probe(msg.data))

        sink, source = await _connect(url), await _connect(url)
        conns += [sink, source]
        await sink.subscribe(subj[3], cb=on_done, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await sink.flush()
        trigger = _Publisher(source)
        await trigger.start()
        with _Meter(server_pid) as meter:
            elapsed = await _drive(trigger, lambda i: subj[0], collector, n, payload, timeout)
        if settle:
            await asyncio.sleep(settle)
        return collector.result(
            "baseline", window, payload, elapsed, meter.cpu, meter.srv, len(conns) - 1
        )
    finally:
        for p in pullers:
            p.stopped = True
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        for nc in conns:
            with contextlib.suppress(Exception):
                await nc.close()


# --------------------------------------------------------------------------- engine


async def run_engine(
    url: str,
    n: int,
    window: int,
    payload: int = 128,
    *,
    tag: str | None = None,
    concurrency: int | None = None,
    hosts: int = 1,
    settle: float = 0.0,
    timeout: float | None = None,
    server_pid: int | None = None,
) -> RunResult:
    """The workflow s1 -> s2 -> s3 (passthrough) on one monolith Host.

    ``hosts=3`` runs one Host per step instead, each with its own connection (the "micro"
    layout, here in one process): the same connection count as the baseline's stages.
    """
    tag = tag or uuid.uuid4().hex[:10]
    wf = f"bench{tag}"
    conc = f"\n    concurrency: {concurrency}" if concurrency else ""
    table = compile_text(WORKFLOW_YAML.format(name=wf, concurrency=conc), REGISTRY, file="<bench>")
    admin = await _connect(url)
    js = admin.jetstream()
    await provision(js, table)
    conns = [admin]
    running = contextlib.AsyncExitStack()
    groups = [None] if hosts == 1 else [[f"{wf}.{s}"] for s in table.steps]
    try:
        for only in groups:
            host_nc = await engine_connect(url, name="bench-host")  # each host's own connection
            conns.append(host_nc)
            backend = NatsBackend(host_nc)
            await backend.start()
            running.push_async_callback(backend.transport.close, 1.0)
            # as `nano up` runs it: the one wiring entry point
            await running.enter_async_context(
                serve(backend, [table], REGISTRY, steps=only, drain_timeout=5.0)
            )
        freeze_startup_heap()  # as `nano up` does once its host runs

        collector = _Collector(n, window)
        done_prefix = subjects.done_subject(wf, "")
        cut = len(done_prefix) + 1  # execution ids are "e<index>"

        async def on_done(msg: Msg) -> None:
            now = time.perf_counter_ns()
            collector.record(now, _decode_result_probe(msg.data).output, int(msg.subject[cut:]))

        sink, source = await _connect(url), await _connect(url)
        conns += [sink, source]
        await sink.subscribe(
            done_prefix + "*", cb=on_done, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        await sink.flush()
        trigger = _Publisher(source)
        await trigger.start()
        start_prefix = subjects.start_subject(wf, "e")
        with _Meter(server_pid) as meter:
            elapsed = await _drive(
                trigger, lambda i: f"{start_prefix}{i}", collector, n, payload, timeout
            )
        if settle:
            await asyncio.sleep(settle)
        return collector.result(
            "engine" if hosts == 1 else f"engine-{hosts}hosts",
            window,
            payload,
            elapsed,
            meter.cpu,
            meter.srv,
            len(conns) - 1,
        )
    finally:
        await running.aclose()
        with contextlib.suppress(Exception):
            await js.delete_stream(table.stream.name)
        with contextlib.suppress(Exception):
            kv = await js.key_value(TABLES)
            await kv.purge(wf)
        for nc in conns:
            with contextlib.suppress(Exception):
                await nc.close()


# --------------------------------------------------------------------------- driver


def _varz_mem(monitor_url: str | None) -> int | None:
    if not monitor_url:
        return None
    try:
        with urllib.request.urlopen(f"{monitor_url}/varz", timeout=2) as resp:
            return int(json.load(resp).get("mem", 0))
    except (OSError, ValueError):
        return None


class _MemPeak:
    """Polls the server's ``/varz`` ``mem`` from a thread while a run lasts; keeps the peak."""

    def __init__(self, monitor_url: str | None, every: float = 0.5) -> None:
        self.monitor_url, self.every = monitor_url, every
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while True:
            mem = _varz_mem(self.monitor_url)
            if mem is not None:
                self.peak = max(self.peak or 0, mem)
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> _MemPeak:
        if self.monitor_url:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median throughput (or latency, for window-1 runs)."""
    key = (lambda r: r.p50_ms) if runs[0].window == 1 else (lambda r: -r.events_per_s)
    return sorted(runs, key=key)[len(runs) // 2]


async def bench(args: argparse.Namespace, monitor_url: str | None, pid: int | None) -> dict:
    loop = asyncio.get_running_loop()
    loop.set_debug(False)
    report: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "loop": type(loop).__module__ + "." + type(loop).__name__,
            "nats_py": _version("nats-py"),
            "nats_server": await _server_version(args.url),
            "cpus": os.cpu_count(),
            "loadavg_before": os.getloadavg(),
        },
        "params": {
            "n": args.n,
            "window": args.window,
            "payload": args.payload,
            "latency_n": args.latency_n,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "hosts": args.hosts,
        },
        "server_mem": {"start": _varz_mem(monitor_url)},
        "runs": [],
    }
    plan = [("load", args.n, args.window), ("unloaded", args.latency_n, 1)]
    common = {"server_pid": pid}
    for rnd in range(args.rounds):
        for phase, n, window in plan:
            # alternate which goes first, so neither always runs on a colder/warmer server
            order = ["baseline", "engine"] if rnd % 2 == 0 else ["engine", "baseline"]
            for mode in order:
                with _MemPeak(monitor_url) as mem:
                    if mode == "baseline":
                        res = await run_baseline(args.url, n, window, args.payload, **common)
                    else:
                        res = await run_engine(
                            args.url,
                            n,
                            window,
                            args.payload,
                            concurrency=args.concurrency,
                            hosts=args.hosts,
                            **common,
                        )
                res.extra = {
                    "kind": mode,
                    "phase": phase,
                    "round": rnd,
                    "server_mem_peak": mem.peak,
                    "server_mem_after": _varz_mem(monitor_url),
                }
                report["runs"].append(res.as_dict())
                print(
                    f"  round {rnd + 1} {phase:8} {mode:8} {res.events_per_s:>8} ev/s  "
                    f"p50 {res.p50_ms:8.3f} ms  p99 {res.p99_ms:8.3f} ms",
                    file=sys.stderr,
                )
    report["server_mem"]["end"] = _varz_mem(monitor_url)
    report["env"]["loadavg_after"] = os.getloadavg()
    summary: dict[str, Any] = {}
    for phase, _, _ in plan:
        for mode in ("baseline", "engine"):
            runs = [
                RunResult(**{k: v for k, v in r.items()})
                for r in report["runs"]
                if r["extra"]["kind"] == mode and r["extra"]["phase"] == phase
            ]
            summary[f"{phase}.{mode}"] = _median_run(runs).as_dict()
    report["summary"] = summary
    lb, le = summary["load.baseline"], summary["load.engine"]
    ub, ue = summary["unloaded.baseline"], summary["unloaded.engine"]
    report["ratios"] = {
        "throughput": round(le["events_per_s"] / lb["events_per_s"], 3),
        "p50_loaded": round(le["p50_ms"] / lb["p50_ms"], 3),
        "p50_unloaded": round(ue["p50_ms"] / ub["p50_ms"], 3),
        "p99_unloaded": round(ue["p99_ms"] / ub["p99_ms"], 3),
    }
    # engine/baseline within each round: less exposed to load that changes between rounds
    paired: dict[str, list[float]] = {"throughput": [], "p50_unloaded": []}
    for rnd in range(args.rounds):
        got = {
            (r["extra"]["phase"], r["extra"]["kind"]): r
            for r in report["runs"]
            if r["extra"]["round"] == rnd
        }
        b, e = got[("load", "baseline")], got[("load", "engine")]
        paired["throughput"].append(round(e["events_per_s"] / b["events_per_s"], 3))
        b, e = got[("unloaded", "baseline")], got[("unloaded", "engine")]
        paired["p50_unloaded"].append(round(e["p50_ms"] / b["p50_ms"], 3))
    report["paired_ratios"] = paired
    return report


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


async def _server_version(url: str) -> str:
    nc = await _connect(url)
    try:
        return str(nc._server_info.get("version", "?"))
    finally:
        await nc.close()


def print_report(report: dict[str, Any]) -> None:
    env, params, s = report["env"], report["params"], report["summary"]
    print(
        f"\n3-stage pipeline, payload {params['payload']} B, "
        f"{params['rounds']} round(s) (median shown)"
    )
    print(
        f"python {env['python']} ({env['loop']}), nats-py {env['nats_py']}, "
        f"nats-server {env['nats_server']}, {env['cpus']} cpus, "
        f"load avg before {env['loadavg_before'][0]:.2f}"
    )
    head = (
        f"{'':24}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'cli us/ev':>11}{'srv us/ev':>11}{'srv RSS peak':>14}{'conns':>7}"
    )
    print(head)
    print("-" * len(head))
    for phase, label in (("load", f"window {params['window']}"), ("unloaded", "window 1")):
        for mode in ("baseline", "engine"):
            r = s[f"{phase}.{mode}"]
            srv = r["server_cpu_us_per_event"]
            print(
                f"{mode + ' ' + label:24}{r['events_per_s']:>10}{r['p50_ms']:>10.3f}"
                f"{r['p99_ms']:>10.3f}{r['client_cpu_us_per_event']:>11.1f}"
                f"{'-' if srv is None else f'{srv:.1f}':>11}"
                f"{_mib(r['extra'].get('server_mem_peak')):>14}{r['connections']:>7}"
            )
    ratios = report["ratios"]
    print(
        f"\nengine/baseline: throughput {ratios['throughput']:.2f}x (target >= 0.8), "
        f"p50 unloaded {ratios['p50_unloaded']:.2f}x (target <= 1.2), "
        f"p50 loaded {ratios['p50_loaded']:.2f}x, p99 unloaded {ratios['p99_unloaded']:.2f}x"
    )
    layout = (
        "1 monolith host (1 connection for all 3 steps)"
        if params["hosts"] == 1
        else "3 hosts, 1 connection per step"
    )
    print(
        "connections (conns column, + trigger + collector): baseline 1 per stage; "
        f"engine {layout}; all in this one Python process"
    )
    if params["rounds"] > 1:
        paired = report["paired_ratios"]
        print(
            f"per round: throughput {paired['throughput']}, p50 unloaded {paired['p50_unloaded']}"
        )
    mem = report["server_mem"]
    print(
        f"server RSS (/varz mem): start {_mib(mem['start'])}, end {_mib(mem['end'])}; "
        "peak per run in the table (one server for all runs: RSS carries over)"
    )


def _guard_debug_mode() -> None:
    if os.environ.get("PYTHONASYNCIODEBUG") is not None:
        print(
            "WARNING: PYTHONASYNCIODEBUG is set (any value, even '0', turns asyncio debug mode "
            "on and makes everything 3-5x slower); unsetting it for this run.",
            file=sys.stderr,
        )
        del os.environ["PYTHONASYNCIODEBUG"]
    if sys.flags.dev_mode:
        print(
            "WARNING: python -X dev enables asyncio debug mode; numbers will be low.",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="existing server (default: start a LocalServer)")
    ap.add_argument("--n", type=int, default=20000, help="events per throughput run")
    ap.add_argument("--window", type=int, default=1000, help="in flight for throughput runs")
    ap.add_argument("--payload", type=int, default=128, help="trigger payload bytes")
    ap.add_argument("--latency-n", type=int, default=5000, help="events per window-1 run")
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything; report median")
    ap.add_argument("--concurrency", type=int, help="step concurrency (default: engine's)")
    ap.add_argument(
        "--hosts",
        type=int,
        choices=(1, 3),
        default=1,
        help="engine layout: 1 monolith host (one connection) or 3 hosts, one per step",
    )
    ap.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", help="write the full report here")
    args = ap.parse_args(argv)
    _guard_debug_mode()
    if args.uvloop:
        import uvloop

        uvloop.install()

    server = None
    tmp = None
    monitor_url = pid = None
    if not args.url:
        from nanoservice.nats.local_server import LocalServer, ServerOptions

        tmp = tempfile.TemporaryDirectory(prefix="nanobench-")
        server = LocalServer(ServerOptions(store_dir=Path(tmp.name) / "nats"))
        server.start()
        args.url, monitor_url, pid = server.url, server.monitor_url, server.pid
    try:
        report = asyncio.run(bench(args, monitor_url, pid), debug=False)
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
