"""``nano up`` (local NATS + provisioning + workers) and ``nano host`` (one worker process)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import signal
import socket
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from nats.aio.client import Client as NATS

from nanoservice.cli.common import (
    Files,
    Grace,
    NatsUrl,
    NodesDir,
    Reconnects,
    console,
    die,
    run,
    setup_logging,
)
from nanoservice.errors import NanoError
from nanoservice.nats.connect import STATE_FILE, connect, resolve_url, wait_closed
from nanoservice.nats.local_cluster import LocalCluster
from nanoservice.nats.local_server import (
    LocalServer,
    NatsServerError,
    NatsServerNotFound,
    ServerOptions,
    free_port,
    stop_orphan,
)
from nanoservice.nats.provision import load_tables, provision
from nanoservice.nats.transport import NatsTransport
from nanoservice.runtime.host import Host, freeze_startup_heap, select_steps
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.project import compile_files, find_workflow_files, project_registry
from nanoservice.workflow.table import RoutingTable

__all__ = ["host_command", "up_command"]

log = logging.getLogger("nanoservice.cli.up")

DEFAULT_PORT = 4222
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")]


def up_command(
    files: Files = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url",
            "-s",
            envvar="NATS_URL",
            help="Use this NATS server instead of starting one.",
        ),
    ] = None,
    cluster: Annotated[
        bool, typer.Option(help="Start a 3-node cluster instead of one server.")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(
            help="Client port of the local server; an explicit port that is taken is an "
            "error, 0 picks any free one (default: 4222, or a free port if 4222 is taken).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the local server keeps its data.")] = Path(
        ".nano"
    ),
    sync_interval: Annotated[
        str | None,
        typer.Option(
            help="JetStream fsync interval of the local server: e.g. 1s, 100ms, always "
            "(nats-server's default is 2m: acknowledged writes can be lost on power "
            "loss)."
        ),
    ] = None,
    nodes: NodesDir = None,
    log_level: LogLevel = "info",
    reconnect_attempts: Reconnects = -1,
    grace: Grace = 10.0,
) -> None:
    """Start a local NATS (JetStream on), provision the workflows and run them."""
    setup_logging(log_level)
    try:
        registry = project_registry(nodes or [Path("nodes")])
        paths = find_workflow_files(files or [])
    except NanoError as exc:
        raise die(str(exc)) from None
    tables = run(_compile(paths, registry))
    lock = _lock_folder(data_dir)
    server: LocalServer | LocalCluster | None = None
    if not nats_url:
        try:
            server = _start_local(data_dir, cluster=cluster, port=port, sync_interval=sync_interval)
        except (NatsServerError, NatsServerNotFound) as exc:
            lock.close()
            raise die(str(exc).splitlines()[0]) from None
        nats_url = server.url
    # Remembered for `nano publish`/`cancel`/`host` in this folder, whoever runs the server.
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(nats_url + "\n")
    try:
        run(
            _serve(
                nats_url,
                tables,
                registry,
                server,
                reconnect_attempts,
                moved=port is None,
                grace=grace,
            )
        )
    finally:
        if server is not None:
            console.print("stopping NATS")
            server.stop()
        with contextlib.suppress(OSError):
            STATE_FILE.unlink()
        lock.close()
    console.print("[green]stopped[/green]")


def _lock_folder(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``data_dir`` for this process's life (the OS drops it on
    any exit, SIGKILL included), or exit naming the `nano up` that holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "up.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise die(
            f"another `nano up` (pid {holder}) is running with {data_dir}; stop it first "
            "or pass another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def _compile(paths: list[Path], registry: Registry) -> list[RoutingTable]:
    return compile_files(paths, registry)


def _start_local(
    data_dir: Path, *, cluster: bool, port: int | None, sync_interval: str | None
) -> LocalServer | LocalCluster:
    if cluster:
        local_cluster = LocalCluster(
            data_dir / "cluster", sync_interval=sync_interval, die_with_parent=True
        )
        for node in local_cluster.servers:
            _stop_orphan(node.options.store_dir)
        console.print(f"starting a 3-node NATS cluster (data in {data_dir / 'cluster'})")
        local_cluster.start()
        return local_cluster
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()
    elif port == 0:
        port = free_port()
    elif not _port_free(port):
        raise die(f"port {port} is taken (pass another --port, or --port 0 for any free one)")
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    _stop_orphan(store.resolve())
    server = LocalServer(
        ServerOptions(
            store_dir=store.resolve(), port=port, sync_interval=sync_interval, die_with_parent=True
        )
    )
    console.print(f"starting nats-server (data in {store})")
    server.start()
    return server


def _stop_orphan(store: Path) -> None:
    pid = stop_orphan(store)
    if pid is not None:
        console.print(f"stopped nats-server pid {pid}, left running on {store} by an earlier run")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _serve(
    url: str,
    tables: list[RoutingTable],
    registry: Registry,
    server: LocalServer | LocalCluster | None,
    reconnect_attempts: int = -1,
    *,
    moved: bool = False,
    grace: float = 10.0,
) -> None:
    nc = await _connect(url, "nano up", reconnect_attempts)
    js = nc.jetstream()
    replicas = 3 if isinstance(server, LocalCluster) else None  # a local cluster: R3 streams
    for table in tables:
        done = await provision(js, table, replicas=replicas)
        console.print(
            f"workflow [bold]{table.workflow}[/bold] ({table.source}): stream "
            f"{done.stream} {done.stream_action}, {len(table.steps)} steps"
        )
        if done.stale_consumers:
            console.print(
                f"  [yellow]consumers of removed steps left in place:[/yellow] "
                f"{', '.join(done.stale_consumers)}"
            )
    banner = _banner(url, tables, server, moved=moved)
    await _run_host(nc, tables, registry, None, banner=banner, grace=grace)


async def _connect(url: str, name: str, reconnect_attempts: int = -1) -> NATS:
    try:
        return await connect(url, name=name, reconnect_attempts=reconnect_attempts)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None


def _banner(
    url: str,
    tables: list[RoutingTable],
    server: LocalServer | LocalCluster | None,
    *,
    moved: bool = False,
) -> str:
    lines = [f"NATS        {url}"]
    if isinstance(server, LocalServer) and server.options.port != DEFAULT_PORT and moved:
        lines[0] += f" (port {DEFAULT_PORT} is taken)"
    if isinstance(server, LocalServer):
        lines.append(f"monitoring  {server.monitor_url}")
        lines.append(f"server log  {server.log_file}")
    for table in tables:
        triggers = [f"{table.start_subject}.<id>", *table.triggers]
        lines.append(f"workflow    {table.workflow}: triggers {', '.join(triggers)}")
    example = tables[0].workflow if tables else "<workflow>"
    lines.append(f"try         nano publish {example} '{{...}}' --wait")
    return "\n".join(lines)


async def _run_host(
    nc: NATS,
    tables: list[RoutingTable],
    registry: Registry,
    only: list[str] | None,
    *,
    banner: str,
    grace: float = 10.0,
) -> None:
    transport = NatsTransport(nc)
    await transport.start()
    chosen = select_steps(tables, only)
    if not chosen:
        raise NanoError(f"no steps match {', '.join(only or [])}")
    host = Host(transport, registry, chosen, nc=nc)
    await host.start()
    freeze_startup_heap()
    stop, now = asyncio.Event(), asyncio.Event()  # the first signal drains, a second stops
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_one_line)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (now if stop.is_set() else stop).set())
    console.print(banner)
    console.print(
        f"[green]ready[/green]: {len(chosen)} step consumers running; Ctrl-C to stop",
        soft_wrap=True,
    )
    lost = await _until_stopped_or_closed(nc, stop)
    unsettled = 0
    try:
        if lost is None:
            unsettled = await _drain(host, grace, now)
        else:  # nothing can settle any more
            with contextlib.suppress(Exception):
                await asyncio.wait_for(host.stop(1.0), 2.0)
    finally:
        if unsettled:  # its tasks are cancelled: close what is left, quietly and bounded
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transport.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        else:
            await transport.close()
            if not nc.is_closed:
                await nc.drain()
    if lost is not None:
        raise NanoError(f"connection to NATS closed for good ({lost}); exiting")
    if unsettled:
        raise NanoError(
            f"stopped with {unsettled} message(s) in flight; NATS redelivers them after "
            "their ack wait"
        )


def _one_line(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Background task failures as one log line (the whole context at --log-level debug)."""
    if log.isEnabledFor(logging.DEBUG):
        loop.default_exception_handler(context)
        return
    exc = context.get("exception")
    what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message")
    log.warning("background task failed: %s", what)


def _in_flight(host: Host) -> int:
    return sum(len(getattr(runner, "inflight", ())) for runner in host.runners)


async def _drain(host: Host, grace: float, now: asyncio.Event) -> int:
    """Stop the host, letting in-flight messages settle for up to ``grace`` seconds (a
    countdown each second) or until ``now`` is set; how many were left unsettled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    stopping = asyncio.ensure_future(host.stop(grace))
    interrupted = asyncio.ensure_future(now.wait())
    try:
        while not stopping.done() and not now.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            if count := _in_flight(host):
                console.print(
                    f"draining: {count} message(s) in flight, stopping in {math.ceil(left)} s "
                    "(Ctrl-C again: stop now)",
                    soft_wrap=True,
                )
            await asyncio.wait((stopping, interrupted), timeout=min(1.0, left))
    finally:
        interrupted.cancel()
    if stopping.done():
        stopping.result()
        return 0
    count = max(_in_flight(host), 1)
    # Stop at once: every other task (the steps in flight among them) is cancelled, so none
    # settles half-way; their messages stay unacknowledged and come back.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    return count


async def _until_stopped_or_closed(nc: NATS, stop: asyncio.Event) -> str | None:
    """Wait for a stop signal (None) or for the connection to close for good (why)."""
    stopped = asyncio.ensure_future(stop.wait())
    closed = asyncio.ensure_future(wait_closed(nc))
    try:
        await asyncio.wait((stopped, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, closed):
            task.cancel()
    return None if stopped.done() and not stopped.cancelled() else closed.result()


def host_command(
    steps: Annotated[
        list[str] | None,
        typer.Option("--steps", help="Run only these: `workflow` or `workflow.step` (repeatable)."),
    ] = None,
    files: Files = None,
    nats_url: NatsUrl = None,
    nodes: NodesDir = None,
    log_level: LogLevel = "info",
    reconnect_attempts: Reconnects = -1,
    grace: Grace = 10.0,
) -> None:
    """Run step consumers against an existing NATS (one process of nano/micro mode).

    Routing tables come from the server (stored there by `nano up` or by `nano host` given
    files), or from the workflow files given.
    """
    setup_logging(log_level)
    try:
        registry = project_registry(nodes or [Path("nodes")])
        tables = compile_files(find_workflow_files(files), registry) if files else None
    except NanoError as exc:
        raise die(str(exc)) from None
    run(_host(resolve_url(nats_url), tables, registry, steps, reconnect_attempts, grace))


async def _host(
    url: str,
    tables: list[RoutingTable] | None,
    registry: Registry,
    steps: list[str] | None,
    reconnect_attempts: int = -1,
    grace: float = 10.0,
) -> None:
    nc = await _connect(url, "nano host", reconnect_attempts)
    if tables is None:
        tables = list((await load_tables(nc.jetstream())).values())
        if not tables:
            raise NanoError(f"no routing tables on {url}; run `nano up` or pass workflow files")
    else:
        for table in tables:
            await provision(nc.jetstream(), table)
    await _run_host(nc, tables, registry, steps, banner=f"NATS        {url}", grace=grace)
