"""The trigger processes' life: the HTTP bridge (uvicorn, in the caller's event loop), the
request server and the scheduler, on one NATS connection. ``nano bridge`` runs it alone,
``nano up`` next to its host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from dataclasses import dataclass, field

import uvicorn
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware

from nanoservice.console.app import Console
from nanoservice.nats.client import Client
from nanoservice.nats.results import Results
from nanoservice.observe.http import HttpMetrics
from nanoservice.triggers.bridge import BridgeSettings, build_app
from nanoservice.triggers.limits import protocol_with
from nanoservice.triggers.requests import RequestServer
from nanoservice.triggers.schedule import Scheduler
from nanoservice.triggers.tables import StoredTables

__all__ = ["TriggerOptions", "Triggers"]

log = logging.getLogger("nanoservice.triggers")


@dataclass(frozen=True)
class TriggerOptions:
    """What to run and where."""

    host: str = "127.0.0.1"
    port: int = 8080
    """HTTP port (0: any free one); ``http=False`` runs no bridge."""
    http: bool = True
    requests: bool = True
    schedules: bool = True
    settings: BridgeSettings = field(default_factory=BridgeSettings)
    keep_alive: float = 5.0
    console: bool = False
    """Serve the web console at ``/ui`` too (docs/console.md)."""
    console_token: str | None = None
    metrics: CollectorRegistry | None = None
    """Count requests by route and status in this registry (``nano_http_*``)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Triggers:
    """Start with :meth:`start` (returns once everything listens), stop with :meth:`stop`."""

    def __init__(self, nc: NATS, options: TriggerOptions | None = None) -> None:
        self.nc, self.options = nc, options or TriggerOptions()
        self.results = Results(nc)
        self.client = Client(nc, results=self.results)
        self.tables = StoredTables(nc)
        self.scheduler = Scheduler(nc, self.tables)
        self.requests = RequestServer(
            self.client, self.tables, max_in_flight=self.options.settings.max_in_flight
        )
        self.url: str | None = None
        self.console: Console | None = None
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        opts = self.options
        await self.results.start()
        await self.tables.start()
        if opts.requests:
            await self.requests.start()
        if opts.schedules:
            self.tables.on_change(self.scheduler.refresh)
            self.scheduler.refresh()
        if opts.http:
            await self._start_http()

    async def _start_http(self) -> None:
        opts = self.options
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((opts.host, opts.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from None
        sock.listen(2048)
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        mounts = []
        if opts.console:
            self.console = Console(self.nc, token=opts.console_token)
            await self.console.start()
            mounts.append(self.console.mount())
        middleware = (
            [Middleware(HttpMetrics, registry=opts.metrics)] if opts.metrics is not None else []
        )
        app = build_app(
            self.client, self.tables, opts.settings, middleware=middleware, mounts=mounts
        )
        config = uvicorn.Config(
            app,
            http=protocol_with(opts.settings.header_timeout),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=int(opts.keep_alive),
            backlog=2048,
        )
        self._server = _Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.01)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._serving, grace)
            except (TimeoutError, asyncio.CancelledError):
                self._server.force_exit = True
        if self.console is not None:
            await self.console.stop()
        await self.requests.stop()
        await self.scheduler.stop()
        await self.tables.stop()
        await self.results.close()
