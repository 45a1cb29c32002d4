"""The header deadline on both of uvicorn's HTTP protocols (httptools and pure-Python h11):
a client trickling its request headers is disconnected; a prompt one is served, also on a
kept-alive connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nanoservice.triggers.limits import HeaderDeadlineProtocol, _fast_protocol

PROTOCOLS = {"h11": HeaderDeadlineProtocol, "httptools": _fast_protocol()}


@contextlib.asynccontextmanager
async def serving(protocol: type[Any]) -> AsyncIterator[int]:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", ok)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    timed = type("Timed", (protocol,), {"header_timeout": 0.5})
    server = uvicorn.Server(
        uvicorn.Config(app, http=timed, lifespan="off", log_level="warning", timeout_keep_alive=5)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _closed_while_trickling(port: int, prefix: bytes = b"") -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if prefix:
            writer.write(prefix)
            await reader.readuntil(b"ok")
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
            if reader.at_eof():
                return True
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionError:
        return True
    finally:
        writer.close()


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
async def test_trickling_headers_are_cut_off_and_prompt_requests_served(name: str) -> None:
    protocol = PROTOCOLS[name]
    if protocol is None:
        pytest.skip("httptools is not installed")
    async with serving(protocol) as port:
        assert await _closed_while_trickling(port)
        # after a prompt request on the same connection, the deadline starts again
        assert await _closed_while_trickling(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):  # kept alive across requests sent at once
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"ok"), 2)
        writer.close()
