"""The bridge while NATS is down: 503 at once, never a hang; ready again after."""

from __future__ import annotations

import asyncio

import httpx

from nanoservice.nats.local_server import LocalServer
from nanoservice.triggers.service import TriggerOptions
from tests.integration.triggers_support import workflows

ECHO = """
name: echo
trigger:
  http: {path: /echo}
steps:
  say: {node: log}
"""


async def test_nats_down_is_503_at_once_and_readyz_says_so(nats_server: LocalServer) -> None:
    options = TriggerOptions(port=0, schedules=False)
    async with workflows(nats_server.url, [ECHO], options) as (nc, _, triggers):
        assert triggers is not None and triggers.url is not None
        async with httpx.AsyncClient(base_url=triggers.url, timeout=10) as http:
            assert (await http.post("/echo", json={"a": 1})).json() == {"a": 1}
            nats_server.stop()
            for _ in range(100):  # the client notices the lost connection
                if not nc.is_connected:
                    break
                await asyncio.sleep(0.05)
            down = await asyncio.wait_for(http.post("/echo", json={"a": 2}), 2)
            assert down.status_code == 503
            assert "NATS is not connected" in down.json()["error"]
            assert down.headers["retry-after"] == "1"
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/healthz")).status_code == 200
            nats_server.start()
            for _ in range(200):
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await http.post("/echo", json={"a": 3})).json() == {"a": 3}
