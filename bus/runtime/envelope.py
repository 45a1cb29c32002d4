"""The message body and the headers that travel with it (see docs/protocol.md).

Headers carry what routing needs (execution, workflow, step, route, attempt, trace context,
de-duplication id), so routing never decodes a body. The body is JSON:

    {"input": <trigger payload>, "prev": <output of the sending step>,
     "steps": {"<step>": {"output": ...}}, "vars": {...}}

``steps`` carries only the outputs that later steps reference (the compiler works it out).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "DeadLetter",
    "Envelope",
    "ErrorInfo",
    "Result",
    "decode_dead_letter",
    "decode_envelope",
    "decode_result",
    "encode",
    "loop_suffix",
    "msg_id",
]


class Envelope(msgspec.Struct, omit_defaults=True):
    """What a step receives."""

    input: Any = None
    prev: Any = None
    steps: dict[str, dict[str, Any]] = {}
    vars: dict[str, Any] = {}
    loops: dict[str, int] = {}
    """Iterations done so far of the loops this message is inside, by loop step."""
    parent: str | None = None
    """Subject to return the result to, when this execution was called by another."""
    parent_revision: str | None = None
    """The table revision the calling execution runs on (its return must run on it too)."""


class ErrorInfo(msgspec.Struct):
    type: str
    message: str


class Result(msgspec.Struct, omit_defaults=True):
    """Body of ``nano.<wf>._done.<execution>``."""

    output: Any = None
    step: str = ""


class DeadLetter(msgspec.Struct, omit_defaults=True):
    """Body of ``nano.<wf>._dlq.<execution>``: why, where, and the message that failed.

    ``subject``, ``headers`` and ``data`` are the failed message as it was delivered, so it
    can be re-driven. A body too big to embed is cut to a preview (``truncated``); the full
    message stays in the stream at ``stream_seq``.
    """

    step: str
    error: ErrorInfo
    attempts: int
    subject: str
    data: Any = None
    headers: dict[str, str] = {}
    stream_seq: int = 0
    truncated: bool = False


_encoder = msgspec.json.Encoder()
encode = _encoder.encode
decode_envelope = msgspec.json.Decoder(Envelope).decode
decode_result = msgspec.json.Decoder(Result).decode
decode_dead_letter = msgspec.json.Decoder(DeadLetter).decode


def msg_id(
    execution: str, from_step: str, to_step: str, loops: dict[str, int] | None = None
) -> str:
    """JetStream de-duplication id: a re-publish after a crash is dropped by the server.

    Inside loops the iteration counters are part of it, so iterations do not collide.
    """
    base = f"{execution}:{from_step}:{to_step}"
    return f"{base}:{loop_suffix(loops)}" if loops else base


def loop_suffix(loops: dict[str, int] | None) -> str:
    """A token naming the loop iterations (empty outside loops)."""
    if not loops:
        return ""
    return "-".join(f"{k}{v}" for k, v in sorted(loops.items()))
