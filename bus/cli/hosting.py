"""The life of a host process (``nano up``, ``nano host``): serve until told to stop or
until the connection is gone for good, then drain with a countdown.

- The first Ctrl-C or SIGTERM drains for at most ``grace`` seconds, printing what is left;
  a second one stops at once (unsettled messages are redelivered, not lost).
- A blocked event loop does not make the process deaf: the watchdog names the steps in
  flight, and a signal then ends the process at once.
- A connection that nats-py closed for good ends the process with exit code 1, so a
  supervisor restarts it: a host never stays alive and idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from nanoservice.cli.common import console
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.observe.host import HostObservability
    from nanoservice.runtime.host import Host
    from nanoservice.sdk.registry import Registry
    from nanoservice.workflow.table import RoutingTable

__all__ = ["run_host"]

log = logging.getLogger("nanoservice.cli.host")


async def run_host(
    nc: NATS,
    tables: list[RoutingTable],
    registry: Registry,
    only: list[str] | None,
    *,
    banner: str,
    grace: float = 10.0,
    replicas: int | None = None,
    follow: Callable[[], Coroutine[Any, Any, None]] | None = None,
    observe: HostObservability | None = None,
) -> None:
    """Serve ``tables`` on ``nc`` (all steps, or ``only``) until stopped."""
    from nanoservice.nats.backend import NatsBackend
    from nanoservice.nats.connect import wait_closed
    from nanoservice.runtime.host import freeze_startup_heap, select_steps
    from nanoservice.runtime.serve import serve
    from nanoservice.runtime.watchdog import LoopWatchdog

    backend = NatsBackend(
        nc, replicas=replicas or max((t.stream.replicas for t in tables), default=1)
    )
    await backend.start()
    stop, now = asyncio.Event(), asyncio.Event()  # the first signal drains, a second stops
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_one_line)
    unsettled = 0
    lost: str | None = None
    try:
        middleware = observe.middleware if observe is not None else []
        if observe is not None:  # metrics endpoint (a taken port fails here), sampler
            banner = "\n".join([banner, *observe.start(backend.js, select_steps(tables, only))])
        async with serve(
            backend, tables, registry, steps=only, middleware=middleware, drain_timeout=grace
        ) as host:
            watchdog = LoopWatchdog(lambda: (now if stop.is_set() else stop).set(), host.in_flight)
            watchdog.start()
            freeze_startup_heap()
            console.print(banner)
            console.print(
                f"[green]ready[/green]: {len(host.pipelines)} step consumers running; "
                "Ctrl-C to stop",
                soft_wrap=True,
            )
            following = asyncio.create_task(follow()) if follow is not None else None
            try:
                lost = await _until_stopped_or_closed(stop, wait_closed(nc))
            finally:
                if following is not None:
                    following.cancel()
            if lost is None:
                unsettled = await _drain(host, grace, now)
            else:  # nothing can settle any more
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(host.stop(1.0), 2.0)
            watchdog.stop()
    finally:
        if observe is not None:
            await observe.stop()
        if unsettled or lost is not None:  # close what is left, quietly and bounded
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.transport.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        else:
            await backend.close(grace)
    if lost is not None:
        raise NanoError(f"connection to NATS closed for good ({lost}); exiting")
    if unsettled:
        raise NanoError(
            f"stopped with {unsettled} message(s) in flight; NATS redelivers them after "
            "their ack wait"
        )


def _one_line(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Background task failures as one log line (the whole context at --log-level debug)."""
    if log.isEnabledFor(logging.DEBUG):
        loop.default_exception_handler(context)
        return
    exc = context.get("exception")
    what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message")
    log.warning("background task failed: %s", what)


async def _drain(host: Host, grace: float, now: asyncio.Event) -> int:
    """Stop the host, letting in-flight messages settle for up to ``grace`` seconds (a
    countdown each second) or until ``now`` is set; how many were left unsettled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    stopping = asyncio.ensure_future(host.stop(grace))
    interrupted = asyncio.ensure_future(now.wait())
    try:
        while not stopping.done() and not now.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            if count := host.unsettled:
                console.print(
                    f"draining: {count} message(s) in flight, stopping in {math.ceil(left)} s "
                    "(Ctrl-C again: stop now)",
                    soft_wrap=True,
                )
            await asyncio.wait((stopping, interrupted), timeout=min(1.0, left))
    finally:
        interrupted.cancel()
    if stopping.done():
        stopping.result()
        return 0
    count = max(host.unsettled, 1)
    # Stop at once: every other task (the steps in flight among them) is cancelled, so none
    # settles half-way; their messages stay unacknowledged and come back.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    return count


async def _until_stopped_or_closed(
    stop: asyncio.Event, closed: Coroutine[Any, Any, str]
) -> str | None:
    """Wait for a stop signal (None) or for the connection to close for good (why)."""
    stopped = asyncio.ensure_future(stop.wait())
    gone = asyncio.ensure_future(closed)
    try:
        await asyncio.wait((stopped, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, gone):
            task.cancel()
    return None if stopped.done() and not stopped.cancelled() else gone.result()
