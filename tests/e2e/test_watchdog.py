"""A node that blocks the event loop is named in the log, and SIGTERM still stops the host."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import nats

from nanoservice.nats.client import Client
from tests.e2e.processes import Background

BLOCKER = """\
import time
from typing import Any

from nanoservice import Context, node


@node("blocker")
async def blocker(ctx: Context, input: Any) -> Any:
    time.sleep(120)  # the mistake: a blocking call in an async def
    return input
"""

WORKFLOW = "name: stuck\nsteps:\n  s: {node: blocker, timeout: 300}\n"


def _wait_for_stderr(proc: Background, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in proc.stderr if text in line]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} on stderr within {timeout:g} s\n{proc.output()}")


async def _trigger(url: str) -> str:
    nc = await nats.connect(url)
    try:
        return await Client(nc).start("stuck", {})
    finally:
        await nc.close()


def test_a_blocked_loop_is_reported_and_sigterm_still_stops_the_host(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "stuck.yaml").write_text(WORKFLOW)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "blocker.py").write_text(BLOCKER)
    up = Background(["up", "--port", "0"], cwd=tmp_path)
    try:
        url = up.wait_for_line("NATS").split()[-1]
        up.wait_for_line("ready:")
        execution = asyncio.run(_trigger(url))
        line = _wait_for_stderr(up, "event loop has been blocked", 30)
        assert f"stuck.s (execution {execution}" in line, line
        up.proc.send_signal(signal.SIGTERM)
        code = up.wait(timeout=15)  # the node would sleep for 120 s more
        assert code == 128 + signal.SIGTERM, up.output()
        assert any("stopping at once" in line for line in up.stderr), up.output()
    finally:
        up.close()
