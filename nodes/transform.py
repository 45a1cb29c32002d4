"""transform: compute a new value from the execution's data with a CEL expression.

The step's output is the value of ``expr``. The expression sees the execution's scope:
``input`` (the trigger payload), ``prev`` (the output of the step before), ``steps``
(``steps.<name>.output`` of earlier steps), ``vars`` and ``execution``. It is compiled when
the workflow compiles, so a syntax error or an unknown variable fails there, not at run time.

Config: see the fields of the config model below (documented in docs/nodes.md).

Input: anything (the expression reads the scope, not the node's input).
Output: the expression's value as JSON (timestamps become RFC 3339 strings, durations ISO
8601 strings, bytes base64).
Errors: an expression that fails on the data it is given (missing key, division by zero,
a route that is not a string) raises ``NonRetryableError``: retrying the same data cannot help.

Example:

```yaml
name: orders
steps:
  classify:
    node: transform
    with:
      expr: '{"id": input.id, "big": input.total > 100.0}'
      route: 'input.total > 100.0 ? "big" : "small"'
    routes: {big: [review], small: [done]}
  review: {node: log}
  done: {node: log}
```
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from nanoservice import CelExpression, Expression, ExpressionError
from nanoservice.errors import NonRetryableError
from nanoservice.sdk.node import Context, node

__all__ = ["TransformConfig", "transform"]


class TransformConfig(BaseModel):
    """Config of the ``transform`` node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expr: CelExpression = Field(description="CEL expression whose value is the step's output.")
    route: CelExpression | None = Field(
        None, description="CEL expression naming the route to take (a string); none: no route."
    )


def _evaluate(ctx: Context, expression: Expression, what: str) -> Any:
    try:
        return ctx.evaluate(expression)
    except ExpressionError as exc:
        raise NonRetryableError(f"{what}: {exc}") from exc


@node("transform", config=TransformConfig, pure=True)
async def transform(ctx: Context, input: Any, config: TransformConfig) -> Any:
    """Output the value of a CEL expression over the execution's data; optionally pick a route."""
    output = to_jsonable_python(_evaluate(ctx, config.expr, "expr"), bytes_mode="base64")
    if config.route is not None:
        route = _evaluate(ctx, config.route, "route")
        if not isinstance(route, str) or not route:
            raise NonRetryableError(
                f"route: '{config.route.source}' gave {route!r}, not a route name (a string)"
            )
        ctx.choose(route)
    return output
