"""What the CLI commands share: console output, options, running async code, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ..errors import NanoError, WorkflowError

__all__ = ["NatsUrl", "console", "die", "err_console", "run", "setup_logging"]

T = TypeVar("T")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        "-s",
        envvar="NATS_URL",
        help="NATS server URL(s), comma-separated (default: the one `nano up` "
        "started here, else nats://127.0.0.1:4222).",
    ),
]


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def die(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop where available; framework errors become clean exits."""
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
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(2) from None
    except NanoError as exc:
        raise die(str(exc)) from None
    except (ConnectionRefusedError, OSError, TimeoutError) as exc:
        if "connect" in str(exc).lower() or isinstance(exc, ConnectionRefusedError | TimeoutError):
            raise die(f"cannot reach NATS: {exc or type(exc).__name__}") from None
        raise
