"""Shared fixtures: a real nats-server per test (free ports, temp store dir) and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from nanoservice.nats.local_server import LocalServer, ServerOptions


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A started nats-server with JetStream, stopped after the test."""
    with LocalServer(ServerOptions(store_dir=tmp_path / "nats")) as server:
        yield server


@pytest.fixture
def nats_url(nats_server: LocalServer) -> str:
    """Client URL of :func:`nats_server`."""
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A connected nats-py client, closed after the test."""
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()
