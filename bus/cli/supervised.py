"""``nano up`` in a supervised mode: the process groups of nano.yaml as child processes.

Children are ``nano host --steps ...`` processes against the server ``nano up`` uses; they
read the routing tables from the server and follow new revisions. When a saved workflow
makes a new revision, the groups are resolved again: a step no process runs yet gets one
(nano mode: a new group; micro: its group's processes restart with the new step list). The
processes of removed steps keep running, so executions on older revisions finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanoservice.deploy import DeployError, LoadedConfig, Mode, ProcessGroup, resolve
from nanoservice.errors import NanoError
from nanoservice.supervise import Limits, ProcessSpec, Supervisor

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.observe.supervisor import SupervisorMetrics
    from nanoservice.workflow.table import RoutingTable

__all__ = ["HostOptions", "run_supervised", "spec_of"]

STATE_EVERY = 1.0


@dataclass(frozen=True)
class HostOptions:
    """What every child host is started with besides its steps (``extra_args``: more
    ``nano host`` options, e.g. for metrics or the log format)."""

    url: str
    nodes: list[Path]
    log_level: str
    grace: float
    extra_args: tuple[str, ...] = ()

    def argv(self, group: ProcessGroup) -> tuple[str, ...]:
        args = [sys.executable, "-m", "nanoservice.cli", *group.host_args(), "--nats-url", self.url]
        for folder in self.nodes:
            args += ["--nodes", str(folder)]
        return (
            *args,
            "--log-level",
            self.log_level,
            "--grace",
            f"{self.grace:g}",
            *self.extra_args,
        )


def spec_of(group: ProcessGroup, options: HostOptions) -> ProcessSpec:
    r = group.resources
    limits = Limits(
        memory=r.memory, address_space=r.address_space, cpu=r.cpu, open_files=r.open_files
    )
    return ProcessSpec(group.name, options.argv(group), steps=group.steps, limits=limits)


async def run_supervised(
    nc: NATS,
    tables: list[RoutingTable],
    groups: list[ProcessGroup],
    *,
    loaded: LoadedConfig,
    mode: Mode,
    options: HostOptions,
    banner: str,
    state_file: Path,
    say: Callable[[str], None],
    follow: Callable[[Callable[[RoutingTable], Awaitable[None]]], Coroutine[Any, Any, None]]
    | None = None,
    others: Sequence[tuple[ProcessSpec, int]] = (),
    metrics: SupervisorMetrics | None = None,
) -> None:
    """Run ``groups`` supervised until SIGINT/SIGTERM, then stop them (a second signal:
    at once). ``follow(on_new_table)`` follows the workflow files; ``others`` are more
    processes to supervise alongside (a bridge, a scheduler: spec and replica count);
    ``metrics`` counts restarts and replicas per group."""
    from nanoservice.supervise.autoscale import Autoscaler
    from nanoservice.supervise.backlog import consumers_of, read_backlog
    from nanoservice.supervise.state import write_state

    live = {t.workflow: t for t in tables}
    dirty = asyncio.Event()
    sup = Supervisor(say=say, on_change=dirty.set)
    stop, now = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (now if stop.is_set() else stop).set())
    js = nc.jetstream()
    scalers: dict[str, asyncio.Task[None]] = {}

    def place(group: ProcessGroup) -> None:
        spec = spec_of(group, options)
        if group.name not in sup.specs:
            sup.run(spec, group.replicas.initial)
        elif sup.specs[group.name] != spec:
            sup.run(spec, sup.count(group.name))
        if not group.replicas.fixed and group.name not in scalers:
            name, steps = group.name, group.steps

            async def backlog() -> int:
                return await read_backlog(js, consumers_of(steps, live))

            scaler = Autoscaler(
                name,
                group.replicas,
                backlog,
                lambda: sup.count(name),
                lambda n: sup.scale(name, n),
                say,
            )
            scalers[name] = asyncio.create_task(scaler.run())

    async def on_new_table(table: RoutingTable) -> None:
        live[table.workflow] = table
        try:
            regrouped = resolve(loaded, list(live.values()), mode)
        except DeployError as exc:
            for problem in exc.problems:
                say(f"[red]error:[/red] {problem}")
            say("[yellow]no process runs the new steps until nano.yaml places them[/yellow]")
            return
        for group in regrouped:
            place(group)

    restarts: dict[tuple[str, int], int] = {}

    def update_metrics() -> None:
        if metrics is None:
            return
        for name in sup.specs:
            metrics.replicas(name, sup.count(name))
        for replica in sup.all():
            key = (replica.spec.name, replica.index)
            for _ in range(replica.restarts - restarts.get(key, 0)):
                metrics.restarted(replica.spec.name)
            restarts[key] = replica.restarts

    async def keep_state() -> None:
        while True:
            write_state(state_file, sup.all(), mode=mode)
            update_metrics()
            dirty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dirty.wait(), STATE_EVERY)

    state_task = asyncio.create_task(keep_state())
    following: asyncio.Task[None] | None = None
    try:
        for group in groups:
            place(group)
        for spec, count in others:
            sup.run(spec, count)
        say(banner)
        ready = asyncio.ensure_future(sup.wait_ready())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((ready, stopped), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set():
            count = sum(1 for r in sup.all() if r.state == "ready")
            say(
                f"ready: {count} processes in {len(sup.specs)} groups (mode {mode}); Ctrl-C to stop"
            )
            if follow is not None:
                following = asyncio.create_task(follow(on_new_table))
            await stop.wait()
        for task in (following, *scalers.values()):
            if task is not None:
                task.cancel()
        say(f"stopping {sum(1 for _ in sup.all())} processes")
        stopping = asyncio.ensure_future(sup.stop(options.grace))
        interrupted = asyncio.ensure_future(now.wait())
        await asyncio.wait((stopping, interrupted), return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            sup.stop_now()
        interrupted.cancel()
        unclean = await stopping
    finally:
        state_task.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(OSError):
            state_file.unlink()  # noqa: ASYNC240 - one small file, at the end
    failed = [r.label for r in sup.failed]
    if failed:
        raise NanoError(f"processes that kept failing: {', '.join(failed)}")
    if unclean:
        raise NanoError(f"processes that did not stop cleanly: {'; '.join(unclean)}")
