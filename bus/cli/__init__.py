"""The ``nano`` command line."""

from __future__ import annotations

import typer

from nanoservice.cli.ops import cancel_command, graph_command
from nanoservice.cli.publish import publish_command
from nanoservice.cli.up import host_command, up_command
from nanoservice.cli.workflows import compile_command, validate_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="nano",
    help="nanoservice: event-streaming dataflow on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(up_command)
app.command("host")(host_command)
app.command("publish")(publish_command)
app.command("validate")(validate_command)
app.command("compile")(compile_command)
app.command("graph")(graph_command)
app.command("cancel")(cancel_command)


def main() -> None:
    app()
