"""One entry point that runs workflows: the CLI, the tests and the benchmark all use it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from nanoservice.errors import NanoError
from nanoservice.runtime.host import Host, select_steps
from nanoservice.runtime.middleware import Middleware
from nanoservice.sdk.registry import Registry
from nanoservice.types import Backend
from nanoservice.workflow.table import RoutingTable

__all__ = ["serve"]


@contextlib.asynccontextmanager
async def serve(
    backend: Backend,
    tables: Sequence[RoutingTable],
    registry: Registry,
    *,
    steps: Sequence[str] | None = None,
    middleware: Sequence[Middleware] = (),
    watch: bool = True,
    drain_timeout: float = 10.0,
) -> AsyncIterator[Host]:
    """Run the steps of ``tables`` (all, or those named ``workflow[.step]`` in ``steps``)
    until the block ends, then drain what is in flight.

    The tables must be provisioned on the backend already (``nano up`` and
    :meth:`MemoryBus.provision` do it). With ``watch`` (the default) the host follows the
    stored tables and picks up new revisions without a restart.
    """
    chosen = select_steps(tables, steps)
    if not chosen:
        raise NanoError(f"no steps match {', '.join(steps or [])}")
    host = Host(
        backend,
        registry,
        chosen,
        tables=tables,
        middleware=middleware,
        watch=watch,
        only=None if steps is None else list(steps),
    )
    await host.start()
    try:
        yield host
    finally:
        await host.stop(drain_timeout)
