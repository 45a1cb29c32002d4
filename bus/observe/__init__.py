"""Observability of hosts, as step-pipeline middleware: Prometheus metrics, OpenTelemetry
traces (W3C ``traceparent`` on the NATS messages), structured logs.

Nothing here runs inside nodes. :class:`~nanoservice.observe.host.HostObservability`
assembles what a host process needs (the CLI uses it); the parts are usable alone. Names
load on first use, so importing one part (``nanoservice.observe.http``) loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanoservice.observe.discovery import write_file_sd
    from nanoservice.observe.host import HostObservability
    from nanoservice.observe.http import HttpMetrics
    from nanoservice.observe.logs import LogContext, setup_logging
    from nanoservice.observe.metrics import EngineMetrics, MetricsMiddleware
    from nanoservice.observe.supervisor import SupervisorMetrics
    from nanoservice.observe.tracing import (
        TracingMiddleware,
        trace_headers,
        tracer_provider_from_env,
    )

__all__ = [
    "EngineMetrics",
    "HostObservability",
    "HttpMetrics",
    "LogContext",
    "MetricsMiddleware",
    "SupervisorMetrics",
    "TracingMiddleware",
    "setup_logging",
    "trace_headers",
    "tracer_provider_from_env",
    "write_file_sd",
]

_WHERE = {
    "EngineMetrics": "metrics",
    "HostObservability": "host",
    "HttpMetrics": "http",
    "LogContext": "logs",
    "MetricsMiddleware": "metrics",
    "SupervisorMetrics": "supervisor",
    "TracingMiddleware": "tracing",
    "setup_logging": "logs",
    "trace_headers": "tracing",
    "tracer_provider_from_env": "tracing",
    "write_file_sd": "discovery",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
