"""A test node for the pattern catalogue: fails the first attempt, then passes input through."""

from __future__ import annotations

from typing import Any

from nanoservice import Context, node


@node("fail_once")
async def fail_once(ctx: Context, input: Any) -> Any:
    """Fails the first attempt of every execution (a transient error), then succeeds."""
    if ctx.attempt == 1:
        raise RuntimeError("transient failure")
    return input
