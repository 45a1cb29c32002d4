"""What a node may return: JSON values, checked before the output leaves the node.

An output must be JSON: ``dict`` with string keys, ``list`` (a ``tuple`` becomes an array),
``str``, ``int``, finite ``float``, ``bool`` and ``None``; a pydantic model anywhere in it
is dumped with its own JSON serialisation. A typed output (the return annotation) is first
dumped by pydantic from that type, which is where its declared conversions happen
(``Decimal`` and ``datetime`` fields become strings, ``set`` fields lists...). Anything else
is refused with :class:`OutputError` naming the path, e.g. ``output.items[3]: NaN is not
JSON``: NaN and infinities, sets, bytes, datetimes, Decimals, non-string dict keys and other
objects are never converted silently. The error is not retryable: the same input would give
the same output.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from nanoservice.errors import NonRetryableError

__all__ = ["OutputError", "json_output"]

_HINTS: dict[str, str] = {
    "set": "return a list",
    "frozenset": "return a list",
    "bytes": "decode or base64-encode it",
    "bytearray": "decode or base64-encode it",
    "datetime": "return .isoformat() of an aware datetime, or declare the output type",
    "date": "return .isoformat(), or declare the output type",
    "time": "return .isoformat(), or declare the output type",
    "Decimal": "return str() or float() of it, or declare the output type",
}


class OutputError(NonRetryableError):
    """A node output that is not JSON (NaN, a set, bytes...); retrying cannot fix it."""


class _Refused(Exception):
    """Raised at the offending value; each level on the way out adds its part of the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def json_output(value: Any) -> Any:
    """``value`` as JSON (models dumped), or :class:`OutputError` naming what is not JSON."""
    try:
        return _json(value)
    except _Refused as refused:
        where = "output" + "".join(reversed(refused.path))
        raise OutputError(f"{where}: {refused.reason}") from None


def _json(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Refused(f"{'NaN' if value != value else value} is not JSON (send null or a string)")
    if kind is dict:
        return _json_dict(value)
    if kind is list or kind is tuple:
        return _json_list(value)
    if isinstance(value, BaseModel):
        return _json(value.model_dump(mode="json"))
    if isinstance(value, (str, int)):  # str and int enums, bool
        return value
    if isinstance(value, float):
        return _json(float(value))
    name = kind.__name__
    if name == "datetime" and getattr(value, "tzinfo", None) is None:
        reason = "a datetime without a timezone is not JSON"
    else:
        reason = f"{name} is not JSON"
    hint = _HINTS.get(name)
    raise _Refused(f"{reason} ({hint})" if hint else reason)


def _json_dict(value: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for key, item in value.items():
        kind = type(item)
        if (kind is str or kind is int or kind is bool or item is None) and type(key) is str:
            continue  # the common case, without a call
        if not isinstance(key, str):
            refused = _Refused(f"key {key!r} is {type(key).__name__}, not a string")
            raise refused
        try:
            converted = _json(item)
        except _Refused as refused:
            refused.path.append(f".{key}" if key.isidentifier() else f"[{key!r}]")
            raise
        if converted is not item:
            if out is None:
                out = dict(value)
            out[key] = converted
    return value if out is None else out


def _json_list(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    out: list[Any] | None = None if type(value) is list else list(value)
    for index, item in enumerate(value):
        try:
            converted = _json(item)
        except _Refused as refused:
            refused.path.append(f"[{index}]")
            raise
        if converted is not item:
            if out is None:
                out = list(value)
            out[index] = converted
    return value if out is None else out  # type: ignore[return-value]
