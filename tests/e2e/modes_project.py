"""A project folder for the deployment-mode tests, and ``nano up`` run as a user runs it."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import yaml

from tests.e2e.processes import NANO, Background, nano_env

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = ROOT / "tests" / "patterns"
T = TypeVar("T")


def pattern_specs() -> dict[str, dict[str, Any]]:
    """Every pattern file, by its main workflow's name."""
    specs = {}
    for path in sorted(PATTERNS.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        specs[spec["workflow"]["name"]] = spec
    return specs


def make_project(
    root: Path, *, patterns: bool = False, workflows: dict[str, str] | None = None
) -> Path:
    """``root`` with workflows/ (hello, the patterns if asked, ``workflows``) and nodes/."""
    (root / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "workflows" / "hello.yaml", root / "workflows" / "hello.yaml")
    shutil.copytree(PATTERNS / "nodes", root / "nodes")
    if patterns:
        for spec in pattern_specs().values():
            for workflow in [spec["workflow"], *spec.get("also", [])]:
                text = yaml.safe_dump(workflow, sort_keys=False)
                (root / "workflows" / f"{workflow['name']}.yaml").write_text(text)
    for name, text in (workflows or {}).items():
        (root / "workflows" / f"{name}.yaml").write_text(text)
    return root


class Up:
    """``nano up`` in ``root``, with its NATS URL once it said it is ready."""

    def __init__(
        self, root: Path, *args: str, data_dir: str = ".nano", ready_timeout: float = 60.0
    ) -> None:
        self.root, self.data_dir = root, data_dir
        self.process = Background(["up", "--port", "0", "--data-dir", data_dir, *args], root)
        line = self.process.wait_for_line("NATS ", ready_timeout)
        self.url = line.split()[1]
        self.process.wait_for_line("ready:", ready_timeout)

    def lines(self, pattern: str) -> list[str]:
        found = re.compile(pattern)
        return [line for line in self.process.stdout if found.search(line)]

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        """The first stdout line (already out or coming) matching ``pattern``."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.process.stdout):
                if found.search(line):
                    return line
            if self.process.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}\n{self.process.output()}")

    def ps(self) -> list[dict[str, Any]]:
        """``nano ps --json``, run as a user runs it."""
        out = subprocess.run(
            [str(NANO), "ps", "--json", "--data-dir", self.data_dir],
            cwd=self.root,
            env=nano_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return list(json.loads(out)["processes"])

    def stop(self) -> int:
        """Ctrl-C, and the exit code."""
        self.process.proc.send_signal(signal.SIGINT)
        return self.process.wait(60)

    def close(self) -> None:
        self.process.close()


def on_nats(url: str, work: Callable[[nats.NATS], Awaitable[T]]) -> T:
    """Run ``work(connection)`` against ``url`` in a fresh event loop."""

    async def main() -> T:
        nc = await nats.connect(url)
        try:
            return await work(nc)
        finally:
            await nc.close()

    return asyncio.run(main())


async def results_per_execution(nc: nats.NATS, workflow: str) -> dict[str, int]:
    """How many results each execution of ``workflow`` stored (exactly once: all 1)."""
    info = await nc.jetstream().stream_info(
        f"NANO_{workflow.upper()}", subjects_filter=f"nano.{workflow}._done.*"
    )
    return {s.rsplit(".", 1)[-1]: n for s, n in (info.state.subjects or {}).items()}
