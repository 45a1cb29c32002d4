"""The Grafana dashboard queries only what the code exports: every metric name in
``infra/grafana/nanoservice.json`` is one a host (or the HTTP or supervisor helpers)
exposes, with every label the query uses; the Prometheus configs find `nano up`'s file."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nanoservice.observe.discovery import DEFAULT_SD_FILE
from nanoservice.observe.http import HttpMetrics
from nanoservice.observe.metrics import EngineMetrics, MetricsMiddleware
from nanoservice.observe.pending import PendingSampler
from nanoservice.observe.supervisor import SupervisorMetrics
from nanoservice.runtime.host import select_steps
from nanoservice.testing.memory import MemoryBus
from tests.integration.observe_flow import EXECUTIONS, REGISTRY, TABLE, samples

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "infra" / "grafana" / "nanoservice.json"
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
EXTERNAL = {  # prometheus-nats-exporter -varz: the NATS server's own metrics, not ours
    name: {"server_id"}
    for name in (
        "gnatsd_varz_in_msgs",
        "gnatsd_varz_out_msgs",
        "gnatsd_varz_connections",
        "gnatsd_varz_slow_consumers",
        "gnatsd_varz_mem",
    )
}
FUNCTIONS = {"sum", "max", "rate", "increase", "histogram_quantile", "by", "label_values"}


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield str(target["expr"])
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield str(variable["query"])


def used(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metrics an expression selects (each with its matcher labels), and the labels it
    groups by (which every metric in it must have)."""
    grouped = {
        label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")
    }
    rest = re.sub(r"by \([^)]*\)", " ", expr)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = re.sub(r'"[^"]*"', '""', rest)
    metrics: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", rest):
        after = rest[rest.index(name) + len(name) :].lstrip()
        if name in FUNCTIONS or after.startswith("("):
            continue
        metrics.setdefault(name, set()).update(re.findall(r"(\w+)\s*[=!]~?", matchers))
    label_values = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr)
    if label_values:
        metrics = {label_values[1]: {label_values[2]}}
    return metrics, grouped


async def exported() -> dict[str, set[str]]:
    """Every sample name the code exports, with its labels (a run to fill them in)."""
    registry = CollectorRegistry()
    metrics = EngineMetrics()
    registry.register(metrics)
    bus = MemoryBus()
    async with bus.hosting([TABLE], REGISTRY, middleware=[MetricsMiddleware(metrics)]):
        for execution in EXECUTIONS[:2]:
            await bus.run("counted", {"n": execution}, execution=execution)

    class Consumers:
        async def consumer_info(self, stream: str, consumer: str) -> Any:
            return SimpleNamespace(num_pending=1, num_ack_pending=2)

    sampler = PendingSampler(Consumers(), select_steps([TABLE]))
    await sampler.sample()
    registry.register(sampler)
    supervisor = SupervisorMetrics(registry)
    supervisor.restarted("counted.split")
    supervisor.replicas("counted.split", 2)
    ProcessCollector(registry=registry)
    app = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("ok"))],
        middleware=[Middleware(HttpMetrics, registry=registry)],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/")
    out: dict[str, set[str]] = {}
    for name, labels in samples(generate_latest(registry).decode()):
        out.setdefault(name, set()).update(label for label, _ in labels)
    return out


async def test_every_dashboard_metric_is_exported_with_its_labels() -> None:
    have = {**await exported(), **EXTERNAL}
    dashboard = json.loads(DASHBOARD.read_text())
    problems, seen = [], set()
    for expr in queries(dashboard):
        metrics, grouped = used(expr)
        assert metrics, f"no metric found in {expr!r}"
        for name, labels in metrics.items():
            seen.add(name)
            if name not in have:
                problems.append(f"{name}: not exported ({expr})")
                continue
            missing = (labels | grouped) - have[name] - SCRAPE_LABELS
            if missing:
                problems.append(f"{name}: no label {sorted(missing)} ({expr})")
    assert problems == []
    ours = {n for n in have if n.startswith("nano_") and not n.endswith(("_created", "_sum"))}
    shown = {n.removesuffix("_bucket") for n in seen}
    unshown = {n for n in ours if n.removesuffix("_count").removesuffix("_bucket") not in shown}
    assert unshown == set(), "exported but on no panel"


def test_the_checker_sees_a_wrong_name_and_a_wrong_label() -> None:
    metrics, grouped = used('sum by (stepp) (rate(nano_step_messagez_total{workflow=~"$w"}[5m]))')
    assert metrics == {"nano_step_messagez_total": {"workflow"}}
    assert grouped == {"stepp"}


def test_prometheus_configs_find_the_targets_nano_up_writes() -> None:
    folder = REPO / "infra" / "prometheus"
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "nanoservice"]
    (pattern,) = job["file_sd_configs"][0]["files"]
    resolved = (folder / pattern).resolve().relative_to(REPO)
    assert fnmatch.fnmatch(str(DEFAULT_SD_FILE), str(resolved))
    static = yaml.safe_load((folder / "prometheus-static.yml").read_text())
    targets = static["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:9477"]
    collector = yaml.safe_load((REPO / "infra" / "otel-collector.yaml").read_text())
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
