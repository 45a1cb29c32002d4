"""delay: wait a number of seconds, then pass the input on unchanged.

While it waits longer than a few seconds the node tells the server it is still working
(``ctx.heartbeat()`` every ``HEARTBEAT_EVERY`` seconds), so the message is not redelivered
to another replica. The step's ``timeout`` must still be longer than ``seconds``.

Config: see the fields of the config model below (documented in docs/nodes.md).

Input: anything JSON can carry.
Output: the input, unchanged.

Example:

```yaml
name: reminder
steps:
  wait:
    node: delay
    with: {seconds: 20}
    timeout: 30
    next: [remind]
  remind: {node: log}
```
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nanoservice.sdk.node import Context, node

__all__ = ["HEARTBEAT_EVERY", "DelayConfig", "delay"]

HEARTBEAT_EVERY = 5.0
"""Seconds between heartbeats during a long wait (shorter waits send none)."""


class DelayConfig(BaseModel):
    """Config of the ``delay`` node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(ge=0, le=3600, description="Seconds to wait before passing on.")


@node("delay", config=DelayConfig)
async def delay(ctx: Context, input: Any, config: DelayConfig) -> Any:
    """Wait ``seconds``, heartbeating during long waits, then pass the input on unchanged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.seconds
    while (remaining := deadline - loop.time()) > HEARTBEAT_EVERY:
        await asyncio.sleep(HEARTBEAT_EVERY)
        await ctx.heartbeat()
    await asyncio.sleep(max(remaining, 0.0))
    return input
