"""``nano deploy``: render manifests (k8s, compose, systemd), apply a project to a NATS
server, and the probe the rendered manifests run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import (
    Files,
    NatsUrl,
    NodesDir,
    console,
    die,
    err_console,
    problems,
    run,
)
from nanoservice.errors import NanoError, WorkflowError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.workflow.table import RoutingTable

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    help="Production deployment: manifests for k8s, compose, systemd; provisioning.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _tables(files: list[Path] | None, nodes: list[Path] | None) -> list[RoutingTable]:
    from nanoservice.workflow.project import compile_files, find_workflow_files, project_registry

    try:
        return compile_files(
            find_workflow_files(files or []), project_registry(nodes or [Path("nodes")])
        )
    except WorkflowError as exc:
        raise problems(exc) from None
    except NanoError as exc:
        raise die(str(exc)) from None


@deploy_app.command("render")
def render_command(
    target: Annotated[str, typer.Option("--target", "-t", help="k8s, compose or systemd.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files to.")],
    files: Files = None,
    mode: Annotated[
        str | None,
        typer.Option(help="monolith, micro or nano (default: nano.yaml's mode)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="The nano.yaml to use (default: ./nano.yaml).")
    ] = None,
    image: Annotated[
        str, typer.Option(help="Container image of the project (k8s, compose).")
    ] = "nano-project:latest",  # DEFAULT_IMAGE (the module is not loaded at import)
    project: Annotated[
        str | None, typer.Option(help="Name prefix of every object (default: this folder's).")
    ] = None,
    nodes: NodesDir = None,
) -> None:
    """Write the deployment files of one target for the groups of a mode."""
    from nanoservice.deploy import MODES, DeployError, find_config, load_config
    from nanoservice.deploy.render import DEFAULT_IMAGE, TARGETS, plan, render, write

    if target not in TARGETS:
        raise die(f"--target: unknown target '{target}' (one of: {', '.join(TARGETS)})")
    if mode is not None and mode not in MODES:
        raise die(f"--mode: unknown mode '{mode}' (one of: {', '.join(MODES)})")
    if config is not None and not config.is_file():
        raise die(f"--config: no file {config}")
    tables = _tables(files, nodes)
    try:
        loaded = load_config(config or find_config())
        the_plan = plan(
            loaded,
            tables,
            mode=mode,
            project=project or Path.cwd().name,
            image=image,
        )
    except DeployError as exc:
        raise problems(exc) from None
    try:
        written = write(render(target, the_plan), out)
    except OSError as exc:
        raise die(f"--out: cannot write to {out}: {exc.strerror or exc}") from None
    if target != "systemd" and image == DEFAULT_IMAGE:
        err_console.print(
            f"[yellow]warning:[/yellow] no --image: the manifests run {DEFAULT_IMAGE}; "
            "pass --image REGISTRY/NAME:VERSION",
            soft_wrap=True,
        )
    console.print(
        f"{target}: {len(the_plan.groups)} groups (mode {the_plan.mode}), "
        f"{len(written)} files in {out}"
    )
    for path in written:
        console.print(f"  {path}")


@deploy_app.command("apply")
def apply_command(
    files: Files = None,
    nats_url: NatsUrl = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="Replicas of every stream (default: the workflow's, 1).", min=1, max=5),
    ] = None,
    nodes: NodesDir = None,
) -> None:
    """Provision streams, consumers and routing tables on a NATS server (idempotent)."""
    from nanoservice.nats.connect import resolve_url

    tables = _tables(files, nodes)
    url = resolve_url(nats_url)
    run(_apply(url, tables, replicas))


async def _apply(url: str, tables: list[RoutingTable], replicas: int | None) -> None:
    from nanoservice.nats.apply import apply, summary

    nc = await _connect(url)
    try:
        changes = await apply(nc.jetstream(), tables, replicas=replicas)
    finally:
        await nc.close()
    for change in changes:
        console.print(str(change))
    console.print(f"{url}: {summary(changes)}")


async def _connect(url: str) -> NATS:
    from nanoservice.nats.connect import connect

    try:
        return await connect(url, name="nano deploy", reconnect=False, connect_timeout=3.0)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None


@deploy_app.command("probe")
def probe_command(
    steps: Annotated[
        list[str] | None,
        typer.Option("--steps", help="`workflow.step` whose consumer must exist (repeatable)."),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Health probe: NATS answers and the steps' consumers exist (exit 0), else exit 1."""
    from nanoservice.nats.connect import resolve_url

    url = resolve_url(nats_url)
    missing = run(_probe(url, steps or []))
    if missing:
        raise die(f"not ready: {missing}")
    console.print("ok")


async def _probe(url: str, steps: list[str]) -> str:
    from nats.js.errors import NotFoundError

    from nanoservice.nats.provision import load_tables

    nc = await _connect(url)
    try:
        js = nc.jetstream()
        tables = await load_tables(js)
        if not tables:
            return f"no routing tables on {url} (run `nano deploy apply`)"
        wanted = steps or [f"{t.workflow}.{s}" for t in tables.values() for s in t.steps]
        for step in wanted:
            workflow, _, name = step.partition(".")
            table = tables.get(workflow)
            if table is None or (name and name not in table.steps):
                return f"no step {step} in the routing tables on {url}"
            for route in table.steps.values() if not name else [table.steps[name]]:
                try:
                    await js.consumer_info(table.stream.name, route.consumer)
                except NotFoundError:
                    return f"no consumer {route.consumer} on stream {table.stream.name}"
        return ""
    finally:
        await nc.close()
