"""The engine's JetStream KV buckets, created on first use with ``allow_direct`` on.

| bucket | holds |
|---|---|
| ``nano_tables`` | routing tables, one key per workflow (history 5) |
| ``nano_joins`` | join states (expire after a day) |
| ``nano_calls`` | a calling step's envelope while the called workflow runs |
| ``nano_cancel`` | cancelled executions, watched by every host |
| ``nano_schedules`` | the last tick started per schedule (schedulers resume from it) |
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from nanoservice.subjects import CALLS, CANCEL, JOINS, SCHEDULES, TABLES

__all__ = ["CALLS", "CANCEL", "JOINS", "SCHEDULES", "TABLES", "bucket"]

_SETTINGS: dict[str, tuple[int, float | None, str]] = {
    TABLES: (5, None, "nanoservice routing tables, one key per workflow"),
    JOINS: (1, 86_400.0, "nanoservice join states"),
    CALLS: (1, 86_400.0, "nanoservice callers' envelopes while a called workflow runs"),
    CANCEL: (1, 86_400.0, "nanoservice cancelled executions"),
    SCHEDULES: (1, None, "nanoservice schedules: the last tick started"),
}


async def bucket(js: JetStreamContext, name: str, *, replicas: int = 1) -> KeyValue:
    """One of the engine's buckets, created if missing.

    Direct gets are on (DESIGN.md: per-subject read permissions need ``allow_direct``).
    """
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        history, ttl, description = _SETTINGS[name]
        return await js.create_key_value(
            KeyValueConfig(
                bucket=name,
                history=history,
                ttl=ttl,
                replicas=replicas,
                direct=True,
                description=description,
            )
        )
