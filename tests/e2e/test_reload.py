"""`nano up` picks up an edited workflow without a restart: new executions use the new
revision, running ones finish on theirs, and a version that does not compile is refused."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import nats
import pytest

from nanoservice.nats.client import Client
from tests.e2e.processes import Background

REPO = Path(__file__).resolve().parents[2]

SLOW = """\
name: slow
steps:
  wait: {node: delay, with: {seconds: 2}, next: say}
  say: {node: transform, with: {expr: '"GREETING, " + prev.name'}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    shutil.copy(REPO / "workflows" / "hello.yaml", tmp_path / "workflows" / "hello.yaml")
    (tmp_path / "workflows" / "slow.yaml").write_text(SLOW.replace("GREETING", "Hello"))
    return tmp_path


async def _outcomes(url: str, project: Path, up: Background) -> None:
    nc = await nats.connect(url)
    client = Client(nc)
    try:
        first = await client.run("hello", {"name": "Ada"}, timeout=20)
        assert first.output["message"] == "Hello, Ada!"
        running = await client.start("slow", {"name": "Ada"})  # on the old revision

        hello = project / "workflows" / "hello.yaml"
        hello.write_text(hello.read_text().replace("greeting: Hello", "greeting: Howdy"))
        slow = project / "workflows" / "slow.yaml"
        slow.write_text(SLOW.replace("GREETING", "Howdy"))
        for _ in range(2):
            line = await asyncio.to_thread(up.wait_for_line, "workflow ", 20)
            assert "live (was" in line, line

        after = await client.run("hello", {"name": "Bob"}, timeout=20)
        assert after.output["message"] == "Howdy, Bob!"
        old = await client.outcome("slow", running, timeout=20)
        assert old.output == "Hello, Ada"  # started before the edit: finished on its revision
        new = await client.run("slow", {"name": "Eve"}, timeout=20)
        assert new.output == "Howdy, Eve"

        hello.write_text(hello.read_text().replace("node: transform", "node: transfrom", 1))
        line = await asyncio.to_thread(up.wait_for_line, "error:", 20)
        assert "unknown node 'transfrom'" in line and "hello.yaml" in line
        await asyncio.to_thread(up.wait_for_line, "the new version was refused", 20)
        still = await client.run("hello", {"name": "Cy"}, timeout=20)
        assert still.output["message"] == "Howdy, Cy!"
    finally:
        await nc.close()


def test_an_edited_workflow_is_used_by_the_next_execution(project: Path) -> None:
    up = Background(["up", "--port", "0"], cwd=project)
    try:
        url = up.wait_for_line("NATS").split()[-1]
        up.wait_for_line("ready:")
        asyncio.run(_outcomes(url, project, up))
    finally:
        up.close()
