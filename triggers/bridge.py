"""The HTTP bridge: a Starlette app that starts workflows and answers with their outcome.

Stateless (several can run behind a load balancer): every request becomes an execution
through :class:`~nanoservice.nats.client.Client`, and results are awaited through the
process's one pair of outcome subscriptions (:class:`~nanoservice.nats.results.Results`).
:func:`build_app` is the one place the app is put together (middleware goes there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nanoservice import subjects
from nanoservice.nats.client import LOST, NOT_STORED, Client, NoOutcome, Outcome
from nanoservice.observe.http import ROUTE
from nanoservice.triggers.cloudevents import cloudevent
from nanoservice.triggers.inputs import BadInput, build_input, header_field, schema_problems
from nanoservice.triggers.limits import BodyTooLarge, BodyTooSlow, read_body
from nanoservice.triggers.openapi import openapi
from nanoservice.triggers.routes import Routes, Target
from nanoservice.workflow.table import RoutingTable

__all__ = ["REQUEST_ID", "BridgeSettings", "build_app"]

log = logging.getLogger("nanoservice.triggers.bridge")

REQUEST_ID = "x-request-id"
"""A request header whose value (a subject token) becomes the execution id."""
EXECUTION_HEADER = "Nano-Execution"


@dataclass(frozen=True)
class BridgeSettings:
    """Limits of one bridge process."""

    max_body: int = 1 << 20
    """Bytes a request body may have (413 beyond, found while streaming it)."""
    body_timeout: float = 10.0
    """Seconds the whole body may take to arrive (408 after)."""
    header_timeout: float = 10.0
    """Seconds a request's headers may take (the connection is closed after)."""
    max_in_flight: int = 1000
    """Requests handled at once; more get 503 with ``Retry-After`` instead of queueing."""
    retry_after: int = 1
    """Seconds a client is told to wait after a 503."""


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {EXECUTION_HEADER: extra["execution"]} if "execution" in extra else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _unavailable(message: str, settings: BridgeSettings) -> JSONResponse:
    response = _error(503, message)
    response.headers["Retry-After"] = str(settings.retry_after)
    return response


class _Bridge:
    def __init__(
        self,
        client: Client,
        tables: Callable[[], Sequence[RoutingTable]],
        settings: BridgeSettings,
    ) -> None:
        self.client, self.tables, self.settings = client, tables, settings
        self.in_flight = 0
        self._routes = Routes([])

    @property
    def routes(self) -> Routes:
        tables = self.tables()
        if tuple((t.workflow, t.revision) for t in tables) != self._routes.key:
            self._routes = Routes(tables)
            for conflict in self._routes.conflicts:
                log.warning("%s", conflict)
        return self._routes

    # -- the bridge's own endpoints --------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if not self.client.nc.is_connected:
            return _unavailable("NATS is not connected", self.settings)
        if not self.routes.targets:
            return _unavailable("no workflow has an HTTP route yet", self.settings)
        return JSONResponse({"status": "ready", "routes": len(self.routes.targets)})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi(self.routes.targets))

    async def execution(self, request: Request) -> Response:
        execution = request.path_params["execution"]
        if not subjects.is_valid_token(execution):
            return _error(400, f"invalid execution id {execution[:80]!r}")
        if not self.client.nc.is_connected:
            return _unavailable("NATS is not connected", self.settings)
        wanted = request.query_params.get("workflow")
        try:
            for table in self.tables():
                if wanted and table.workflow != wanted:
                    continue
                outcome = await self.client.stored(table.workflow, execution)
                if outcome is not None:
                    return JSONResponse(_status_body(table.workflow, outcome))
                if await self.client.started(table.workflow, execution):
                    return JSONResponse(
                        {"execution": execution, "workflow": table.workflow, "status": "running"}
                    )
        except Exception as exc:
            return _unavailable(f"cannot ask NATS: {exc or type(exc).__name__}", self.settings)
        return _error(404, f"no execution {execution}", execution=execution)

    # -- workflow routes ------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        match = self.routes.match(request.method, request.url.path)
        request.scope[ROUTE] = match.target.route.path if match.target else "unmatched"
        if match.target is None:
            if match.allowed:
                response = _error(405, f"{request.method} is not allowed on {request.url.path}")
                response.headers["Allow"] = ", ".join(match.allowed)
                return response
            return _error(404, f"no route {request.url.path}")
        if self.in_flight >= self.settings.max_in_flight:
            return _unavailable("overloaded: too many requests in flight", self.settings)
        if not self.client.nc.is_connected:
            return _unavailable("NATS is not connected", self.settings)
        self.in_flight += 1
        try:
            return await self._start(request, match.target, match.params or {})
        finally:
            self.in_flight -= 1

    async def _start(self, request: Request, target: Target, params: dict[str, str]) -> Response:
        route, workflow = target.route, target.table.workflow
        execution = request.headers.get(REQUEST_ID)
        if execution is not None and not subjects.is_valid_token(execution):
            return _error(400, f"{REQUEST_ID} must match {subjects.TOKEN.pattern} to be an id")
        try:
            body = await read_body(request, self.settings.max_body, self.settings.body_timeout)
        except BodyTooLarge:
            return _error(413, f"the body is over {self.settings.max_body} bytes")
        except BodyTooSlow:
            return _error(408, f"the body did not arrive within {self.settings.body_timeout} s")
        try:
            event = cloudevent(request.headers, body)
        except BadInput as exc:
            return _error(400, str(exc))
        if event is not None:  # the workflow gets its data; its id names the execution
            body, execution = event.body, execution or event.execution
        headers = {
            header_field(h): request.headers[h] for h in route.headers if h in request.headers
        }
        query: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            query.setdefault(key, []).append(value)
        try:
            payload = build_input(body, params, query, headers)
        except BadInput as exc:
            return _error(400, str(exc))
        if target.validator is not None:
            problems = schema_problems(target.validator, payload)
            if problems:
                first = problems[0]
                return _error(
                    422,
                    f"input field '{first.field or '(input)'}': {first.problem}",
                    problems=[{"field": p.field, "problem": p.problem} for p in problems],
                )
        if route.mode == "async":
            return await self._start_async(workflow, payload, execution)
        try:
            outcome = await self.client.run(
                workflow, payload, timeout=route.timeout, execution=execution
            )
        except NoOutcome as exc:
            if exc.reason == LOST or exc.reason.startswith(NOT_STORED):
                return _unavailable(f"the execution could not start: {exc.reason}", self.settings)
            return _error(
                504,
                f"no result within {route.timeout} s; the execution goes on",
                execution=exc.execution,
                location=f"/executions/{exc.execution}",
            )
        except Exception as exc:
            return _unavailable(
                f"cannot start {workflow}: {exc or type(exc).__name__}", self.settings
            )
        return _respond(route.response, outcome)

    async def _start_async(self, workflow: str, payload: Any, execution: str | None) -> Response:
        try:
            started = await self.client.start(workflow, payload, execution=execution)
        except Exception as exc:
            return _unavailable(
                f"cannot start {workflow}: {exc or type(exc).__name__}", self.settings
            )
        location = f"/executions/{started}"
        return JSONResponse(
            {"execution": started, "workflow": workflow, "location": location},
            status_code=202,
            headers={"Location": location, EXECUTION_HEADER: started},
        )


def _status_body(workflow: str, outcome: Outcome) -> dict[str, Any]:
    body: dict[str, Any] = {"execution": outcome.execution, "workflow": workflow}
    if outcome.ok:
        body.update(status="succeeded", output=outcome.output)
    else:
        body.update(status="failed", step=outcome.step, error=outcome.error)
    return body


def _respond(mode: str, outcome: Outcome) -> Response:
    headers = {EXECUTION_HEADER: outcome.execution}
    if not outcome.ok:
        return JSONResponse(
            {
                "error": "the execution failed",
                "execution": outcome.execution,
                "step": outcome.step,
                "detail": outcome.error,
            },
            status_code=500,
            headers=headers,
        )
    if mode == "output":
        encoded = msgspec.json.encode(outcome.output)  # what JSONResponse writes, faster
        return Response(encoded, media_type="application/json", headers=headers)
    out = outcome.output
    status = out.get("status", 200) if isinstance(out, dict) else None
    extra = out.get("headers", {}) if isinstance(out, dict) else None
    if (
        not isinstance(status, int)
        or not 200 <= status <= 599
        or not isinstance(extra, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())
    ):
        return _error(
            500,
            'the workflow output is not an HTTP response {"status": 200-599, '
            '"headers": {string: string}, "body": ...}',
            execution=outcome.execution,
        )
    body = out.get("body") if isinstance(out, dict) else None
    response = (
        Response(status_code=status) if body is None else JSONResponse(body, status_code=status)
    )
    response.headers.update({**extra, **headers})
    return response


def build_app(
    client: Client,
    tables: Callable[[], Sequence[RoutingTable]],
    settings: BridgeSettings | None = None,
    *,
    middleware: Sequence[Middleware] = (),
    mounts: Sequence[BaseRoute] = (),
) -> Starlette:
    """The bridge app: the workflows' routes (from ``tables()``, read per request, so a new
    revision is served at once), ``/executions/{id}``, ``/openapi.json``, ``/healthz`` and
    ``/readyz``, and ``mounts`` (the console at ``/ui``) before the workflows' routes.
    ``client`` must wait through started shared ``Results``."""
    bridge = _Bridge(client, tables, settings or BridgeSettings())
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(
        routes=[
            Route("/healthz", bridge.healthz, methods=["GET"]),
            Route("/readyz", bridge.readyz, methods=["GET"]),
            Route("/openapi.json", bridge.openapi, methods=["GET"]),
            Route("/executions/{execution}", bridge.execution, methods=["GET"]),
            *mounts,
            Route("/{path:path}", bridge.dispatch, methods=methods),
        ],
        middleware=list(middleware),
    )
    app.state.bridge = bridge
    return app
