"""For-each: one item function over a list, bounded, with the step's item-error policy.

Used for a node run once per item and for a workflow called once per item alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nanoservice.errors import NonRetryableError

__all__ = ["ItemFailedError", "for_each"]


class ItemFailedError(NonRetryableError):
    """An item failed in a way retrying cannot fix (its own type and message kept)."""

    def __init__(self, message: str, error_type: str, error_message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = error_message


async def for_each(
    items: Any,
    one: Callable[[int, Any], Awaitable[Any]],
    *,
    concurrency: int,
    on_item_error: str,
    not_retryable: tuple[type[BaseException], ...],
) -> list[Any]:
    """Results of ``one(index, item)`` in input order.

    ``on_item_error``: ``fail`` (the first failure fails the step), ``skip`` (drop failed
    items) or ``collect`` (an ``{"error": {type, message}}`` in the failed item's place).
    """
    if not isinstance(items, list):
        raise NonRetryableError(f"for_each items must be a list, got {type(items).__name__}")
    slots = asyncio.Semaphore(concurrency)
    skipped = object()

    async def guarded(index: int, item: Any) -> Any:
        async with slots:
            try:
                return await one(index, item)
            except Exception as exc:
                kind = getattr(exc, "error_type", type(exc).__name__)
                message = getattr(exc, "error_message", str(exc))
                if on_item_error == "fail":
                    if isinstance(exc, ItemFailedError):
                        raise
                    if isinstance(exc, not_retryable):
                        raise ItemFailedError(
                            f"item {index}: {kind}: {message}", kind, message
                        ) from exc
                    raise
                if on_item_error == "skip":
                    return skipped
                return {"error": {"type": kind, "message": message}}

    results = await asyncio.gather(*(guarded(i, item) for i, item in enumerate(items)))
    return [r for r in results if r is not skipped]
