"""docs/triggers.md as a user would follow it: its workflows run on a real server behind the
bridge, its console commands run (curl, nano publish) and print what the page shows, and its
JavaScript is the client the Node.js test runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from nanoservice.nats.local_server import LocalServer
from nanoservice.triggers.service import TriggerOptions
from tests.integration.triggers_support import workflows

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "triggers.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
BLOCKS = [(m.group(1), m.group(2)) for m in BLOCK.finditer(PAGE)]
NANO = Path(sys.executable).parent / "nano"


def _sessions() -> list[tuple[str, list[str]]]:
    """Every ``$ command`` of the console blocks with the lines it should print."""
    found: list[tuple[str, list[str]]] = []
    for kind, text in BLOCKS:
        if kind != "console":
            continue
        for line in text.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif line.strip():
                found[-1][1].append(line)
    return found


def test_the_page_shows_each_kind_of_trigger() -> None:
    workflows_shown = [t for k, t in BLOCKS if k == "yaml" and "steps:" in t]
    text = "\n".join(workflows_shown)
    for part in ("http:", "subjects:", "schedules:", "cron:", "every:"):
        assert part in text, f"docs/triggers.md shows no workflow with {part}"
    commands = [c for c, _ in _sessions()]
    assert any(c.startswith("curl") for c in commands)
    assert any(c.startswith("nano publish") for c in commands)


def test_the_javascript_is_the_tested_node_client() -> None:
    client = (ROOT / "tests" / "integration" / "node_client" / "request.mjs").read_text()
    shown = [t for k, t in BLOCKS if k == "javascript"]
    assert shown
    for text in shown:
        for line in text.strip().splitlines():
            assert line.strip() in client, f"not in request.mjs: {line}"


async def _run(args: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{shlex.join(args)}: {err.decode()}"
    return out.decode()


async def test_the_console_examples_print_what_the_page_shows(nats_server: LocalServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    texts = [t for k, t in BLOCKS if k == "yaml" and "steps:" in t]
    options = TriggerOptions(port=0, schedules=False)
    async with workflows(nats_server.url, texts, options) as (_, _, triggers):
        assert triggers is not None and triggers.url is not None
        env = {**os.environ, "NATS_URL": nats_server.url, "NO_COLOR": "1"}
        for command, expected in _sessions():
            args = shlex.split(command.replace("localhost:8080", triggers.url))
            if args[0] == "nano":
                args[0] = str(NANO)
            out = (await _run(args, env)).strip().splitlines()
            if args[0] == "curl":
                assert out[-1] == expected[-1], f"{command}: status {out[-1]}"
                out, expected = out[:-1], expected[:-1]
            assert json.loads("\n".join(out)) == json.loads("\n".join(expected)), command
