"""The benchmark's two pipelines deliver every event exactly once (correctness only, no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

N = 200
WINDOW = 50


def _load_bench() -> ModuleType:
    """Import bench_pipeline.py by path (tests/bench is not a package)."""
    name = "nanoservice_bench_pipeline"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).with_name("bench_pipeline.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _check(result: bench.RunResult, n: int) -> None:
    assert result.events == n
    assert result.distinct == n, f"{n - result.distinct} executions produced no result"
    assert result.results == n, f"{result.results} results for {n} executions"
    assert result.duplicates == 0
    assert result.mismatched == 0


@pytest.mark.parametrize("window", [WINDOW, 1])
async def test_baseline_delivers_each_event_once(nats_url: str, window: int) -> None:
    n = N if window > 1 else 20
    _check(await bench.run_baseline(nats_url, n, window, 128, settle=0.2, timeout=20), n)


@pytest.mark.parametrize(("window", "hosts"), [(WINDOW, 1), (1, 1), (WINDOW, 3)])
async def test_engine_delivers_each_event_once(nats_url: str, window: int, hosts: int) -> None:
    n = N if window > 1 else 20
    result = await bench.run_engine(nats_url, n, window, 128, hosts=hosts, settle=0.2, timeout=20)
    _check(result, n)


def test_payload_has_the_requested_size() -> None:
    for size in (16, 128, 1024):
        data = bench.bench_payload(7, size)
        assert len(data) == max(size, len(bench.bench_payload(7, 0)))
