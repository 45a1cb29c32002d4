"""``conformance_echo``, the node the scenarios drive, and a Python host serving it.

``python -m nanoservice.conformance.echo`` serves the steps named in ``NANO_STEPS`` on
``NATS_URL`` with the Python host: the reference implementation the runner is checked with.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry

__all__ = ["conformance_echo", "echo_registry"]


@node("conformance_echo")
async def conformance_echo(ctx: Context, input: Any) -> dict[str, Any]:
    """``{"echo": input, "attempt": n}``; waits ``input.sleep`` s; fails while
    ``attempt < input.fail_until``."""
    data = input if isinstance(input, dict) else {}
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
    if data.get("fail_until") is not None and ctx.attempt < int(data["fail_until"]):
        raise RuntimeError(f"failing attempt {ctx.attempt} of {data['fail_until']}")
    return {"echo": input, "attempt": ctx.attempt}


def echo_registry() -> Registry:
    registry = Registry.discover()
    registry.add(conformance_echo)
    return registry


async def _main() -> None:
    import signal

    import nats
    from msgspec.structs import replace

    from nanoservice.nats.backend import nats_backend
    from nanoservice.nats.provision import load_tables
    from nanoservice.runtime.serve import serve

    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    steps = [s for s in os.environ.get("NANO_STEPS", "").split(",") if s]
    nc = await nats.connect(url)
    tables = list((await load_tables(nc.jetstream())).values())
    await nc.close()
    # Served here as Python steps: the same tables with the runtime mark cleared.
    plain = [
        replace(t, steps={n: replace(s, runtime=None) for n, s in t.steps.items()}) for t in tables
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with nats_backend(url) as backend, serve(backend, plain, echo_registry(), steps=steps):
        print(f"ready: serving {', '.join(steps)}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
