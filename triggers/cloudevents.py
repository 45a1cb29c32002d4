"""CloudEvents over HTTP (v1.0): the workflow gets the event's ``data``, and the event's
``id`` becomes the execution id, so a redelivered event is the same execution.

Binary mode: the ``ce-*`` headers carry the attributes and the body is the data. Structured
mode: ``Content-Type: application/cloudevents+json`` and the body is the whole event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from nanoservice import subjects
from nanoservice.triggers.inputs import BadInput

__all__ = ["CloudEvent", "cloudevent", "execution_for"]

STRUCTURED = "application/cloudevents+json"


@dataclass(frozen=True)
class CloudEvent:
    id: str
    body: bytes
    """The event's data as JSON bytes (empty: no data)."""

    @property
    def execution(self) -> str:
        return execution_for(self.id)


def execution_for(event_id: str) -> str:
    """The id itself when it is a subject token, else a stable digest of it."""
    if subjects.is_valid_token(event_id):
        return event_id
    return "ce-" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def cloudevent(headers: Mapping[str, str], body: bytes) -> CloudEvent | None:
    """The CloudEvent a request carries, or None; :class:`BadInput` when it is malformed."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        try:
            event = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise BadInput(f"malformed CloudEvent: {exc}") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
            raise BadInput("a structured CloudEvent needs a string `id`")
        if "data_base64" in event:
            raise BadInput("CloudEvent `data_base64` is not supported: send JSON `data`")
        data = msgspec.json.encode(event["data"]) if "data" in event else b""
        return CloudEvent(event["id"], data)
    event_id = headers.get("ce-id")
    if event_id is None:
        return None
    if not event_id or "ce-specversion" not in headers:
        raise BadInput("a binary CloudEvent needs non-empty ce-id and ce-specversion headers")
    return CloudEvent(event_id, body)
