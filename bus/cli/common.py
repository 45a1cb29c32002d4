"""What the CLI commands share: console output, options, running async code, errors."""

from __future__ import annotations

import os
import typing
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from nanoservice.errors import NanoError, WorkflowError

if TYPE_CHECKING:
    from nanoservice.workflow.table import RoutingTable

__all__ = [
    "TOKEN_RULE",
    "Files",
    "Grace",
    "LogFormat",
    "MetricsPort",
    "NatsUrl",
    "NodesDir",
    "Reconnects",
    "compile_one",
    "console",
    "die",
    "err_console",
    "problems",
    "run",
    "setup_logging",
]

T = TypeVar("T")

TOKEN_RULE = "use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
"""What :data:`nanoservice.subjects.TOKEN` allows, in words."""

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

Files = Annotated[
    list[Path] | None,
    typer.Argument(help="Workflow files or folders (default: ./workflows)."),
]

NodesDir = Annotated[
    list[Path] | None,
    typer.Option("--nodes", help="Local node folders (default: ./nodes)."),
]

LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format",
        help="text, or json: one JSON object per line (workflow, step, execution, attempt).",
    ),
]

MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: any free port).",
        show_default=False,
    ),
]

Grace = Annotated[
    float,
    typer.Option(
        "--grace",
        help="Seconds Ctrl-C (or SIGTERM) lets in-flight messages settle before stopping; "
        "a second Ctrl-C stops at once (unsettled messages are redelivered).",
    ),
]
Reconnects = Annotated[
    int,
    typer.Option(
        "--reconnect-attempts",
        help="Give up after this many failed reconnects to a server and exit 1, so a "
        "supervisor can restart the process (-1: keep trying forever).",
    ),
]

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        "-s",
        envvar="NATS_URL",
        help="NATS server URL(s), comma-separated (default: the one `nano up` in this folder "
        "uses, else nats://127.0.0.1:4222).",
    ),
]


def _display_type(param: Any, ctx: Any) -> str:
    """The value column of ``--help``: nothing for a flag, ``<path>...`` for a list."""
    if getattr(param, "is_flag", False):
        return ""
    if param.type_descriptor.is_list:
        (item,) = typing.get_args(param.type_descriptor.annotation)
        return f"<{getattr(item, '__name__', str(item)).lower()}>..."
    return str(_typer_display_type(param, ctx))


# typer prints `<bool>` for every flag (--help included) and `<list[Path]>` for lists.
_typer_display_type = typer.core._TyperParameter.display_type
typer.core._TyperParameter.display_type = _display_type  # type: ignore[assignment]


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr; every line logged while a step handles a message carries its
    workflow, step, execution and attempt (``fmt``: ``text`` or ``json``)."""
    if fmt not in ("text", "json"):
        raise die(f"--log-format: {fmt!r} is not one of text, json")
    from nanoservice.observe.logs import setup_logging as observe_logging

    observe_logging(level, "json" if fmt == "json" else "text")


def die(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def problems(exc: WorkflowError, code: int = 2) -> typer.Exit:
    """Print every problem of a workflow error, one line each with file and line."""
    for problem in exc.problems:
        err_console.print(f"[red]error:[/red] {escape(str(problem))}", soft_wrap=True)
    return typer.Exit(code)


def compile_one(file: Path, nodes: list[Path] | None) -> RoutingTable:
    """Compile one workflow file for a command, or exit with its problems."""
    from nanoservice.workflow.project import compile_files, project_registry

    try:
        (table,) = compile_files([file], project_registry(nodes or [Path("nodes")]))
    except WorkflowError as exc:
        raise problems(exc) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    return table


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop where available; framework errors become clean exits."""
    import asyncio

    from nats.errors import Error as NatsError

    if os.environ.get("PYTHONASYNCIODEBUG"):
        err_console.print(
            "[yellow]warning:[/yellow] PYTHONASYNCIODEBUG is set: asyncio debug "
            "mode makes everything several times slower"
        )
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    except WorkflowError as exc:
        raise problems(exc) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    except NatsError as exc:  # a safety net: commands turn the ones they expect into words
        raise die(f"NATS: {str(exc).removeprefix('nats: ') or type(exc).__name__}") from None
    except (ConnectionRefusedError, OSError, TimeoutError) as exc:
        if "connect" in str(exc).lower() or isinstance(exc, ConnectionRefusedError | TimeoutError):
            raise die(f"cannot reach NATS: {exc or type(exc).__name__}") from None
        raise
