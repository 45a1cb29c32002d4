"""Observability on a real nats-server: exact metrics scraped over HTTP after the known
run, consumer backlog sampled from the JetStream API, and one trace across two host
processes whose spans nest (in-memory span exporter in each process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.nats.provision import provision
from nanoservice.observe.host import HostObservability
from nanoservice.runtime.host import select_steps
from nanoservice.runtime.serve import serve
from tests.integration.observe_flow import EXECUTIONS, REGISTRY, TABLE, mismatches, samples

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One server for the module; each test uses its own workflow stream (reset first)."""
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as running:
        yield running


@pytest.fixture
async def fresh(server: LocalServer) -> AsyncIterator[NATS]:
    """A connection, with the workflow's stream recreated empty and its table stored."""
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):  # not there yet
        await js.delete_stream("NANO_COUNTED")
    await provision(js, TABLE)
    try:
        yield nc
    finally:
        await nc.close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


async def test_metrics_scraped_after_the_known_run_are_exact(
    server: LocalServer, fresh: NATS
) -> None:
    observe = HostObservability(metrics_port=0, environ={}, sample_interval=0.1)
    async with nats_backend(server.url) as backend:
        async with serve(
            backend, [TABLE], REGISTRY, middleware=observe.middleware, drain_timeout=2
        ):
            lines = observe.start(backend.js, select_steps([TABLE]))
            assert observe.server is not None
            assert lines == [f"metrics     {observe.server.url}"]
            client = Client(fresh)
            outcomes = await asyncio.gather(
                *(client.run("counted", {"n": e}, execution=e, timeout=20) for e in EXECUTIONS)
            )
            assert sorted(o.execution for o in outcomes if not o.ok) == ["n7"]
            text = ""
            for _ in range(100):  # n7's left branch may still be on its way to the join
                text = await asyncio.to_thread(scrape, observe.server.url)
                if not mismatches(text):
                    break
                await asyncio.sleep(0.05)
            assert mismatches(text) == []
            backlog: dict[str, float] = {}
            for _ in range(100):  # sampled: every consumer read, nothing left unacked
                got = samples(await asyncio.to_thread(scrape, observe.server.url))
                backlog = {
                    dict(labels)["step"]: value
                    for (name, labels), value in got.items()
                    if name == "nano_consumer_ack_pending_messages"
                }
                pending = [v for (n, _), v in got.items() if n == "nano_consumer_pending_messages"]
                if len(backlog) == 4 and not any(backlog.values()) and pending == [0] * 4:
                    break
                await asyncio.sleep(0.05)
            assert backlog == {"split": 0, "left": 0, "right": 0, "merge": 0}
            assert ("process_resident_memory_bytes", frozenset()) in got
        await observe.stop()


class HostProcess:
    """``python -m tests.integration.observe_flow``: a traced host in its own process."""

    def __init__(self, url: str, spans: Path, steps: list[str]) -> None:
        self.spans = spans
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.observe_flow", url, str(spans), *steps],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the test's timeout
        if line.strip() != "ready":
            self.proc.kill()
            pytest.fail(f"host did not start: {line!r} {self.proc.communicate()[1][-2000:]}")

    def stop(self) -> list[dict[str, object]]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err[-2000:]
        spans: list[dict[str, object]] = json.loads(self.spans.read_text())
        return spans

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_one_trace_across_two_processes_with_nested_spans(
    server: LocalServer, fresh: NATS, tmp_path: Path
) -> None:
    edges = HostProcess(server.url, tmp_path / "a.json", ["counted.split", "counted.merge"])
    branches = HostProcess(server.url, tmp_path / "b.json", ["counted.left", "counted.right"])
    try:
        edges.ready()
        branches.ready()
        client = Client(fresh)
        outcome = await client.run("counted", {"n": "n3"}, execution="n3", timeout=30)
        assert outcome.ok, outcome
        await asyncio.sleep(0.2)  # merge's first (waiting) branch span ends before the fire
        first, second = edges.stop(), branches.stop()
    finally:
        edges.close()
        branches.close()
    spans = first + second
    assert sorted(str(s["name"]) for s in first) == [
        "counted.merge",
        "counted.merge",
        "counted.split",
    ]
    assert sorted(str(s["name"]) for s in second) == [
        "counted.left",
        "counted.left",
        "counted.right",
    ]  # left twice: n3 fails its first attempt
    assert len({s["trace_id"] for s in spans}) == 1
    by_name: dict[str, list[dict[str, object]]] = {}
    for span in spans:
        by_name.setdefault(str(span["name"]), []).append(span)
    (split,) = by_name["counted.split"]
    assert split["parent_id"] is None
    for span in by_name["counted.left"] + by_name["counted.right"]:
        assert span["parent_id"] == split["span_id"]
    branch_ids = {s["span_id"] for s in by_name["counted.left"] + by_name["counted.right"]}
    for span in by_name["counted.merge"]:
        assert span["parent_id"] in branch_ids
    attempts = sorted(s["attributes"]["nano.attempt"] for s in by_name["counted.left"])  # type: ignore[index]
    assert attempts == [1, 2]
    outcomes = sorted(s["attributes"]["nano.outcome"] for s in by_name["counted.merge"])  # type: ignore[index]
    assert outcomes == ["ok", "waiting"]


async def test_http_metrics_and_server_span_over_real_http() -> None:
    import httpx
    import uvicorn
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry, generate_latest
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from nanoservice.nats.local_server import free_port
    from nanoservice.observe.http import HttpMetrics
    from nanoservice.observe.tracing import trace_headers

    async def start(request: Request) -> JSONResponse:
        return JSONResponse(trace_headers(), status_code=202)

    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Starlette(
        routes=[Route("/workflows/{name}", start, methods=["POST"])],
        middleware=[Middleware(HttpMetrics, registry=registry, tracer=provider.get_tracer("t"))],
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            sent = await http.post("/workflows/hello", headers={"traceparent": parent})
            missing = await http.get("/nope")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
    assert (sent.status_code, missing.status_code) == (202, 404)
    got = samples(generate_latest(registry).decode())
    ok = {"route": "/workflows/{name}", "method": "POST", "status": "202"}
    assert got[("nano_http_requests_total", frozenset(ok.items()))] == 1
    lost = {"route": "unmatched", "method": "GET", "status": "404"}
    assert got[("nano_http_requests_total", frozenset(lost.items()))] == 1
    (span, _) = exporter.get_finished_spans()
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert sent.json()["traceparent"].split("-")[1:3] == [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        f"{span.context.span_id:016x}",
    ]
