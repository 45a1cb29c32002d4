"""A poison message: a node that kills its host on every try. After ``max_attempts`` deliveries
the next one is dead-lettered without running the node, so restarted hosts stop dying."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from nanoservice.nats.client import Client
from tests.e2e.processes import Background

READY_TIMEOUT = 40.0
BOUND = 60.0  # waits are bounded by this; no test expects a duration

KILLER = '''\
import os
from pathlib import Path
from typing import Any

from nanoservice import Context, node


@node("killer")
async def killer(ctx: Context, input: Any) -> Any:
    """Records the try, then takes the whole host down (as a segfault or OOM kill would)."""
    with open(Path(__file__).parent.parent / "runs.txt", "a") as runs:
        runs.write(f"{ctx.execution_id} {ctx.attempt}\\n")
    os._exit(3)
'''

WORKFLOW = """\
name: poison
steps:
  a: {node: killer, retry: {max_attempts: 2, backoff: [0.1]}, ack_wait: 1, timeout: 1}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "killer.py").write_text(KILLER)
    (root / "poison.yaml").write_text(WORKFLOW)
    return root


@pytest.fixture
def hosts() -> Iterator[list[Background]]:
    started: list[Background] = []
    try:
        yield started
    finally:
        for host in started:
            host.close()


def start_host(
    hosts: list[Background], project: Path, url: str, *, ready: bool = True
) -> Background:
    """A host; with ``ready``, once it says so. A host started while the poisoned message is
    due again may take it (and die) before it prints ``ready:``: those are not waited for."""
    host = Background(["host", "poison.yaml", "--nats-url", url], cwd=project)
    hosts.append(host)
    if ready:
        host.wait_for_line("ready:", timeout=READY_TIMEOUT)
    return host


async def test_a_message_that_kills_every_host_is_dead_lettered_after_max_attempts(
    project: Path, nats_url: str, hosts: list[Background]
) -> None:
    runs = project / "runs.txt"
    first = start_host(hosts, project, nats_url)
    nc = await nats.connect(nats_url)
    try:
        client = Client(nc)
        execution = await client.start("poison", {"x": 1}, execution="poisoned")
        for attempt in (1, 2):
            host = first if attempt == 1 else start_host(hosts, project, nats_url, ready=False)
            code = await asyncio.to_thread(host.wait, BOUND)
            assert code == 3, host.output()  # the node took the host down
        last = start_host(hosts, project, nats_url)
        outcome = await client.outcome("poison", execution, timeout=BOUND)
    finally:
        await nc.close()
    assert not outcome.ok and outcome.error is not None, outcome
    assert outcome.error["type"] == "InvalidMessageError", outcome
    assert "gave up after 2 deliveries" in outcome.error["message"], outcome
    assert runs.read_text().splitlines() == ["poisoned 1", "poisoned 2"]
    assert last.proc.poll() is None, last.output()  # the third host survived
