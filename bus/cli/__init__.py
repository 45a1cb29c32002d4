"""The ``nano`` command line.

Command modules import only typer, rich and the small error types at module level; NATS,
the host and the compiler are imported inside the commands that use them, so ``nano
--help`` and ``nano --version`` start fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nanoservice.cli.bridge import bridge_command
from nanoservice.cli.conformance import conformance_command
from nanoservice.cli.console import console_command
from nanoservice.cli.debug import tail_command, trace_command
from nanoservice.cli.debug_replay import replay_command
from nanoservice.cli.deploy import deploy_app
from nanoservice.cli.dlq import dlq_app
from nanoservice.cli.host import host_command
from nanoservice.cli.new import new_app
from nanoservice.cli.nodes import nodes_app
from nanoservice.cli.ops import cancel_command, graph_command
from nanoservice.cli.ps import ps_command
from nanoservice.cli.publish import publish_command
from nanoservice.cli.status import status_command
from nanoservice.cli.up import up_command
from nanoservice.cli.workflows import compile_command, validate_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="nano",
    help="nanoservice: event-streaming dataflow on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from nanoservice import __version__

        print(f"nano (nanoservice-py) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """nanoservice: event-streaming dataflow on NATS JetStream."""


app.command("up")(up_command)
app.command("host")(host_command)
app.command("bridge")(bridge_command)
app.command("publish")(publish_command)
app.command("validate")(validate_command)
app.command("compile")(compile_command)
app.command("graph")(graph_command)
app.command("cancel")(cancel_command)
app.command("trace")(trace_command)
app.command("replay")(replay_command)
app.command("tail")(tail_command)
app.command("status")(status_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(deploy_app, name="deploy")
app.command("ps")(ps_command)
app.command("console")(console_command)
app.add_typer(new_app, name="new")
app.add_typer(nodes_app, name="nodes")
app.command("conformance")(conformance_command)


def main() -> None:
    app()
