"""Request limits Starlette and uvicorn do not have: a streaming body limit, a body read
timeout, and a deadline for a request's headers (a client trickling bytes must not hold a
connection: uvicorn's keep-alive timer is cancelled by every byte received)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect, Request
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BodyTooLarge", "BodyTooSlow", "HeaderDeadlineProtocol", "protocol_with", "read_body"]


class BodyTooLarge(Exception):
    """The body is longer than the limit (found while streaming it, or by Content-Length)."""


class BodyTooSlow(Exception):
    """The body did not arrive within the read timeout."""


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, read chunk by chunk: stops at ``limit`` bytes, or after ``timeout``
    seconds in all, without buffering more than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    except ClientDisconnect:
        raise BodyTooSlow from None
    return b"".join(chunks)


class _HeaderDeadline:
    """A deadline for each request's headers, mixed into a uvicorn HTTP protocol.

    The deadline starts when the connection opens and again after each response; the
    connection is closed when the headers of the next request are not complete by then.
    """

    header_timeout: float = 10.0
    _deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()


class HeaderDeadlineProtocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the header deadline."""

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._disarm()


def _fast_protocol() -> type[Any] | None:
    """uvicorn's httptools protocol with the header deadline, if httptools is installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class FastHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._disarm()

    return FastHeaderDeadline


def protocol_with(header_timeout: float) -> type[Any]:
    """The protocol class for uvicorn (httptools where installed, else h11) with its own
    header deadline (uvicorn takes a class, not an object)."""
    base = _fast_protocol() or HeaderDeadlineProtocol
    return type("HeaderDeadline", (base,), {"header_timeout": header_timeout})
