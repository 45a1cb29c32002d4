"""``nano host``: one worker process, the steps it is given, against an existing NATS."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import (
    Files,
    Grace,
    LogFormat,
    MetricsPort,
    NatsUrl,
    NodesDir,
    Reconnects,
    die,
    run,
    setup_logging,
)
from nanoservice.cli.up import LogLevel, connect_nats
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nanoservice.observe.host import HostObservability
    from nanoservice.sdk.registry import Registry
    from nanoservice.workflow.table import RoutingTable

__all__ = ["host_command"]


def host_command(
    steps: Annotated[
        list[str] | None,
        typer.Option("--steps", help="Run only these: `workflow` or `workflow.step` (repeatable)."),
    ] = None,
    files: Files = None,
    nats_url: NatsUrl = None,
    nodes: NodesDir = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    metrics_port: MetricsPort = None,
    metrics_sd_dir: Annotated[
        Path | None,
        typer.Option(
            "--metrics-sd-dir",
            help="List this process's /metrics in a Prometheus file_sd file in this folder "
            "(named by its group and replica under `nano up`; removed on stop).",
            show_default=False,
        ),
    ] = None,
    reconnect_attempts: Reconnects = -1,
    grace: Grace = 10.0,
) -> None:
    """Run step consumers against an existing NATS (one process of nano/micro mode).

    Routing tables come from the server (stored there by `nano up` or by `nano host` given
    files), or from the workflow files given.
    """
    from nanoservice.nats.connect import resolve_url
    from nanoservice.workflow.project import compile_files, find_workflow_files, project_registry

    setup_logging(log_level, log_format)
    try:
        registry = project_registry(nodes or [Path("nodes")])
        tables = compile_files(find_workflow_files(files), registry) if files else None
    except NanoError as exc:
        raise die(str(exc)) from None
    if metrics_sd_dir is not None and metrics_port is None:
        raise die("--metrics-sd-dir needs --metrics-port (0: any free port)", 2)
    observe = _host_observability(metrics_port, metrics_sd_dir)
    run(_host(resolve_url(nats_url), tables, registry, steps, reconnect_attempts, grace, observe))


def _host_observability(port: int | None, sd_dir: Path | None) -> HostObservability:
    """Metrics on ``port``; with ``sd_dir``, the target listed in a file of its own there,
    named and labelled by the supervisor's ``NANO_GROUP``/``NANO_REPLICA`` (else the pid)."""
    import os

    from nanoservice.observe.host import HostObservability

    if sd_dir is None:
        return HostObservability(metrics_port=port)
    group, replica = os.environ.get("NANO_GROUP"), os.environ.get("NANO_REPLICA")
    process = f"{group}/{replica}" if group and replica else f"host-{os.getpid()}"
    name = process.replace("/", "-")
    return HostObservability(
        metrics_port=port, sd_file=sd_dir / f"{name}.json", sd_labels={"process": process}
    )


async def _host(
    url: str,
    tables: list[RoutingTable] | None,
    registry: Registry,
    steps: list[str] | None,
    reconnect_attempts: int = -1,
    grace: float = 10.0,
    observe: HostObservability | None = None,
) -> None:
    from nanoservice.nats.provision import load_tables, provision

    nc = await connect_nats(url, "nano host", reconnect_attempts)
    if tables is None:
        tables = list((await load_tables(nc.jetstream())).values())
        if not tables:
            raise NanoError(f"no routing tables on {url}; run `nano up` or pass workflow files")
    else:
        for table in tables:
            await provision(nc.jetstream(), table)
    from nanoservice.cli.hosting import run_host

    await run_host(
        nc, tables, registry, steps, banner=f"NATS        {url}", grace=grace, observe=observe
    )
