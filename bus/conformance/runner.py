"""Run the scenarios against an implementation started by a command, on a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.client import JetStreamContext

from nanoservice.conformance.echo import echo_registry
from nanoservice.conformance.scenarios import SCENARIOS, STEP, WORKFLOWS, ScenarioFailed, World
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.nats.provision import provision
from nanoservice.runtime.serve import serve
from nanoservice.workflow.compiler import compile_text

__all__ = ["Implementation", "Report", "run_conformance"]

READY_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 60.0


@dataclass
class Report:
    results: list[tuple[str, bool, str]]

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.results)


class Implementation:
    """The host under test: ``cmd`` in a shell of its own process group."""

    def __init__(self, cmd: str, url: str, steps: list[str], js: JetStreamContext, log: Path):
        self.cmd, self.url, self.steps, self.js, self.log = cmd, url, steps, js, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "NATS_URL": self.url, "NANO_STEPS": ",".join(self.steps)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, shell=True, env=env, stdout=out, stderr=out, start_new_session=True
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self) -> None:
        """Until every step's consumer has a pull waiting (the implementation is pulling)."""
        deadline = time.monotonic() + READY_TIMEOUT
        waiting: list[str] = list(self.steps)
        while waiting:
            if self.proc is not None and self.proc.poll() is not None:
                raise ScenarioFailed(f"`{self.cmd}` exited ({self.proc.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise ScenarioFailed(
                    f"not pulling from {', '.join(waiting)} within {READY_TIMEOUT:g} s"
                )
            still = []
            for name in waiting:
                workflow, step = name.split(".", 1)
                stream = "NANO_" + workflow.upper().replace("-", "_")
                info = await self.js.consumer_info(stream, step)
                if not info.num_waiting:
                    still.append(name)
            waiting = still
            if waiting:
                await asyncio.sleep(0.1)

    def tail(self, lines: int = 5) -> str:
        text = (
            self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        )
        return " | ".join(text[-lines:]) or "(no output)"


async def run_conformance(
    cmd: str, only: list[str] | None = None, report: Callable[[str, bool, str], None] | None = None
) -> Report:
    """Start a server, provision the scenarios' workflows, serve their Python steps here and
    their ``echo`` steps with ``cmd``; run each scenario; the pass/fail of each."""
    names = [n for n in SCENARIOS if only is None or n in only]
    registry = echo_registry()
    tables = [
        compile_text(f"name: conf-{n}\n{WORKFLOWS[n]}", registry, file=f"conf-{n}") for n in names
    ]
    results: list[tuple[str, bool, str]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(ServerOptions(store_dir=Path(tmp) / "nats")) as server,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        for table in tables:
            await provision(js, table)
        ours = [f"{t.workflow}.{s}" for t in tables for s in t.steps if s != STEP]
        impl = Implementation(
            cmd, server.url, [f"{t.workflow}.{STEP}" for t in tables], js, Path(tmp) / "impl.log"
        )
        try:
            async with (
                nats_backend(server.url) as backend,
                serve(backend, tables, registry, steps=ours),
            ):
                impl.start()
                await impl.ready()
                world = World(js, Client(nc), impl, {t.workflow[5:]: t.revision for t in tables})
                for name in names:
                    what, scenario = SCENARIOS[name]
                    try:
                        await asyncio.wait_for(scenario(world), SCENARIO_TIMEOUT)
                        result = (name, True, what)
                    except (ScenarioFailed, TimeoutError, Exception) as exc:
                        reason = str(exc) or type(exc).__name__
                        result = (name, False, f"{what}: {reason}")
                    results.append(result)
                    if report is not None:
                        report(*result)
        except ScenarioFailed as exc:  # the implementation never became ready
            results.append(("start", False, str(exc)))
            if report is not None:
                report("start", False, str(exc))
        finally:
            impl.stop()
            await nc.close()
    return Report(results)
