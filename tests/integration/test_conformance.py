"""`nano conformance` against the Python host, the TypeScript node and broken hosts.

Real processes throughout: the runner starts its own nats-server and the host under test.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tests.e2e.test_cli import REPO, describe, nano
from tests.e2e.test_typescript import build_node_ts

SCENARIOS = ["results", "routes", "retries", "deadletters", "heartbeats", "redelivery"]

# Stores the right result for every message it gets, but without the protocol's headers.
CARELESS = """
import asyncio, json, os, nats

async def main():
    nc = await nats.connect(os.environ["NATS_URL"])
    js = nc.jetstream()
    subs = []
    for name in os.environ["NANO_STEPS"].split(","):
        workflow, step = name.split(".")
        stream = "NANO_" + workflow.upper().replace("-", "_")
        subs.append(await js.pull_subscribe_bind(step, stream))
    while True:
        for sub in subs:
            try:
                msgs = await sub.fetch(1, timeout=0.2)
            except Exception:
                continue
            for msg in msgs:
                wf, execution = msg.subject.split(".")[1], msg.subject.split(".")[-1]
                output = {"echo": json.loads(msg.data)["prev"], "attempt": 1}
                body = json.dumps({"output": output, "step": "echo"}).encode()
                await js.publish(f"nano.{wf}._done.{execution}", body)
                await msg.ack()

asyncio.run(main())
"""


def passed(stdout: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in stdout.splitlines() if line.startswith("pass")]


def test_the_python_host_passes_every_scenario(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m nanoservice.conformance.echo"
    result = nano("conformance", "--cmd", cmd, cwd=tmp_path, timeout=150)
    assert result.returncode == 0, describe(result)
    assert passed(result.stdout) == SCENARIOS, describe(result)
    assert "6 scenarios: 6 passed, 0 failed" in result.stdout


def test_the_typescript_node_passes_every_scenario_as_protocol_md_shows() -> None:
    build_node_ts()
    page = (REPO / "docs" / "protocol.md").read_text()
    block = page[page.index("```console\n$ nano conformance") :].split("```")[1]
    command, *printed = block.splitlines()[1:]
    args = shlex.split(command.removeprefix("$ "))
    result = nano(*args[1:], cwd=REPO, timeout=150)
    assert result.returncode == 0, describe(result)
    assert passed(result.stdout) == SCENARIOS, describe(result)
    assert result.stdout.splitlines() == [line for line in printed if line], describe(result)


def test_a_host_that_skips_the_protocols_headers_fails_and_says_which(tmp_path: Path) -> None:
    script = tmp_path / "careless.py"
    script.write_text(CARELESS)
    cmd = f"{sys.executable} {script}"
    result = nano("conformance", "--cmd", cmd, "--scenario", "results", cwd=tmp_path, timeout=90)
    assert result.returncode == 1, describe(result)
    line = next(x for x in result.stdout.splitlines() if x.startswith("FAIL"))
    assert line.startswith("FAIL  results: ") and "Nano-Step" in line, describe(result)
    assert "1 scenarios: 0 passed, 1 failed" in result.stdout


def test_a_command_that_exits_at_once_is_one_failure_line(tmp_path: Path) -> None:
    result = nano("conformance", "--cmd", "echo broken; exit 3", cwd=tmp_path, timeout=60)
    assert result.returncode == 1, describe(result)
    assert "FAIL  start: `echo broken; exit 3` exited (3): broken" in result.stdout, describe(
        result
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_an_unknown_scenario_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    result = nano("conformance", "--cmd", "true", "--scenario", "retry", cwd=tmp_path)
    assert result.returncode == 2, describe(result)
    assert result.stderr.strip() == (
        "error: unknown scenario 'retry' (known: results, routes, retries, deadletters, "
        "heartbeats, redelivery)"
    )
