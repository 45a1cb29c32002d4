"""The workflow-pattern catalogue, each pattern a YAML file beside this test, run on a real
nats-server: the workflow (plus any it calls), its cases (input -> output or error), and the
steps whose node must have run exactly once per execution (``once``).

Counts are checked only after a later execution of the same workflow has finished (the
sentinel): a late duplicate of an earlier message would have been delivered before it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import nats
import pytest
import yaml
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client, Outcome
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, NodeInstance, NodeType
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

HERE = Path(__file__).parent
PATTERNS = sorted(HERE.glob("*.yaml"))
SPECS = {path: yaml.safe_load(path.read_text()) for path in PATTERNS}
calls: Counter[tuple[str, str]] = Counter()


class _Counted(NodeInstance):
    def __init__(self, inner: NodeInstance) -> None:
        self.inner = inner

    async def setup(self) -> None:
        await self.inner.setup()

    async def close(self) -> None:
        await self.inner.close()

    async def handle(self, ctx: Context, input: Any) -> Any:
        calls[(ctx.execution_id, ctx.step)] += 1
        return await self.inner.handle(ctx, input)


def counting(node_type: NodeType) -> NodeType:
    create = node_type.create

    def build(config: BaseModel) -> NodeInstance:
        return _Counted(create(config))

    return dataclasses.replace(node_type, create=build)


_ALL = Registry.discover([HERE / "nodes"])  # built-ins plus the test nodes in ./nodes
REGISTRY = Registry(counting(_ALL.get(n)) for n in _ALL.names())


def matches(expected: Any, actual: Any) -> bool:
    """Equal, except that an expected mapping only needs its own keys to match."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def tables_of(spec: dict[str, Any]) -> list[RoutingTable]:
    workflows = [spec["workflow"], *spec.get("also", [])]
    return [
        compile_text(yaml.safe_dump(w, sort_keys=False), REGISTRY, file=w["name"])
        for w in workflows
    ]


class Backend(Protocol):
    async def run(self, workflow: str, payload: Any, *, timeout: float) -> Outcome: ...

    async def results_per_execution(self, workflow: str) -> dict[str, int]: ...


class OnNats:
    """A real nats-server: the run that counts."""

    def __init__(self, nc: NATS) -> None:
        self.client = Client(nc)

    async def run(self, workflow: str, payload: Any, *, timeout: float) -> Outcome:
        return await self.client.run(workflow, payload, timeout=timeout)

    async def results_per_execution(self, workflow: str) -> dict[str, int]:
        info = await self.client.js.stream_info(
            f"NANO_{workflow.upper()}", subjects_filter=f"nano.{workflow}._done.*"
        )
        return {s.rsplit(".", 1)[-1]: n for s, n in (info.state.subjects or {}).items()}


class InMemory:
    """The in-memory bus: the same workflows and cases, no server."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    async def run(self, workflow: str, payload: Any, *, timeout: float) -> Outcome:
        return await self.bus.run(workflow, payload, timeout=timeout)

    async def results_per_execution(self, workflow: str) -> dict[str, int]:
        done = Counter(
            s.rsplit(".", 1)[-1]
            for s, _ in self.bus.messages(f"NANO_{workflow.upper()}", f"nano.{workflow}._done.*")
        )
        return dict(done)


@contextlib.asynccontextmanager
async def hosted(backend: str, spec: dict[str, Any], url: str | None) -> AsyncIterator[Backend]:
    tables = tables_of(spec)
    if backend == "memory":
        bus = MemoryBus()
        async with bus.hosting(tables, REGISTRY):
            yield InMemory(bus)
        return
    assert url is not None
    nc = await nats.connect(url)
    try:
        async with nats_backend(url) as backend:
            for table in tables:
                await backend.provision(table)
            async with serve(backend, tables, REGISTRY, drain_timeout=2):
                yield OnNats(nc)
    finally:
        await nc.close()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) for work that may finish after the execution's result is out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # polling a plain counter: there is no event to wait on


# Every pattern runs on the real server (the run that counts) and on the memory backend.
CASES = [(p, "nats") for p in PATTERNS] + [(p, "memory") for p in PATTERNS]


@pytest.fixture
def server_url(request: pytest.FixtureRequest) -> str | None:
    """A real server for the nats backend only (the memory runs start none)."""
    if request.node.callspec.params["backend"] == "memory":
        return None
    return str(request.getfixturevalue("nats_url"))


@pytest.mark.parametrize(("path", "backend"), CASES, ids=[f"{p.stem}-{b}" for p, b in CASES])
async def test_pattern(path: Path, backend: str, server_url: str | None) -> None:
    spec = SPECS[path]
    name = spec["workflow"]["name"]
    async with hosted(backend, spec, server_url) as client:
        outcomes = await asyncio.gather(
            *(client.run(name, case["input"], timeout=20) for case in spec["cases"])
        )
        for case, outcome in zip(spec["cases"], outcomes, strict=True):
            if "error" in case:
                assert not outcome.ok, f"{path.name}: expected failure, got {outcome}"
                expected = case["error"]
                assert outcome.error is not None and outcome.error["type"] == expected["type"], (
                    outcome
                )
                assert outcome.step == expected.get("step", outcome.step)
            else:
                assert outcome.ok, f"{path.name}: {case['input']} -> {outcome}"
                assert matches(case["output"], outcome.output), (
                    f"{path.name}: {case['input']} -> {outcome.output!r}"
                )
            for step, expected_runs in case.get("runs", {}).items():
                await _until(
                    lambda e=outcome.execution, s=step, n=expected_runs: calls[(e, s)] >= n
                )
        # The sentinel: a later execution; once its result is out, so are late duplicates.
        first = spec["cases"][0]
        sentinel = await client.run(name, first["input"], timeout=20)
        assert sentinel.ok == ("error" not in first), sentinel
        for case, outcome in zip(spec["cases"], outcomes, strict=True):
            expected_counts = {**dict.fromkeys(case.get("once", []), 1), **case.get("runs", {})}
            for step, expected_runs in expected_counts.items():
                assert calls[(outcome.execution, step)] == expected_runs, (
                    f"{path.name}: step {step} ran {calls[(outcome.execution, step)]} times"
                )
        # Each execution that succeeded has exactly one result (a failed one is dead-lettered).
        results = await client.results_per_execution(name)
        succeeded = [o.execution for o in [*outcomes, sentinel] if o.ok]
        assert {e: results.get(e, 0) for e in succeeded} == dict.fromkeys(succeeded, 1), (
            f"{path.name}: results per execution {results}"
        )
        assert all(n == 1 for n in results.values()), f"{path.name}: an execution has 2 results"
