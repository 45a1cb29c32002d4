"""``nano up``: a local NATS (or a given one), provisioning, the workers and the bridge."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from nanoservice.cli.bridge import HttpPort
from nanoservice.cli.common import (
    Files,
    Grace,
    LogFormat,
    MetricsPort,
    NodesDir,
    Reconnects,
    console,
    die,
    problems,
    run,
    setup_logging,
)
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.deploy import LoadedConfig, Mode, ProcessGroup
    from nanoservice.nats.local_cluster import LocalCluster
    from nanoservice.nats.local_server import LocalServer
    from nanoservice.observe.supervisor import SupervisorMetrics
    from nanoservice.sdk.registry import Registry
    from nanoservice.workflow.table import RoutingTable

__all__ = ["LogLevel", "connect_nats", "up_command"]

log = logging.getLogger("nanoservice.cli.up")

DEFAULT_PORT = 4222
DEFAULT_METRICS_PORT = 9477
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
    log_format: LogFormat = "text",
    metrics_port: MetricsPort = None,
    reconnect_attempts: Reconnects = -1,
    grace: Grace = 10.0,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="monolith, micro or nano (default: nano.yaml's mode, else monolith).",
            show_default=False,
        ),
    ] = None,
    supervise: Annotated[
        bool,
        typer.Option(
            "--supervise",
            help="Run the monolith as a supervised child process too (micro and nano "
            "always are; so is a monolith with replicas or resources in nano.yaml).",
        ),
    ] = False,
    http_port: HttpPort = 8080,
) -> None:
    """Start a local NATS (JetStream on), provision the workflows and run them, in the mode
    of ./nano.yaml (or --mode)."""
    from nanoservice.deploy import MODES, DeployError, find_config, load_config, resolve
    from nanoservice.nats.connect import STATE_FILE
    from nanoservice.nats.local_server import NatsServerError, NatsServerNotFound
    from nanoservice.workflow.project import find_workflow_files, project_registry

    setup_logging(log_level, log_format)
    if mode is not None and mode not in MODES:
        raise die(f"--mode {mode}: use one of {', '.join(MODES)}", 2)
    try:
        loaded = load_config(find_config())
        registry = project_registry(nodes or [Path("nodes")])
        paths = find_workflow_files(files or [])
    except DeployError as exc:
        raise problems(exc) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    tables = run(_compile(paths, registry))
    deploy = loaded.config
    chosen: Mode = mode or deploy.mode  # a Mode: checked above
    try:
        groups = resolve(loaded, tables, chosen)
    except DeployError as exc:
        raise problems(exc) from None
    nats_url = nats_url or deploy.nats.url
    cluster = cluster or deploy.nats.cluster
    port = port if port is not None else deploy.nats.port
    sync_interval = sync_interval or deploy.durability.sync_interval
    supervised = supervise or chosen != "monolith" or _needs_child(groups[0])
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
                metrics_port=metrics_port,
                sd_file=data_dir / "prometheus" / "targets.json",
                stream_replicas=deploy.durability.stream_replicas,
                supervised=Supervised(
                    loaded, chosen, groups, nodes, log_level, data_dir, log_format
                )
                if supervised
                else None,
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


def _needs_child(group: ProcessGroup) -> bool:
    """A monolith with replicas or limits runs as supervised children."""
    limited = any(v is not None for v in group.resources.model_dump().values())
    return limited or not group.replicas.fixed or group.replicas.initial != 1


@dataclass(frozen=True)
class Supervised:
    """What ``nano up`` needs to run the groups of a mode as child processes."""

    loaded: LoadedConfig
    mode: Mode
    groups: list[ProcessGroup]
    nodes: list[Path] | None
    log_level: str
    data_dir: Path
    log_format: str = "text"

    def host_args(self) -> tuple[str, ...]:
        """Options every child host gets besides its steps: the log format, and metrics on
        a free port of its own, listed for Prometheus in the data folder."""
        return (
            "--log-format",
            self.log_format,
            "--metrics-port",
            "0",
            "--metrics-sd-dir",
            str(self.data_dir / "prometheus"),
        )


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
    metrics_port: int | None = None,
    sd_file: Path | None = None,
    stream_replicas: int | None = None,
    supervised: Supervised | None = None,
    http_port: int = 8080,
) -> None:
    from nanoservice.cli.bridge import start_triggers
    from nanoservice.cli.hosting import run_host
    from nanoservice.cli.reload import follow_files
    from nanoservice.nats.local_cluster import LocalCluster
    from nanoservice.nats.provision import provision
    from nanoservice.observe.host import HostObservability
    from nanoservice.observe.supervisor import SupervisorMetrics

    nc = await connect_nats(url, "nano up", reconnect_attempts)
    js = nc.jetstream()
    replicas = stream_replicas or (3 if isinstance(server, LocalCluster) else None)
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

    observe = HostObservability(  # as for NATS: the usual port, or any free one if taken
        metrics_port=DEFAULT_METRICS_PORT if metrics_port is None else metrics_port,
        any_port_if_taken=metrics_port is None,
        sd_file=sd_file,
    )
    triggers, http_lines = await start_triggers(  # bridge + console, requests, schedules
        nc, "127.0.0.1", http_port, metrics=observe.registry
    )
    banner = banner.replace("\n", f"\n{http_lines}\n", 1)
    try:
        if supervised is not None:
            # this process's own /metrics: the supervisor's restarts and replicas, the bridge
            lines = observe.start(None, [])
            sd_dir = supervised.data_dir / "prometheus"
            lines.append(f"hosts       one /metrics per process, listed in {sd_dir}/ (file_sd)")
            banner = "\n".join([banner, *lines])
            try:
                await _supervise(
                    nc,
                    url,
                    tables,
                    registry,
                    supervised,
                    banner,
                    grace,
                    targets,
                    publish,
                    SupervisorMetrics(observe.registry),
                )
            finally:
                await observe.stop()
            return
        await run_host(
            nc,
            tables,
            registry,
            None,
            banner=banner,
            grace=grace,
            replicas=replicas or 1,
            follow=follow,
            observe=observe,
        )
    finally:
        await triggers.stop()


async def _supervise(
    nc: NATS,
    url: str,
    tables: list[RoutingTable],
    registry: Registry,
    how: Supervised,
    banner: str,
    grace: float,
    targets: list[Path] | None,
    publish: Callable[[RoutingTable], Awaitable[None]],
    metrics: SupervisorMetrics | None = None,
) -> None:
    import asyncio

    from nanoservice.cli.reload import follow_files
    from nanoservice.cli.supervised import HostOptions, run_supervised
    from nanoservice.supervise.state import STATE_NAME

    async def follow(on_new: Callable[[RoutingTable], Awaitable[None]]) -> None:
        async def publish_and_place(table: RoutingTable) -> None:
            await publish(table)
            await on_new(table)

        await follow_files(targets or [Path("workflows")], registry, tables, publish_and_place, say)

    options = HostOptions(
        url,
        nodes=how.nodes or [Path("nodes")],
        log_level=how.log_level,
        grace=grace,
        extra_args=how.host_args(),
    )
    try:
        await run_supervised(
            nc,
            tables,
            how.groups,
            loaded=how.loaded,
            mode=how.mode,
            options=options,
            banner=banner,
            state_file=how.data_dir / STATE_NAME,
            say=say,
            follow=follow,
            metrics=metrics,
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)


def say(text: str) -> None:
    console.print(text, soft_wrap=True)


async def connect_nats(url: str, name: str, reconnect_attempts: int = -1) -> NATS:
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
