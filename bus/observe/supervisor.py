"""Metrics of a process supervisor (``nano up --mode nano|micro``):
``nano_supervisor_restarts_total{process}`` and ``nano_supervisor_replicas{process}``.

The supervisor calls :meth:`SupervisorMetrics.restarted` each time it restarts a process
and :meth:`SupervisorMetrics.replicas` when it sets how many copies of one run.
``process`` names a kind of process (``hello.greet``), not a pid: labels stay few.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

__all__ = ["SupervisorMetrics"]


class SupervisorMetrics:
    """Restarts and replicas per supervised process."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._restarts = Counter(
            "nano_supervisor_restarts",
            "Times the supervisor restarted a process.",
            ["process"],
            registry=registry,
        )
        self._replicas = Gauge(
            "nano_supervisor_replicas",
            "Copies of a process the supervisor keeps running.",
            ["process"],
            registry=registry,
        )

    def restarted(self, process: str) -> None:
        self._restarts.labels(process).inc()

    def replicas(self, process: str, count: int) -> None:
        self._replicas.labels(process).set(count)
