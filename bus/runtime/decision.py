"""What handling a message decides: the one value the settler carries out.

The step pipeline never acks, naks or publishes; it returns one of these, and
:class:`~nanoservice.runtime.settler.Settler` does what it says, once per delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from nanoservice.runtime.envelope import Envelope, ErrorInfo

__all__ = [
    "DeadLetter",
    "Decision",
    "Done",
    "Outbound",
    "Publish",
    "Retry",
    "Wait",
]


@dataclass(slots=True)
class Outbound:
    """One message to store before the delivery that caused it is acked."""

    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Publish:
    """Store every message (with its de-dup id), then ack. ``after`` runs once acked."""

    messages: list[Outbound]
    outcome: str = "ok"
    """What this means for the step: ``ok``, ``error_route``, ``timeout_route``, ``call``..."""
    cleanup: str | None = None
    """A join key to delete once the delivery is acked (the join is over)."""
    execution: str = ""


@dataclass(slots=True)
class Retry:
    """Nak with ``delay``: the node failed and has tries left."""

    delay: float
    error: ErrorInfo


@dataclass(slots=True)
class Wait:
    """Nak with ``delay`` without a failure: a timer that is not due yet."""

    delay: float


@dataclass(slots=True)
class DeadLetter:
    """Record the failure on the dead-letter subject (and return it to a caller), then ack."""

    error: ErrorInfo
    envelope: Envelope | None = None
    execution: str = ""
    id_suffix: str | None = None
    """Overrides the de-dup id (a cancellation is recorded once per execution)."""


@dataclass(slots=True)
class Done:
    """Nothing to publish: ack (a join branch recorded, a duplicate ignored)."""

    outcome: str = "ok"
    cleanup: str | None = None


Decision: TypeAlias = Publish | Retry | Wait | DeadLetter | Done
