"""A local JetStream cluster: ``n`` (>= 3) nats-servers as child processes, for ``nano up
--cluster`` and the tests that need replication."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Self

from nanoservice.nats.local_server import (
    _POLL_INTERVAL,
    ClusterConfig,
    LocalServer,
    NatsServerError,
    ServerOptions,
    _connect_host,
    _free_ports,
)

__all__ = ["LocalCluster"]


class LocalCluster:
    """``n`` (>= 3) clustered nats-servers with JetStream, each with its own store dir."""

    def __init__(
        self,
        base_dir: Path,
        n: int = 3,
        *,
        name: str = "nano",
        host: str = "127.0.0.1",
        sync_interval: str | None = None,
        max_payload: int | None = None,
        binary: str | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if n < 3:
            raise ValueError("a JetStream cluster needs at least 3 servers")
        ports = _free_ports(3 * n, host)
        client, route, monitor = ports[:n], ports[n : 2 * n], ports[2 * n :]
        route_urls = [f"nats-route://{_connect_host(host)}:{p}" for p in route]
        self.servers: list[LocalServer] = [
            LocalServer(
                ServerOptions(
                    store_dir=base_dir / f"n{i + 1}",
                    host=host,
                    port=client[i],
                    monitor_port=monitor[i],
                    server_name=f"n{i + 1}",
                    sync_interval=sync_interval,
                    max_payload=max_payload,
                    die_with_parent=die_with_parent,
                ),
                cluster=ClusterConfig(
                    name=name,
                    port=route[i],
                    routes=tuple(u for j, u in enumerate(route_urls) if j != i),
                ),
                binary=binary,
            )
            for i in range(n)
        ]

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node."""
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """Comma-joined client URLs (nats-py accepts this as ``servers=``)."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, then wait until all are healthy and JetStream has a meta leader."""
        try:
            for server in self.servers:
                server.start(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, as the running nodes report it."""
        for server in self.servers:
            if server.running:
                leader = self._leader_of(server)
                if leader:
                    return leader
        return None

    @staticmethod
    def _leader_of(server: LocalServer) -> str | None:
        meta = server.jsz().get("meta_cluster") or {}
        leader = meta.get("leader") if isinstance(meta, dict) else None
        return str(leader) if leader else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every running node passes ``/healthz`` and reports a meta leader."""
        deadline = time.monotonic() + timeout
        for server in self.servers:
            if not server.running:
                continue
            server.wait_ready(max(0.0, deadline - time.monotonic()))
            while not self._leader_of(server):
                server._check_alive()
                if time.monotonic() >= deadline:
                    raise NatsServerError(
                        f"no JetStream meta leader seen by {server.url} after {timeout}s\n"
                        f"{server.log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node at once, then wait for each (SIGKILL after ``timeout``)."""
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.stop(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
