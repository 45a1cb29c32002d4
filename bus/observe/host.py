"""What a host process (``nano up``, ``nano host``) runs for observability: the middleware
for :func:`~nanoservice.runtime.serve.serve`, the ``/metrics`` endpoint, the consumer
backlog sampler, the service-discovery file and the tracer provider, started and stopped
together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from nanoservice.errors import NanoError
from nanoservice.observe.discovery import write_file_sd
from nanoservice.observe.exposition import MetricsServer, serve_metrics
from nanoservice.observe.logs import LogContext
from nanoservice.observe.metrics import EngineMetrics, MetricsMiddleware
from nanoservice.observe.pending import ConsumerInfoSource, PendingSampler
from nanoservice.observe.tracing import TracingMiddleware, tracer_provider_from_env
from nanoservice.runtime.middleware import Middleware
from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["HostObservability"]


class HostObservability:
    """Metrics (when ``metrics_port`` is given: 0 picks a free port, and so does a taken
    port with ``any_port_if_taken``), tracing (as the ``OTEL_*`` variables say, off by
    default) and log fields, for one host process."""

    def __init__(
        self,
        *,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        any_port_if_taken: bool = False,
        sd_file: Path | None = None,
        sd_labels: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        sample_interval: float = 5.0,
    ) -> None:
        self.metrics_port = metrics_port
        self.any_port_if_taken = any_port_if_taken
        self.metrics_host = metrics_host
        self.sd_file = sd_file
        self.sd_labels = dict(sd_labels or {})
        self.sample_interval = sample_interval
        self.registry = CollectorRegistry()
        self.metrics = EngineMetrics()
        self.provider = tracer_provider_from_env(environ)
        self.middleware: list[Middleware] = []
        if self.provider is not None:
            self.middleware.append(TracingMiddleware(self.provider.get_tracer("nanoservice")))
        self.middleware.append(LogContext())
        if metrics_port is not None:
            self.registry.register(self.metrics)
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            self.middleware.append(MetricsMiddleware(self.metrics))
        self.server: MetricsServer | None = None
        self.sampler: PendingSampler | None = None

    def start(
        self, js: ConsumerInfoSource | None, steps: Sequence[tuple[RoutingTable, StepRoute]]
    ) -> list[str]:
        """Start the endpoint and the sampler (on the running loop); lines for the banner."""
        lines: list[str] = []
        if self.metrics_port is not None:
            try:
                self.server = serve_metrics(self.registry, self.metrics_port, self.metrics_host)
            except NanoError:
                if not self.any_port_if_taken:
                    raise
                self.server = serve_metrics(self.registry, 0, self.metrics_host)
            if js is not None:
                self.sampler = PendingSampler(js, steps, self.sample_interval)
                self.registry.register(self.sampler)
                self.sampler.start()
            lines.append(f"metrics     {self.server.url}")
            if self.sd_file is not None:
                write_file_sd(self.sd_file, [(self.server.target, self.sd_labels)])
                lines.append(f"targets     {self.sd_file} (Prometheus file_sd)")
        if self.provider is not None:
            lines.append("tracing     on (OTEL_TRACES_EXPORTER)")
        return lines

    async def stop(self) -> None:
        """Stop sampling and serving; flush the spans not exported yet."""
        if self.sampler is not None:
            await self.sampler.stop()
        if self.server is not None:
            self.server.close()
            self.server = None
            if self.sd_file is not None:  # no target left behind for Prometheus to miss
                self.sd_file.unlink(missing_ok=True)
        if self.provider is not None:
            self.provider.shutdown()
