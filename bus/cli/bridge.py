"""``nano bridge``: the HTTP bridge, the request server and the scheduler, alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nanoservice.cli.common import NatsUrl, Reconnects, console, die, run, setup_logging
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from prometheus_client import CollectorRegistry

    from nanoservice.triggers.service import TriggerOptions, Triggers

__all__ = ["HttpHost", "HttpPort", "bridge_command"]

HttpHost = Annotated[str, typer.Option("--http-host", help="Address the bridge listens on.")]
HttpPort = Annotated[
    int, typer.Option("--http-port", help="HTTP port of the bridge (0: any free).")
]


def bridge_command(
    nats_url: NatsUrl = None,
    http_host: HttpHost = "127.0.0.1",
    http_port: HttpPort = 8080,
    max_body: Annotated[int, typer.Option(help="Largest request body, in bytes.")] = 1 << 20,
    max_in_flight: Annotated[
        int, typer.Option(help="Requests handled at once; more get 503 with Retry-After.")
    ] = 1000,
    schedules: Annotated[
        bool, typer.Option(help="Also run the workflows' schedules (exactly once per tick).")
    ] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    reconnect_attempts: Reconnects = -1,
) -> None:
    """Serve the workflows' HTTP routes, NATS requests and schedules (stateless: run several)."""
    from nanoservice.nats.connect import resolve_url
    from nanoservice.triggers.bridge import BridgeSettings
    from nanoservice.triggers.service import TriggerOptions

    setup_logging(log_level)
    if max_body < 1 or max_in_flight < 1:
        raise die("--max-body and --max-in-flight must be at least 1")
    options = TriggerOptions(
        host=http_host,
        port=http_port,
        schedules=schedules,
        settings=BridgeSettings(max_body=max_body, max_in_flight=max_in_flight),
    )
    run(_bridge(resolve_url(nats_url), options, reconnect_attempts))


async def _bridge(url: str, options: TriggerOptions, reconnect_attempts: int) -> None:
    import asyncio
    import signal

    from nanoservice.nats.connect import connect, wait_closed
    from nanoservice.triggers.service import Triggers

    try:
        nc = await connect(url, name="nano bridge", reconnect_attempts=reconnect_attempts)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    triggers = Triggers(nc, options)
    try:
        await triggers.start()
    except OSError as exc:
        await nc.close()
        raise NanoError(str(exc)) from None
    console.print(f"NATS        {url}")
    console.print(f"HTTP        {triggers.url}  (routes: {triggers.url}/openapi.json)")
    console.print("[green]ready[/green]: bridge running; Ctrl-C to stop", soft_wrap=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    closed = asyncio.ensure_future(wait_closed(nc))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((closed, stopped), return_when=asyncio.FIRST_COMPLETED)
    await triggers.stop()
    if closed.done():
        raise NanoError(f"connection to NATS closed for good ({closed.result()}); exiting")
    closed.cancel()
    stopped.cancel()
    await nc.close()
    console.print("[green]stopped[/green]")


async def start_triggers(
    nc: NATS, host: str, port: int, *, metrics: CollectorRegistry | None = None
) -> tuple[Triggers, str]:
    """For `nano up`: the bridge on ``port`` (8080 taken: any free port) with the console at
    ``/ui``, the request server and the scheduler; returns them (``.stop()`` them) and the
    banner lines. ``metrics``: count the bridge's requests there."""
    from nanoservice.triggers.service import TriggerOptions, Triggers

    def options(port: int) -> TriggerOptions:
        return TriggerOptions(host=host, port=port, console=True, metrics=metrics)

    triggers = Triggers(nc, options(port))
    try:
        await triggers.start()
    except OSError:
        if port != 8080:
            await triggers.stop()
            raise NanoError(f"port {port} is taken (pass another --http-port)") from None
        await triggers.stop()
        triggers = Triggers(nc, options(0))
        await triggers.start()
        return triggers, _lines(triggers, " (port 8080 is taken)")
    return triggers, _lines(triggers, "")


def _lines(triggers: Triggers, note: str) -> str:
    return f"HTTP        {triggers.url}{note}\nconsole     {triggers.url}/ui/"
