"""``nano console``: the web console on its own (the HTTP bridge serves it at /ui too)."""

from __future__ import annotations

from typing import Annotated

import typer

from nanoservice.cli.common import NatsUrl, die, run
from nanoservice.errors import NanoError

__all__ = ["console_command"]


def console_command(
    nats_url: NatsUrl = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; any address but loopback needs --token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8090,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="NANO_CONSOLE_TOKEN",
            help="Require this token (open the printed address once; it sets a cookie).",
        ),
    ] = None,
    history: Annotated[
        float,
        typer.Option(help="Seconds of past executions to list at start."),
    ] = 3600.0,
) -> None:
    """Serve the web console: workflows, live executions, traces, dead letters."""
    from nanoservice.cli.common import setup_logging
    from nanoservice.console.security import is_loopback
    from nanoservice.nats.connect import resolve_url

    if not is_loopback(host) and not token:
        raise die(f"--token is required to listen on {host} (not a loopback address)", code=2)
    if not 0 <= port <= 65535:
        raise die(f"invalid --port {port}: use 0-65535", code=2)
    if token is not None and not token.strip():
        raise die("--token is empty", code=2)
    setup_logging("warning")
    run(_serve(resolve_url(nats_url), host, port, token, history))


async def _serve(url: str, host: str, port: int, token: str | None, history: float) -> None:
    import asyncio
    import contextlib
    import signal
    import socket

    import uvicorn

    from nanoservice.console import MOUNT, open_console, standalone
    from nanoservice.nats.connect import connect

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:  # create_server adds the address to the reason: keep the reason
        reason = (exc.strerror or str(exc)).split(" (while attempting", 1)[0]
        raise NanoError(f"cannot listen on {host}:{port}: {reason}") from None
    try:
        nc = await connect(url, name="nano console")
    except Exception as exc:
        sock.close()
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        async with open_console(nc, token=token, history=history) as console:
            config = uvicorn.Config(
                standalone(console),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
            server = uvicorn.Server(config)

            def stop() -> None:  # Ctrl-C or SIGTERM: stop serving, exit 0; twice: at once
                server.force_exit = server.should_exit
                server.should_exit = True

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop)
            shown = f"[{host}]" if ":" in host else host
            address = f"http://{shown}:{sock.getsockname()[1]}{MOUNT}/"
            print(f"console     {address}{f'?token={token}' if token else ''}", flush=True)
            print(f"NATS        {url}", flush=True)
            await server._serve(sockets=[sock])  # serve() minus uvicorn's own signal capture
    finally:
        sock.close()
        with contextlib.suppress(Exception):  # the server may be gone
            await nc.close()
