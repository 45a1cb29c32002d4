"""The console: its state (NATS connection, tables, status, live hub) and its apps.

``open_console(nc)`` starts a :class:`Console` on a connection someone else owns; the HTTP
bridge adds ``console.mount()`` (``/ui``) to its routes. ``standalone(console)`` is the app
of ``nano console``: the console at ``/ui`` and nothing else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client as NATS
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nanoservice.console.hub import Hub
from nanoservice.console.render import environment
from nanoservice.console.security import Guard, TokenMiddleware
from nanoservice.inspect.status import Status, snapshot, with_rates
from nanoservice.nats.provision import load_tables
from nanoservice.workflow.table import RoutingTable

__all__ = ["MOUNT", "Console", "NatsUnavailable", "open_console", "standalone"]

MOUNT = "/ui"
"""Where the console is served (by ``nano console``, and by the bridge)."""

_TABLES_TTL = 2.0
_STATUS_TTL = 1.0

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Console:
    """Everything a page needs, over one NATS connection."""

    def __init__(
        self,
        nc: NATS,
        *,
        token: str | None = None,
        keep: int = 500,
        history: float = 3600.0,
    ) -> None:
        self.nc, self.token = nc, token
        self.env = environment()
        self.guard = Guard()
        self.hub = Hub(nc, lambda: self._tables, keep=keep, history=history)
        self._tables: dict[str, RoutingTable] = {}
        self._tables_at = 0.0
        self._status: Status | None = None
        self._rated: Status | None = None
        self.app: ASGIApp = self._build()

    def _build(self) -> ASGIApp:
        from nanoservice.console.pages import routes

        middleware = [Middleware(_Headers)]
        if self.token:
            middleware.append(Middleware(TokenMiddleware, token=self.token))
        return Starlette(routes=routes(self), middleware=middleware)

    def mount(self, path: str = MOUNT) -> Mount:
        """The console as a route, for an app that serves more (the HTTP bridge)."""
        return Mount(path, app=self.app)

    async def start(self) -> None:
        await self.tables(fresh=True)
        await self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()

    def need_nats(self) -> None:
        """Fail fast, with :class:`NatsUnavailable`, while the connection is down."""
        if not self.nc.is_connected:
            raise NatsUnavailable("not connected to NATS (reconnecting); this page needs it")

    async def tables(self, *, fresh: bool = False) -> dict[str, RoutingTable]:
        """The stored routing tables, re-read at most every two seconds (while NATS is
        down, the last ones read)."""
        if not self.nc.is_connected and self._tables_at and not fresh:
            return self._tables
        if fresh or time.monotonic() - self._tables_at > _TABLES_TTL:
            self._tables = await load_tables(self.nc.jetstream())
            self._tables_at = time.monotonic()
        return self._tables

    async def status(self) -> Status:
        """A status snapshot (at most one a second), with rates since the previous one."""
        if self._rated is not None and time.time() - self._rated.time < _STATUS_TTL:
            return self._rated
        self.need_nats()
        current = await snapshot(self.nc, await self.tables())
        previous, self._status = self._status, current
        self._rated = with_rates(previous, current) if previous is not None else current
        return self._rated

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        """A template as an HTML response; ``base`` is where the console is mounted."""
        base = request.scope.get("root_path", "").rstrip("/")
        html = self.env.get_template(name).render(base=base, **context)
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")


class NatsUnavailable(Exception):
    """A page needs NATS and the connection is down."""


class _Headers:
    """Security headers on every response: nothing but the console's own origin loads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


@contextlib.asynccontextmanager
async def open_console(
    nc: NATS, *, token: str | None = None, keep: int = 500, history: float = 3600.0
) -> AsyncIterator[Console]:
    """A started console on ``nc`` (which stays the caller's); mount ``console.app``."""
    console = Console(nc, token=token, keep=keep, history=history)
    await console.start()
    try:
        yield console
    finally:
        await console.stop()


def standalone(console: Console) -> Starlette:
    """The app of ``nano console``: the console at ``/ui``, ``/`` redirecting there."""

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{MOUNT}/", status_code=307)

    return Starlette(routes=[Route("/", home), console.mount()])
