"""``nano up`` (local NATS + provisioning + workers) and ``nano host`` (one worker process)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from nanoservice.cli.bridge import HttpPort
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

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.nats.local_cluster import LocalCluster
    from nanoservice.nats.local_server import (
        LocalServer,
    )
    from nanoservice.sdk.registry import Registry
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
    http_port: HttpPort = 8080,
) -> None:
    """Start a local NATS (JetStream on), provision the workflows and run them."""
    from nanoservice.nats.connect import STATE_FILE
    from nanoservice.nats.local_server import NatsServerError, NatsServerNotFound
    from nanoservice.workflow.project import find_workflow_files, project_registry

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
                targets=[Path(f) for f in files or []],
                http_port=http_port,
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
    from nanoservice.workflow.project import compile_files

    return compile_files(paths, registry)


def _start_local(
    data_dir: Path, *, cluster: bool, port: int | None, sync_interval: str | None
) -> LocalServer | LocalCluster:
    from nanoservice.nats.local_cluster import LocalCluster
    from nanoservice.nats.local_server import LocalServer, ServerOptions, free_port

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
    from nanoservice.nats.local_server import stop_orphan

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
    targets: list[Path] | None = None,
    http_port: int = 8080,
) -> None:
    from nanoservice.cli.bridge import start_triggers
    from nanoservice.cli.hosting import run_host
    from nanoservice.cli.reload import follow_files
    from nanoservice.nats.local_cluster import LocalCluster
    from nanoservice.nats.provision import provision

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

    async def publish(table: RoutingTable) -> None:
        await provision(js, table, replicas=replicas)

    def follow() -> Coroutine[Any, Any, None]:
        return follow_files(targets or [Path("workflows")], registry, tables, publish, say)

    triggers, http_line = await start_triggers(nc, "127.0.0.1", http_port)  # bridge, schedules
    try:
        await run_host(
            nc,
            tables,
            registry,
            None,
            banner=banner.replace("\n", f"\n{http_line}\n", 1),
            grace=grace,
            replicas=replicas or 1,
            follow=follow,
        )
    finally:
        await triggers.stop()


def say(text: str) -> None:
    console.print(text, soft_wrap=True)


async def _connect(url: str, name: str, reconnect_attempts: int = -1) -> NATS:
    from nanoservice.nats.connect import connect

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
    from nanoservice.nats.local_server import LocalServer

    lines = [f"NATS        {url}"]
    if isinstance(server, LocalServer) and server.options.port != DEFAULT_PORT and moved:
        lines[0] += f" (port {DEFAULT_PORT} is taken)"
    if isinstance(server, LocalServer):
        lines.append(f"monitoring  {server.monitor_url}")
        lines.append(f"server log  {server.log_file}")
    for table in tables:
        triggers = [f"{table.start_subject}.<id>", *table.triggers]
        lines.append(
            f"workflow    {table.workflow} (revision {table.revision}): "
            f"triggers {', '.join(triggers)}"
        )
    example = tables[0].workflow if tables else "<workflow>"
    lines.append(f"try         nano publish {example} '{{...}}' --wait")
    return "\n".join(lines)


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
    from nanoservice.nats.connect import resolve_url
    from nanoservice.workflow.project import compile_files, find_workflow_files, project_registry

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
    from nanoservice.nats.provision import load_tables, provision

    nc = await _connect(url, "nano host", reconnect_attempts)
    if tables is None:
        tables = list((await load_tables(nc.jetstream())).values())
        if not tables:
            raise NanoError(f"no routing tables on {url}; run `nano up` or pass workflow files")
    else:
        for table in tables:
            await provision(nc.jetstream(), table)
    from nanoservice.cli.hosting import run_host

    await run_host(nc, tables, registry, steps, banner=f"NATS        {url}", grace=grace)
