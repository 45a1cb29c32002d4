"""Opening NATS connections with the settings a long-running host needs."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

from nanoservice.nats import headers

__all__ = ["DEFAULT_URL", "STATE_FILE", "closed_reason", "connect", "resolve_url", "wait_closed"]

DEFAULT_URL = "nats://127.0.0.1:4222"
STATE_FILE = Path(".nano") / "url"
"""Where ``nano up`` writes the URL of the server it started, for the other commands."""

log = logging.getLogger("nanoservice.nats.connect")

_closed: weakref.WeakKeyDictionary[NATS, asyncio.Event] = weakref.WeakKeyDictionary()


def resolve_url(url: str | None = None) -> str:
    """``--nats-url``, else ``$NATS_URL``, else the server ``nano up`` started here, else 4222."""
    if url:
        return url
    if os.environ.get("NATS_URL"):
        return os.environ["NATS_URL"]
    if STATE_FILE.is_file():
        return STATE_FILE.read_text().strip()
    return DEFAULT_URL


async def connect(
    url: str,
    *,
    name: str = "nanoservice",
    connect_timeout: float = 5.0,
    reconnect: bool = True,
    reconnect_attempts: int = -1,
) -> NATS:
    """Connect, reconnecting forever (hosts ride out server restarts) unless told not to.

    ``reconnect_attempts`` > 0 gives up after that many failed reconnects per server; the
    connection is then closed for good (see :func:`wait_closed`).
    """

    async def on_error(exc: Exception) -> None:
        if client:  # errors of the first connect are raised, not logged
            log.warning("NATS error: %s", exc)

    client: list[NATS] = []

    async def on_disconnect() -> None:
        if reconnect and client and not (client[0].is_closed or client[0].is_draining):
            log.warning("disconnected from NATS; reconnecting")

    async def on_reconnect() -> None:
        log.info("reconnected to NATS")

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    # The first connect gives up after two rounds over the servers (nats-py would otherwise
    # retry forever); once connected, a host reconnects forever.
    nc = await nats.connect(
        servers=url.split(","),
        name=name,
        connect_timeout=connect_timeout,
        allow_reconnect=True,
        max_reconnect_attempts=2,
        reconnect_time_wait=0.5,
        pending_size=8 * 1024 * 1024,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        closed_cb=on_closed,
    )
    nc.options["max_reconnect_attempts"] = reconnect_attempts if reconnect else 0
    nc.options["allow_reconnect"] = reconnect
    headers.install(nc)  # the engine's header parser: same result, a fraction of the cost
    client.append(nc)
    _closed[nc] = closed
    return nc


async def wait_closed(nc: NATS) -> str:
    """Wait until ``nc`` is closed for good (not merely disconnected); returns why."""
    closed = _closed.get(nc)
    if closed is None:
        raise ValueError("wait_closed() needs a connection opened by connect()")
    await closed.wait()
    return closed_reason(nc)


def closed_reason(nc: NATS) -> str:
    """Why a closed connection closed, as far as nats-py knows."""
    error = nc.last_error
    if error is None:
        return "closed"
    text = str(error) or type(error).__name__
    return text.removeprefix("nats: ")
