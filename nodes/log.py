"""log: write the step's input to the log and pass it on unchanged.

The input is logged as JSON on the ``nanoservice.sdk.node`` logger, tagged with the execution,
workflow and step (``ctx.log``). Useful as a tap while building a workflow, or as the last
step of a branch whose result only needs to be seen.

Config: see the fields of the config model below (documented in docs/nodes.md).

Input: anything JSON can carry.
Output: the input, unchanged.

Example:

```yaml
name: audit
steps:
  show:
    node: log
    with: {level: warning, message: "order received:"}
```
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nanoservice.sdk.node import Context, node

__all__ = ["LogConfig", "log"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class LogConfig(BaseModel):
    """Config of the ``log`` node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the record."
    )
    message: str = Field("", description="Text written before the JSON of the input.")
    max_chars: int = Field(
        4096, ge=16, le=1_000_000, description="Longest JSON written; longer input is cut."
    )


def _render(value: Any, max_chars: int) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    if len(text) > max_chars:
        return f"{text[:max_chars]}... ({len(text)} chars)"
    return text


@node("log", config=LogConfig, pure=True)
async def log(ctx: Context, input: Any, config: LogConfig) -> Any:
    """Log the input as JSON at a configurable level and pass it on unchanged."""
    level = _LEVELS[config.level]
    if ctx.log.isEnabledFor(level):
        text = _render(input, config.max_chars)
        ctx.log.log(level, "%s %s" if config.message else "%s%s", config.message, text)
    return input
