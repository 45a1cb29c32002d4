"""Opening NATS connections with the settings a long-running host needs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

__all__ = ["DEFAULT_URL", "STATE_FILE", "connect", "resolve_url"]

DEFAULT_URL = "nats://127.0.0.1:4222"
STATE_FILE = Path(".nano") / "url"
"""Where ``nano up`` writes the URL of the server it started, for the other commands."""

log = logging.getLogger("nanoservice.nats.connect")


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
    url: str, *, name: str = "nanoservice", connect_timeout: float = 5.0, reconnect: bool = True
) -> NATS:
    """Connect, reconnecting forever (hosts ride out server restarts) unless told not to."""

    async def on_error(exc: Exception) -> None:
        if client:  # errors of the first connect are raised, not logged
            log.warning("NATS error: %s", exc)

    client: list[NATS] = []

    async def on_disconnect() -> None:
        if reconnect and client and not (client[0].is_closed or client[0].is_draining):
            log.warning("disconnected from NATS; reconnecting")

    async def on_reconnect() -> None:
        log.info("reconnected to NATS")

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
    )
    nc.options["max_reconnect_attempts"] = -1 if reconnect else 0
    nc.options["allow_reconnect"] = reconnect
    client.append(nc)
    return nc
