#!/usr/bin/env python3
"""What observability costs a host: the 3-step pipeline of ``bench_pipeline.py`` with no
middleware, with metrics, and with metrics and tracing, against the hand-written nats-py
baseline, all in one run on one server.

Modes (each a full engine run of ``--n`` events at ``--window`` in flight):

* **baseline**: the hand-written nats-py pipeline (``bench_pipeline.run_baseline``);
* **off**: the engine with no middleware (``nano host`` without ``--metrics-port`` and
  without ``OTEL_TRACES_EXPORTER`` runs only the log-context middleware; ``logs`` measures it);
* **logs**: log context only;
* **metrics**: log context and metrics, as ``nano host --metrics-port N`` runs it;
* **traced**: tracing too: every span sampled (the SDK's default, parent-based always-on),
  batched to an exporter that drops them (no exporter network);
* **traced10**: the same with 10 % of executions sampled
  (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``).

Modes run in a rotated order each round; the report gives each mode's median throughput
and, per round, its ratio to ``off`` of the same round.

Usage::

    python tests/bench/bench_observe.py [--n 10000] [--window 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from nanoservice.observe.logs import LogContext
from nanoservice.observe.metrics import EngineMetrics, MetricsMiddleware
from nanoservice.observe.tracing import ExecutionTraceIds, TracingMiddleware
from nanoservice.runtime.decision import Decision, Outbound, Publish
from nanoservice.runtime.middleware import Middleware, chain_messages
from nanoservice.runtime.serve import serve
from nanoservice.runtime.step import CompiledStep
from nanoservice.workflow.compiler import compile_text

pytestmark = pytest.mark.bench
MODES = ("baseline", "off", "logs", "metrics", "traced", "traced10")


def _load_pipeline_bench() -> ModuleType:
    name = "nanoservice_bench_pipeline"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("bench_pipeline.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Dropping(SpanExporter):
    """Counts the spans and drops them: the SDK's whole cost, no network."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def middleware_for(mode: str) -> tuple[list[Middleware], TracerProvider | None, Dropping]:
    dropped = Dropping()
    if mode == "off":
        return [], None, dropped
    chain: list[Middleware] = [LogContext()]
    if mode == "logs":
        return chain, None, dropped
    chain.append(MetricsMiddleware(EngineMetrics()))
    if mode == "metrics":
        return chain, None, dropped
    sampler = ParentBased(TraceIdRatioBased(0.1)) if mode == "traced10" else None
    provider = TracerProvider(id_generator=ExecutionTraceIds(), sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(dropped, max_queue_size=65536))
    return [TracingMiddleware(provider.get_tracer("bench")), *chain], provider, dropped


async def run(
    pipeline: ModuleType, url: str, mode: str, n: int, window: int
) -> tuple[float, float]:
    """Events per second and this process's CPU microseconds per event, of one run."""
    if mode == "baseline":
        result = await pipeline.run_baseline(url, n, window)
        return float(result.events_per_s), float(result.client_cpu_us_per_event)
    chain, provider, dropped = middleware_for(mode)

    @contextlib.asynccontextmanager
    async def observed(*args: Any, **kwargs: Any) -> Any:
        async with serve(*args, middleware=chain, **kwargs) as host:
            yield host

    pipeline.serve = observed  # run_engine wires its host through serve(): add ours
    try:
        result = await pipeline.run_engine(url, n, window)
    finally:
        pipeline.serve = serve
    if provider is not None:
        provider.force_flush()
        provider.shutdown()
        expected = 3 * n if mode == "traced" else dropped.spans - dropped.spans % 3
        assert dropped.spans == expected, f"{dropped.spans} spans for {n} executions"
    assert result.results == n and result.duplicates == 0
    return float(result.events_per_s), float(result.client_cpu_us_per_event)


class _Delivery:
    """A step message as the second step of the pipeline receives it."""

    stream_seq = 1
    delivered = 1

    def __init__(self, subject: str, headers: dict[str, str]) -> None:
        self.subject = subject
        self.headers = headers


async def hook_cost(pipeline: ModuleType, mode: str, calls: int = 20000) -> float:
    """Microseconds the middleware of ``mode`` adds to handling one delivery (the message
    hooks around a decision that publishes one message; no wire, no export thread)."""
    table = compile_text(
        pipeline.WORKFLOW_YAML.format(name="cost", concurrency=""), pipeline.REGISTRY
    )
    step = CompiledStep(table, table.steps["s2"])
    chain, provider, _ = middleware_for(mode)
    for mw in chain:
        mw.setup(step)

    async def decide(delivery: Any) -> Decision:
        return Publish([Outbound("nano.cost.s3.e1", b"{}", {"Nano-Step": "s2"})])

    call = chain_messages(chain, step, decide)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-"
    deliveries = [
        _Delivery("nano.cost.s2.e1", {"traceparent": parent + ("01" if i % 10 == 0 else "00")})
        if mode == "traced10"
        else _Delivery("nano.cost.s2.e1", {"traceparent": parent + "01"})
        for i in range(10)
    ]
    started = time.process_time()
    for i in range(calls):
        await call(deliveries[i % 10])
    spent = time.process_time() - started
    if provider is not None:
        provider.shutdown()
    return spent / calls * 1e6


async def bench(url: str, n: int, window: int, rounds: int) -> dict[str, Any]:
    pipeline = _load_pipeline_bench()
    hooks = {m: round(await hook_cost(pipeline, m), 2) for m in MODES if m != "baseline"}
    rate: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    rate_ratio: dict[str, list[float]] = {m: [] for m in MODES if m != "off"}
    cpu_ratio: dict[str, list[float]] = {m: [] for m in MODES if m != "off"}
    await run(pipeline, url, "off", min(n, 2000), window)  # warm-up, not counted
    for rnd in range(rounds):
        order = MODES[rnd % len(MODES) :] + MODES[: rnd % len(MODES)]
        got: dict[str, tuple[float, float]] = {}
        for mode in order:
            got[mode] = await run(pipeline, url, mode, n, window)
            print(
                f"  round {rnd + 1} {mode:8} {got[mode][0]:>8.0f} ev/s "
                f"{got[mode][1]:>7.1f} us CPU/event",
                file=sys.stderr,
            )
        for mode, (events, us) in got.items():
            rate[mode].append(events)
            cpu[mode].append(us)
            if mode != "off":
                rate_ratio[mode].append(round(events / got["off"][0], 3))
                cpu_ratio[mode].append(round(us / got["off"][1], 3))
    return {
        "hook_us_per_delivery": hooks,
        "median_events_per_s": {m: round(statistics.median(v)) for m, v in rate.items()},
        "median_cpu_us_per_event": {m: round(statistics.median(v), 1) for m, v in cpu.items()},
        "throughput_ratio_to_off": rate_ratio,
        "cpu_ratio_to_off": cpu_ratio,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="existing server (default: start a LocalServer)")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.install()
    with contextlib.ExitStack() as stack:
        url = args.url
        if not url:
            from nanoservice.nats.local_server import LocalServer, ServerOptions

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="nanobench-"))
            server = stack.enter_context(LocalServer(ServerOptions(store_dir=Path(tmp) / "nats")))
            url = server.url
        report = asyncio.run(bench(url, args.n, args.window, args.rounds))
    print("middleware alone, CPU us per delivery:", report["hook_us_per_delivery"])
    print(f"{'mode':8} {'ev/s':>8} {'CPU us/ev':>9}  throughput / off    CPU / off (per round)")
    for mode, value in report["median_events_per_s"].items():
        us = report["median_cpu_us_per_event"][mode]
        rates = report["throughput_ratio_to_off"].get(mode, "")
        cpus = report["cpu_ratio_to_off"].get(mode, "")
        print(f"{mode:8} {value:>8} {us:>9}  {rates!s:18} {cpus}")


if __name__ == "__main__":
    main()
