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
CEL integers are 64-bit (``int`` down to -2**63, ``uint`` up to 2**64-1): an integer beyond
that range in the data an expression reads is refused with a ``NonRetryableError`` naming
the value and where it is (CEL would silently turn it into an inexact float). Send such
numbers as strings.

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


_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1


def _find_wide_int(value: Any, path: str) -> tuple[str, int] | None:
    """The first integer CEL cannot hold exactly (beyond int64/uint64) in ``value``, if any."""
    kind = type(value)
    if kind is int:
        return (path, value) if not _INT_MIN <= value <= _UINT_MAX else None
    if kind is dict:
        for key, item in value.items():
            found = _find_wide_int(item, f"{path}.{key}")
            if found is not None:
                return found
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            found = _find_wide_int(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _check_scope(ctx: Context, expression: Expression) -> None:
    """Refuse an integer beyond 64 bits in the scope names ``expression`` reads."""
    for name in expression.variables:
        if name not in ctx.scope:
            continue
        value = ctx.scope[name]
        if name == "steps" and expression.step_refs is not None and isinstance(value, dict):
            value = {k: value[k] for k in expression.step_refs if k in value}
        found = _find_wide_int(value, name)
        if found is not None:
            where, number = found
            raise NonRetryableError(
                f"step '{ctx.step}': {where} is {number}, beyond CEL's 64-bit integers "
                f"('{expression.source}' would read it as an inexact float); send it as a string"
            )


def _evaluate(ctx: Context, expression: Expression, what: str) -> Any:
    _check_scope(ctx, expression)
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
