"""hello and every pattern workflow through `nano up` in monolith, micro and nano mode: one
`nano up` per mode (all workflows at once), the same results in each, exactly one result per
execution. The mode is the only thing that changes (``--mode``; nano.yaml names the groups).
The monolith runs twice: in the `nano up` process, and as one supervised child."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from nanoservice.nats.client import Client
from tests.e2e.modes_project import Up, make_project, on_nats, pattern_specs, results_per_execution
from tests.e2e.processes import NANO, nano_env
from tests.patterns.test_patterns import matches

pytestmark = pytest.mark.timeout(600)

MODES = ["monolith", "supervised-monolith", "micro", "nano"]
ARGS = {
    "monolith": ["--mode", "monolith"],  # in the nano up process itself
    "supervised-monolith": ["--mode", "monolith", "--supervise"],  # one child process
    "micro": ["--mode", "micro"],
    "nano": ["--mode", "nano"],
}
NANO_YAML = """\
groups:
  greeting: {steps: [hello.normalize, hello.greet]}
  loggers: {nodes: [log]}
  rest: {steps: ['*']}
"""
SPECS = pattern_specs()
HELLO = [({"name": " Ada "}, {"message": "Hello, Ada!", "length": 3})]
summaries: dict[str, dict[str, Any]] = {}
timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("modes"), patterns=True)
    (root / "nano.yaml").write_text(NANO_YAML)
    return root


async def run_all(nc: nats.NATS) -> dict[str, Any]:
    """Every case of every pattern (and hello) at once; what each gave."""
    client = Client(nc)
    jobs: list[tuple[str, int, Any]] = [("hello", i, p) for i, (p, _) in enumerate(HELLO)]
    for name, spec in SPECS.items():
        jobs += [(name, i, case["input"]) for i, case in enumerate(spec["cases"])]
    outcomes = await asyncio.gather(*(client.run(w, p, timeout=90) for w, _, p in jobs))
    summary: dict[str, Any] = {}
    executions: dict[str, list[str]] = {}
    for (workflow, i, _), outcome in zip(jobs, outcomes, strict=True):
        key = f"{workflow}#{i}"
        if outcome.ok:
            summary[key] = {"ok": True, "output": outcome.output}
            executions.setdefault(workflow, []).append(outcome.execution)
        else:
            error = outcome.error or {}
            summary[key] = {"ok": False, "error": error.get("type"), "step": outcome.step}
    for workflow, ids in executions.items():
        results = await results_per_execution(nc, workflow)
        summary[f"{workflow} results"] = sorted(results.get(e, 0) for e in ids)
        assert all(n == 1 for n in results.values()), f"{workflow}: an execution has 2 results"
    return summary


def check_against_specs(summary: dict[str, Any]) -> None:
    for i, (_, expected) in enumerate(HELLO):
        assert summary[f"hello#{i}"] == {"ok": True, "output": expected}
    for name, spec in SPECS.items():
        for i, case in enumerate(spec["cases"]):
            got = summary[f"{name}#{i}"]
            if "error" in case:
                assert not got["ok"], f"{name}: {case['input']} -> {got}"
                assert got["error"] == case["error"]["type"], got
                assert got["step"] == case["error"].get("step", got["step"])
            else:
                assert got["ok"], f"{name}: {case['input']} -> {got}"
                assert matches(case["output"], got["output"]), f"{name}: {got}"
    for key, counts in summary.items():
        if key.endswith(" results"):
            assert counts == [1] * len(counts), f"{key}: {counts}"


@pytest.mark.parametrize("mode", MODES)
def test_every_workflow_through_nano_up(project: Path, mode: str) -> None:
    began = time.monotonic()
    up = Up(project, *ARGS[mode], data_dir=f".nano-{mode}", ready_timeout=300)
    try:
        timings[f"{mode} start"] = time.monotonic() - began
        processes = {(p["group"], p["replica"]) for p in up.ps()} if mode != "monolith" else set()
        summary = on_nats(up.url, run_all)
        timings[f"{mode} run"] = time.monotonic() - began - timings[f"{mode} start"]
        check_against_specs(summary)
        summaries[mode] = summary
        assert up.stop() == 0, up.process.output()
    finally:
        up.close()
    steps = 3 + sum(
        len(w["steps"]) for s in SPECS.values() for w in [s["workflow"], *s.get("also", [])]
    )
    expected = {"monolith": 0, "supervised-monolith": 1, "micro": 3, "nano": steps}[mode]
    assert len(processes) == expected, sorted(processes)
    print(f"\n{mode}: {len(processes) or 1} host processes, timings {timings}")


def test_the_three_modes_gave_the_same_results() -> None:
    assert sorted(summaries) == sorted(MODES), "a mode's run failed (see above)"
    assert summaries["supervised-monolith"] == summaries["monolith"]
    assert summaries["micro"] == summaries["monolith"]
    assert summaries["nano"] == summaries["monolith"]


@pytest.mark.parametrize(
    ("args", "nano_yaml", "expected"),
    [
        (["--mode", "mikro"], None, "error: --mode mikro: use one of monolith, micro, nano"),
        (
            [],
            "mode: nano\nper: steps\n",
            "error: nano.yaml:2: per: Input should be 'step' or 'node'",
        ),
        (
            ["--mode", "micro"],
            "groups:\n  a: {steps: [hello.greet]}\n",
            "error: nano.yaml:1: no group runs hello.normalize, hello.record (name them in a "
            "group, or add `steps: ['*']` to one)",
        ),
    ],
)
def test_bad_modes_and_files_are_one_line_errors(
    tmp_path: Path, args: list[str], nano_yaml: str | None, expected: str
) -> None:
    root = make_project(tmp_path / "p")
    if nano_yaml is not None:
        (root / "nano.yaml").write_text(nano_yaml)
    done = subprocess.run(
        [str(NANO), "up", "--port", "0", *args],
        cwd=root,
        env=nano_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stderr.strip() == expected, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_ps_without_a_supervised_nano_up_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(NANO), "ps"], cwd=tmp_path, env=nano_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no supervised processes: no `nano up` running here in a supervised mode "
        "(no live .nano/processes.json)"
    )
