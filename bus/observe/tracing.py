"""OpenTelemetry traces: one trace per execution, a span per step, parented across
processes through W3C ``traceparent``/``tracestate`` on the NATS messages.

:class:`TracingMiddleware` starts a span around handling each delivery, as the child of the
delivery's ``traceparent`` (or, for a trigger without one, as a root whose trace id is
derived from the workflow and execution id, so every attempt of the first step lands in the
same trace), and writes its own context into the ``traceparent`` of every message the
decision publishes. The span is current while the node runs, so spans a node makes (an
instrumented HTTP client, say) nest under it and log lines carry its ids.

:func:`tracer_provider_from_env` builds the SDK provider from the standard ``OTEL_*``
variables; tracing is off unless ``OTEL_TRACES_EXPORTER`` names an exporter.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nanoservice.errors import NanoError
from nanoservice.observe.metrics import outcome_of
from nanoservice.observe.where import execution_of, is_trigger
from nanoservice.runtime.decision import Decision, Publish
from nanoservice.runtime.middleware import MessageCall, Middleware
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import ROUTE, TRACEPARENT, TRACESTATE, Delivery

__all__ = [
    "ExecutionTraceIds",
    "TracingMiddleware",
    "execution_trace_id",
    "trace_headers",
    "tracer_provider_from_env",
]

_PROPAGATOR = TraceContextTextMapPropagator()
_root_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "nano_root_trace_id", default=None
)


def execution_trace_id(workflow: str, execution: str) -> int:
    """The trace id of an execution started without a ``traceparent``: stable, so a
    retried trigger's span joins the same trace."""
    digest = hashlib.blake2b(f"{workflow}/{execution}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big") or 1


class ExecutionTraceIds(RandomIdGenerator):
    """Random ids, except the trace id of an execution's root span (see above)."""

    def generate_trace_id(self) -> int:
        forced = _root_trace_id.get()
        return forced if forced is not None else super().generate_trace_id()


def trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, to put on a message that
    starts an execution (an HTTP bridge's trigger, say); empty outside a span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


class TracingMiddleware(Middleware):
    """A span per delivery handled: ``<workflow>.<step>``, kind consumer.

    A delivery whose ``traceparent`` says its trace is not sampled gets no span (what the
    parent-based samplers, the SDK's default, decide anyway) and costs one header lookup.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._names: dict[CompiledStep, tuple[str, dict[str, Any]]] = {}

    def setup(self, step: CompiledStep) -> None:
        self._names[step] = (
            f"{step.workflow}.{step.name}",
            {
                "nano.workflow": step.workflow,
                "nano.step": step.name,
                "nano.revision": step.revision,
                "nano.node": step.step.node or "",
            },
        )

    async def message(
        self, step: CompiledStep, delivery: Delivery, call_next: MessageCall
    ) -> Decision:
        name, fixed = self._names[step]
        headers = delivery.headers
        execution = execution_of(step, delivery)
        parent = None
        forced = None
        incoming = headers.get(TRACEPARENT)
        if incoming is not None:
            if _sampled_out(incoming):  # no span here: the outbox passes the context on
                return await call_next(delivery)
            parent = _PROPAGATOR.extract(headers)
        elif is_trigger(step, delivery):
            forced = _root_trace_id.set(execution_trace_id(step.workflow, execution))
        try:
            span = self.tracer.start_span(
                name,
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    **fixed,
                    "nano.execution": execution,
                    "nano.attempt": delivery.delivered,
                },
            )
        finally:
            if forced is not None:
                _root_trace_id.reset(forced)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            decision = await call_next(delivery)
        finally:
            otel_context.detach(token)
        if span.is_recording():  # sampled out: only the context travels on
            outcome = outcome_of(decision)
            span.set_attribute("nano.outcome", outcome)
            if outcome in ("retried", "dead_lettered"):
                span.set_status(trace.StatusCode.ERROR)
        if type(decision) is Publish and decision.messages:
            _stamp(span, decision)
        span.end()
        return decision


def _sampled_out(traceparent: str) -> bool:
    """The trace-flags' sampled bit (the last two hex digits) is clear."""
    flags = traceparent[-2:]
    return flags in _UNSAMPLED


_UNSAMPLED = frozenset(f"{flags:02x}" for flags in range(256) if not flags & 1)


def _stamp(span: trace.Span, decision: Publish) -> None:
    """Every outgoing message becomes a child of ``span``; the chosen route is recorded."""
    ctx = span.get_span_context()
    parent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    for message in decision.messages:
        headers = message.headers
        headers[TRACEPARENT] = parent
        if state:
            headers[TRACESTATE] = state
        else:
            headers.pop(TRACESTATE, None)
    route = decision.messages[0].headers.get(ROUTE)
    if route and span.is_recording():
        span.set_attribute("nano.route", route)


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        module = (
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
            if protocol == "grpc"
            else "opentelemetry.exporter.otlp.proto.http.trace_exporter"
        )
        try:
            found = __import__(module, fromlist=["OTLPSpanExporter"])
        except ImportError:
            package = module.rsplit(".", 2)[0].replace(".", "-")
            raise NanoError(
                f"OTEL_TRACES_EXPORTER=otlp ({protocol}) needs the package {package} "
                "(pip install 'nanoservice-py[otlp]')"
            ) from None
        exporter: SpanExporter = found.OTLPSpanExporter()
        return exporter
    raise NanoError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (known: otlp, console, none)")


def tracer_provider_from_env(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A provider exporting as the ``OTEL_*`` variables say, or None (tracing off: the
    default, ``OTEL_TRACES_EXPORTER`` unset or ``none``, or ``OTEL_SDK_DISABLED=true``).

    The sampler (``OTEL_TRACES_SAMPLER``), batching (``OTEL_BSP_*``), service name and
    resource attributes (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) and the OTLP
    endpoint (``OTEL_EXPORTER_OTLP_*``) are read by the SDK and exporters themselves.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [
        n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()
    ]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    exporters = [_exporter(n, env) for n in names]
    provider = TracerProvider(
        resource=_resource(),
        id_generator=ExecutionTraceIds(),
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _resource() -> Resource:
    """The SDK's resource from the environment; ``service.name`` nanoservice unless set."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "nanoservice"}))
    return resource
