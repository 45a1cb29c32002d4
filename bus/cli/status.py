"""``nano status``: workflows, their streams and each step's consumer; ``--watch`` live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import NatsUrl, console, die, run
from nanoservice.cli.debug_common import Json, print_json, session, short

if TYPE_CHECKING:
    from rich.console import Group

    from nanoservice.inspect.status import Status

__all__ = ["render_status", "status_command"]


def status_command(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    as_json: Json = False,
    nats_url: NatsUrl = None,
) -> None:
    """Show workflows (live revision), streams (messages, bytes, age) and step consumers."""
    from nanoservice.nats.connect import resolve_url

    if interval <= 0:
        raise die(f"--interval must be a positive number of seconds, not {interval:g}")
    if watch and as_json:
        raise die("--watch refreshes a table; it does not go with --json")
    run(_status(resolve_url(nats_url), watch, interval, as_json))


async def _status(url: str, watch: bool, interval: float, as_json: bool) -> None:
    import asyncio
    import contextlib
    import signal

    from rich.live import Live

    from nanoservice.inspect.status import snapshot, with_rates
    from nanoservice.nats.provision import load_tables

    async with session(url, "nano status") as s:
        current = await snapshot(s.nc, s.tables)
        if not watch:
            if as_json:
                print_json(current.to_json())
            else:
                console.print(render_status(current))
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with Live(render_status(current), console=console, auto_refresh=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                s.tables = await load_tables(s.nc.jetstream())
                current = with_rates(current, await snapshot(s.nc, s.tables))
                live.update(render_status(current), refresh=True)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.1f}{unit}"
    return f"{seconds:.0f}s"


def render_status(status: Status) -> Group:
    """A headline per workflow and a table of its step consumers."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    parts: list[Table | Text] = []
    if not status.workflows:
        parts.append(Text("no workflows on this server (run `nano up`)"))
    for wf in status.workflows:
        if wf.missing:
            parts.append(Text(f"{wf.workflow}: stream {wf.stream} not found (not provisioned)"))
            continue
        parts.append(
            Text.from_markup(
                f"[bold]{escape(wf.workflow)}[/bold]  revision {short(wf.revision)}  "
                f"stream {wf.stream}: {wf.messages} messages, {_size(wf.bytes)}, "
                f"oldest {_age(wf.age)}, dead letters {wf.dead_letters}"
            )
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in (
            "  step",
            "pending",
            "ack pending",
            "redelivered",
            "waiting pulls",
            "rate/s",
        ):
            table.add_column(column, justify="left" if column == "  step" else "right")
        for c in wf.steps:
            rate = f"{c.rate:.1f}" if c.rate is not None else "-"
            table.add_row(
                "  " + escape(c.step),
                str(c.pending),
                str(c.ack_pending),
                str(c.redelivered),
                str(c.pulling),
                rate,
            )
        parts.append(table)
    return Group(*parts)
