"""The ``/metrics`` endpoint of a process: Prometheus' text format over HTTP, served from
a thread (a scrape never waits for the event loop, nor the loop for a scrape)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from nanoservice.errors import NanoError

__all__ = ["MetricsServer", "serve_metrics"]


@dataclass
class MetricsServer:
    """A running endpoint; ``url`` is what to scrape."""

    server: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def target(self) -> str:
        """``host:port`` as a Prometheus target."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (0: any free port) until closed."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise NanoError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
            "(pass another --metrics-port, or 0 for any free one)"
        ) from None
    return MetricsServer(server, thread, host)
