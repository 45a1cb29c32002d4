"""How the engine writes messages: NATS client-protocol frames, straight to the connection.

nats-py's ``publish`` validates every subject and header name on every call, which costs
more than the rest of a publish; the engine builds its subjects and headers from validated
names, so it frames ``PUB``/``HPUB`` itself and hands the bytes to the connection's buffer.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS

from nanoservice.errors import NonRetryableError
from nanoservice.types import Headers

__all__ = ["PayloadTooLargeError", "PublishError", "frame", "header_block", "send"]


class PublishError(Exception):
    """The server did not store a message (error PubAck, no stream, or no answer in time)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooLargeError(PublishError, NonRetryableError):
    """A message over the server's max payload: retrying cannot make it fit."""


def _clean(value: str) -> str:
    return value if "\n" not in value and "\r" not in value else " ".join(value.splitlines())


def header_block(headers: Headers | None) -> bytes:
    """The header block of an HPUB (``NATS/1.0`` line, one line a header, blank line); empty
    without headers. The server counts it against ``max_payload`` with the body."""
    if not headers:
        return b""
    lines = "".join(f"{k}: {_clean(v)}\r\n" for k, v in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def frame(
    subject: str, reply: str, data: bytes, headers: Headers | None, head: bytes | None = None
) -> bytes:
    """The PUB/HPUB protocol line and payload for one message (NATS client protocol).

    ``head``: the header block if already built (:func:`header_block`).
    """
    if not headers:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(data), data)
    if head is None:
        head = header_block(headers)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(head),
        len(head) + len(data),
        head,
        data,
    )


async def send(
    nc: NATS, subject: str, data: bytes, reply: str = "", headers: Headers | None = None
) -> None:
    """Core publish of an engine-built message, straight into the connection's buffer.

    nats-py's ``publish`` validates every subject and header name; the engine builds its
    own from validated names, and that validation costs more than the rest of a publish.
    Falls back to ``publish`` if the client's internals are not the ones expected.
    """
    head = header_block(headers) if headers else b""
    if len(head) + len(data) > nc.max_payload:
        raise PayloadTooLargeError(
            f"message of {len(data)} bytes (+{len(head)} bytes of headers) to {subject} "
            f"exceeds the server's max payload of {nc.max_payload} bytes"
        )
    if not _DIRECT:
        await nc.publish(subject, data, reply=reply, headers=dict(headers or {}) or None)
        return
    if nc.is_closed:
        raise PublishError("connection closed")
    command = frame(subject, reply, data, headers, head)
    if not nc.is_connected and nc._pending_data_size + len(command) > nc._max_pending_size:
        raise PublishError("disconnected and the reconnect buffer is full")
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(data)
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


_DIRECT = all(hasattr(NATS, a) for a in ("_send_command", "_flush_pending"))
