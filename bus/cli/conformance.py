"""``nano conformance --cmd "..."``: check a node host against the wire protocol."""

from __future__ import annotations

from typing import Annotated

import typer

from nanoservice.cli.common import console, die, run

__all__ = ["conformance_command"]


def conformance_command(
    cmd: Annotated[
        str,
        typer.Option(
            "--cmd",
            help="Shell command starting the host under test; it gets NATS_URL and "
            "NANO_STEPS (workflow.step, comma-separated) in its environment.",
        ),
    ],
    scenario: Annotated[
        list[str] | None, typer.Option("--scenario", help="Run only these scenarios.")
    ] = None,
) -> None:
    """Run the fixed scenarios (docs/protocol.md, Conformance) on a real server."""
    from nanoservice.conformance.runner import run_conformance
    from nanoservice.conformance.scenarios import SCENARIOS

    unknown = sorted(set(scenario or []) - set(SCENARIOS))
    if unknown:
        raise die(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})", code=2)

    def show(name: str, ok: bool, text: str) -> None:
        console.print(f"{'pass' if ok else 'FAIL'}  {name}: {text}", soft_wrap=True, markup=False)

    from nanoservice.nats.local_server import NatsServerError, NatsServerNotFound

    try:
        report = run(run_conformance(cmd, scenario or None, show))
    except (NatsServerError, NatsServerNotFound) as exc:
        raise die(str(exc).splitlines()[0]) from None
    failed = sum(not ok for _, ok, _ in report.results)
    console.print(
        f"{len(report.results)} scenarios: {len(report.results) - failed} passed, {failed} failed"
    )
    raise typer.Exit(1 if failed else 0)
