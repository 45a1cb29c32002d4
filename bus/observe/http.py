"""HTTP metrics (and a server span) for a Starlette app, such as the HTTP bridge:
``nano_http_requests_total{route,method,status}`` and
``nano_http_request_duration_seconds{route,method}``.

``route`` is the matched route's path template (``/workflows/{name}``), never the raw path,
so labels stay few; a request no route matches is ``unmatched``. With a tracer, each request
is a server span, the child of the request's ``traceparent``, current while the app runs:
a trigger published meanwhile with :func:`~nanoservice.observe.tracing.trace_headers`
parents the execution's trace on the HTTP request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from starlette.routing import Match

from nanoservice.observe.metrics import DURATION_BUCKETS

__all__ = ["ROUTE", "HttpMetrics", "route_of"]

ROUTE = "nano.route"
"""Scope key an app sets to the template it dispatched to itself (the bridge's workflow
routes behind one catch-all); it wins over the matched Starlette route."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROPAGATOR = TraceContextTextMapPropagator()


def route_of(scope: Scope) -> str:
    """The path template of the route that matches ``scope`` (``unmatched`` if none)."""
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class HttpMetrics:
    """ASGI middleware: ``Starlette(..., middleware=[Middleware(HttpMetrics, registry=r)])``."""

    def __init__(
        self,
        app: App,
        *,
        registry: CollectorRegistry = REGISTRY,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.requests = Counter(
            "nano_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "nano_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            registry=registry,
            buckets=DURATION_BUCKETS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, method = route_of(scope), scope.get("method", "GET")
        status = 500
        token = None
        span = None
        if self.tracer is not None:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            span = self.tracer.start_span(
                f"{method} {route}",
                context=_PROPAGATOR.extract(headers),
                kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": method, "http.route": route},
            )
            token = otel_context.attach(trace.set_span_in_context(span))

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        began = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            route = str(scope.get(ROUTE, route))
            self.duration.labels(route, method).observe(time.perf_counter() - began)
            self.requests.labels(route, method, str(status)).inc()
            if span is not None and token is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                otel_context.detach(token)
                span.end()
