"""Log fields, tracing configuration, the service-discovery file, HTTP and supervisor
metrics: each part of ``nanoservice.observe`` on its own (fast, in process)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nanoservice.errors import NanoError
from nanoservice.observe.discovery import write_file_sd
from nanoservice.observe.host import HostObservability
from nanoservice.observe.http import HttpMetrics
from nanoservice.observe.logs import ContextFilter, JsonFormatter, LogContext, TextFormatter
from nanoservice.observe.supervisor import SupervisorMetrics
from nanoservice.observe.tracing import (
    ExecutionTraceIds,
    TracingMiddleware,
    execution_trace_id,
    trace_headers,
    tracer_provider_from_env,
)
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.compiler import compile_text
from tests.integration.observe_flow import samples


@node("chatty")
async def chatty(ctx: Context, input: Any) -> Any:
    ctx.log.info("node says hi")
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return input


REGISTRY = Registry([chatty, Registry.discover().get("transform")])
TABLE = compile_text(
    "name: talk\nsteps:\n  a: {node: chatty, retry: {max_attempts: 2, backoff: [0.01]}, next: b}\n"
    "  b: {node: transform, with: {expr: 'prev'}}\n",
    REGISTRY,
)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log record as a JSON line, through the same filter and formatter as the CLI."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)  # not `root.level =`: loggers cache isEnabledFor
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_engine_and_node_log_lines_carry_the_ids(json_lines: io.StringIO) -> None:
    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY, middleware=[LogContext()]):
        outcome = await bus.run("talk", {"x": 1}, execution="e1")
    assert outcome.ok
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    said = [line for line in lines if line["message"] == "node says hi"]
    failed = [line for line in lines if "first try fails" in line["message"]]
    assert [(x["workflow"], x["step"], x["execution"], x["attempt"]) for x in said] == [
        ("talk", "a", "e1", 1),
        ("talk", "a", "e1", 2),
    ]
    assert failed and failed[0]["logger"] == "nanoservice.runtime"
    assert (failed[0]["step"], failed[0]["execution"], failed[0]["attempt"]) == ("a", "e1", 1)


def test_text_lines_are_tagged_and_plain_lines_stay_plain() -> None:
    formatter = TextFormatter()
    tagged = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    tagged.__dict__.update(workflow="w", step="s", execution="e", attempt=2)
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert formatter.format(tagged).endswith("x: hello [w/s e #2]")
    assert formatter.format(plain).endswith("x: hello")


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert tracer_provider_from_env({}) is None
    assert tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    off = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracer_provider_from_env(off) is None
    provider = tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_a_bad_exporter_is_one_line() -> None:
    with pytest.raises(NanoError, match=r"^OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'"):
        tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_retried_trigger_spans_share_the_execution_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=ExecutionTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = MemoryBus()
    tracing = TracingMiddleware(provider.get_tracer("t"))
    async with bus.hosting([TABLE], REGISTRY, middleware=[tracing]):
        assert (await bus.run("talk", {"x": 1}, execution="e2")).ok
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["talk.a", "talk.a", "talk.b"]
    assert {s.context.trace_id for s in spans} == {execution_trace_id("talk", "e2")}
    roots = [s for s in spans if s.parent is None]
    assert sorted(s.attributes["nano.attempt"] for s in roots) == [1, 2]  # type: ignore[index]
    (b,) = [s for s in spans if s.name == "talk.b"]
    assert b.parent is not None and b.parent.span_id in {s.context.span_id for s in roots}


def test_file_sd_lists_every_target(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "targets.json"
    write_file_sd(path, [("127.0.0.1:9001", {"process": "hello.greet"}), ("127.0.0.1:9002", {})])
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:9001"], "labels": {"job": "nanoservice", "process": "hello.greet"}},
        {"targets": ["127.0.0.1:9002"], "labels": {"job": "nanoservice"}},
    ]
    write_file_sd(path, [])
    assert json.loads(path.read_text()) == []
    assert [p.name for p in path.parent.iterdir()] == ["targets.json"]


async def test_http_requests_by_route_and_status_with_a_server_span() -> None:
    async def run(request: Request) -> JSONResponse:
        return JSONResponse(trace_headers(), status_code=202)

    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Starlette(
        routes=[Route("/workflows/{name}", run, methods=["POST"])],
        middleware=[Middleware(HttpMetrics, registry=registry, tracer=provider.get_tracer("t"))],
    )
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        sent = await http.post("/workflows/hello", headers={"traceparent": parent})
        await http.post("/workflows/other")
        await http.get("/nowhere")
    assert sent.status_code == 202
    got = samples(generate_latest(registry).decode())
    key = "nano_http_requests_total"
    assert (
        got[
            (
                key,
                frozenset(
                    {"route": "/workflows/{name}", "method": "POST", "status": "202"}.items()
                ),
            )
        ]
        == 2
    )
    assert (
        got[(key, frozenset({"route": "unmatched", "method": "GET", "status": "404"}.items()))] == 1
    )
    hist = "nano_http_request_duration_seconds_count"
    assert got[(hist, frozenset({"route": "/workflows/{name}", "method": "POST"}.items()))] == 2
    first = exporter.get_finished_spans()[0]
    assert f"{first.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert sent.json()["traceparent"].split("-")[1:3] == [
        "0af7651916cd43dd8448eb211c80319c",
        f"{first.context.span_id:016x}",
    ]  # a trigger published while handling it would be parented on the request's span


def test_supervisor_restarts_and_replicas() -> None:
    registry = CollectorRegistry()
    metrics = SupervisorMetrics(registry)
    metrics.restarted("hello.greet")
    metrics.restarted("hello.greet")
    metrics.replicas("hello.greet", 3)
    got = samples(generate_latest(registry).decode())
    labels = frozenset({"process": "hello.greet"}.items())
    assert got[("nano_supervisor_restarts_total", labels)] == 2
    assert got[("nano_supervisor_replicas", labels)] == 3


def test_otlp_needs_its_exporter_package_or_says_which() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        with pytest.raises(NanoError, match=r"needs the package opentelemetry-exporter-otlp-proto"):
            tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    else:
        provider = tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
        assert provider is not None
        provider.shutdown()


async def test_a_trace_sampled_out_upstream_makes_no_span_and_passes_on() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = MemoryBus()
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"  # random, not sampled
    tracing = TracingMiddleware(provider.get_tracer("t"))
    table = compile_text(
        "name: quiet\nsteps:\n  a: {node: transform, with: {expr: 'input'}}\n", REGISTRY
    )
    seen: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    async with bus.hosting([table], REGISTRY, middleware=[tracing]):
        watch = await bus.subscribe(
            "nano.quiet._done.q1", lambda subject, data, headers: seen.set_result(dict(headers))
        )
        await bus.publish("nano.quiet._start.q1", b"{}", {"traceparent": unsampled})
        headers = await asyncio.wait_for(seen, 5)
        await watch.unsubscribe()
    assert exporter.get_finished_spans() == ()
    assert headers["traceparent"] == unsampled


async def test_a_taken_default_port_falls_back_and_the_targets_file_goes_at_stop(
    tmp_path: Path,
) -> None:
    first = HostObservability(metrics_port=0, environ={})
    first.start(None, [])
    assert first.server is not None
    taken = first.server.port
    sd = tmp_path / "targets.json"
    second = HostObservability(metrics_port=taken, any_port_if_taken=True, sd_file=sd, environ={})
    second.start(None, [])
    assert second.server is not None and second.server.port not in (taken, 0)
    assert json.loads(sd.read_text())[0]["targets"] == [second.server.target]
    strict = HostObservability(metrics_port=taken, environ={})
    with pytest.raises(NanoError, match=rf"^cannot serve metrics on 127.0.0.1:{taken}: "):
        strict.start(None, [])
    await second.stop()
    await first.stop()
    assert not sd.exists()


async def test_settler_lines_after_handling_carry_the_ids(json_lines: io.StringIO) -> None:
    from nanoservice.runtime.decision import Outbound, Publish
    from nanoservice.runtime.outbox import Outbox
    from nanoservice.runtime.settler import Settler
    from nanoservice.runtime.step import CompiledStep

    class Refusing:  # a server that stores nothing
        async def publish(self, subject: str, data: bytes, headers: Any) -> Any:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(RuntimeError("no stream captures this subject"))
            return fut

    class Delivery:
        subject, headers, data, delivered, stream_seq = "nano.talk.b.e9", {}, b"{}", 2, 7
        naks: list[float] = []

        async def ack(self) -> None: ...
        async def nak(self, delay: float = 0.0) -> None:
            self.naks.append(delay)

        async def in_progress(self) -> None: ...

    step = CompiledStep(TABLE, TABLE.steps["b"])
    settler = Settler(step, Outbox(step), Refusing(), outage=0.5)  # type: ignore[arg-type]
    delivery = Delivery()
    await settler.settle(delivery, Publish([Outbound("nano.talk._done.e9", b"{}", {})]), "e9")  # type: ignore[arg-type]
    await settler.drain(5)
    assert delivery.naks == [1.0]
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    ours = [line for line in lines if line["logger"] == "nanoservice.runtime"]
    assert [line["level"] for line in ours] == ["warning", "error"]
    for line in ours:
        assert (line["workflow"], line["step"], line["execution"], line["attempt"]) == (
            "talk",
            "b",
            "e9",
            2,
        )
