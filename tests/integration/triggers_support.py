"""Shared by the trigger tests: one server per module, hosts and the trigger processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client as NATS

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.provision import provision
from nanoservice.runtime.serve import serve
from nanoservice.sdk.registry import Registry
from nanoservice.triggers.service import TriggerOptions, Triggers
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

REGISTRY = Registry.discover()


@asynccontextmanager
async def workflows(
    url: str, texts: list[str], options: TriggerOptions | None = None
) -> AsyncIterator[tuple[NATS, list[RoutingTable], Triggers | None]]:
    """Provision ``texts``, host them, and (given ``options``) run the trigger processes."""
    tables = [compile_text(t, REGISTRY, file=f"wf{i}.yaml") for i, t in enumerate(texts)]
    nc = await nats.connect(url)
    for table in tables:
        await provision(nc.jetstream(), table)
    async with contextlib.AsyncExitStack() as stack:
        backend = await stack.enter_async_context(nats_backend(url))
        await stack.enter_async_context(serve(backend, tables, REGISTRY))
        triggers = None
        if options is not None:
            triggers = Triggers(nc, options)
            await triggers.start()
            stack.push_async_callback(triggers.stop)
        try:
            yield nc, tables, triggers
        finally:
            await stack.aclose()
            await nc.close()
