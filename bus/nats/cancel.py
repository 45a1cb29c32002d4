"""Cancelling an execution: ``nano cancel`` puts ``<workflow>.<execution>`` into the
``nano_cancel`` bucket; hosts follow it (:mod:`nanoservice.runtime.cancellations`), drop that
execution's messages and record one ``Cancelled`` outcome on its dead-letter subject.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from nanoservice.errors import NanoError
from nanoservice.nats.buckets import CANCEL, bucket
from nanoservice.subjects import is_valid_token

__all__ = ["cancel_execution"]


async def cancel_execution(js: JetStreamContext, workflow: str, execution: str) -> None:
    """Mark ``workflow``'s ``execution`` cancelled (hosts watch the bucket)."""
    for name in (workflow, execution):
        if not is_valid_token(name):
            raise NanoError(f"invalid workflow or execution name {name!r}")
    kv = await bucket(js, CANCEL)
    await kv.put(f"{workflow}.{execution}", b"cancelled")
