"""Claim check: a body too big for one message travels through the ``nano_claims`` object store.

The publisher stores the body as an object and sends the message with an empty body and a
``Nano-Claim: <object name>`` header (plus ``Nano-Claim-Size``); the puller fetches the
object before the handler sees the delivery. Object names come from the subject and the
``Nats-Msg-Id``, so a re-publish after a crash overwrites the object instead of orphaning one.
The bucket's TTL is at least the largest ``max_age`` of a provisioned stream: claims age out
with the executions that reference them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, PubAck
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE, ObjectStore

from nanoservice.errors import NanoError
from nanoservice.nats.wire import PayloadTooLargeError, header_block
from nanoservice.types import CLAIM, CLAIM_SIZE, MSG_ID, Headers

__all__ = [
    "CLAIMS",
    "DEFAULT_TTL",
    "THRESHOLD_ENV",
    "ClaimMissingError",
    "Claims",
    "body_of",
    "claim_threshold",
    "claims_store",
    "missing_body",
    "object_name",
    "publish",
]

CLAIMS = "nano_claims"
THRESHOLD_ENV = "NANO_CLAIM_THRESHOLD"
DEFAULT_TTL = 86_400.0
"""TTL of a bucket created by a publisher before any ``provision`` (the default ``max_age``)."""


class ClaimMissingError(NanoError):
    """A claimed body could not be fetched: aged out of the bucket, or not readable."""


def claim_threshold(
    max_payload: int, configured: int | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Bodies over this many bytes are claimed.

    ``configured`` if given, else ``$NANO_CLAIM_THRESHOLD``, else 7/8 of the server's
    ``max_payload`` (the rest is room for headers; a frame still over the limit is claimed
    too, see :class:`~nanoservice.nats.transport.Publisher`).
    """
    value = configured
    if value is None:
        raw = (os.environ if env is None else env).get(THRESHOLD_ENV, "").strip()
        if raw:
            try:
                value = int(raw)
            except ValueError:
                raise NanoError(f"{THRESHOLD_ENV}={raw!r} is not a number of bytes") from None
    if value is None:
        return max_payload * 7 // 8
    if value < 0:
        raise NanoError(f"claim threshold must be 0 or more bytes, not {value}")
    return value


def object_name(subject: str, headers: Headers | None) -> str:
    """The object a claimed body goes to: stable for a message id, unique otherwise."""
    msg_id = headers.get(MSG_ID) if headers else None
    if msg_id:
        return f"{subject}/{msg_id}"
    return f"{subject}/{os.urandom(12).hex()}"


def missing_body(reason: str) -> bytes:
    """The body handed to the handler when a claim cannot be resolved: the reason, as text.

    It is not JSON on purpose, so the step fails without running its node and its dead
    letter's ``data`` carries the reason.
    """
    return f"claimed body not available: {reason}".encode()


async def claims_store(
    js: JetStreamContext, *, replicas: int = 1, max_age: float | None = None
) -> ObjectStore:
    """The ``nano_claims`` bucket, created if missing; its TTL raised to ``max_age`` if lower."""
    try:
        store = await js.object_store(CLAIMS)
    except BucketNotFoundError:
        config = ObjectStoreConfig(
            bucket=CLAIMS,
            ttl=max_age or DEFAULT_TTL,
            replicas=replicas,
            description="nanoservice claim checks: bodies too big for a message",
        )
        try:
            return await js.create_object_store(CLAIMS, config)
        except BadRequestError:  # created by someone else meanwhile
            return await js.object_store(CLAIMS)
    if max_age:
        info = await js.stream_info(store._stream)
        ttl = info.config.max_age or 0.0
        if ttl and ttl < max_age:
            info.config.max_age = max_age
            await js.update_stream(info.config)
    return store


class Claims:
    """The claim check of one connection: stores big bodies, fetches claimed ones."""

    def __init__(
        self, nc: NATS, *, threshold: int | None = None, fetch_timeout: float = 30.0
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.threshold = claim_threshold(nc.max_payload, threshold)
        self.fetch_timeout = fetch_timeout
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def store(self) -> ObjectStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    self._store = await claims_store(self.js)
        return self._store

    async def stash(
        self, subject: str, data: bytes, headers: Headers | None
    ) -> tuple[bytes, dict[str, str]]:
        """Store ``data``; returns the empty body and the headers that claim it."""
        name = object_name(subject, headers)
        # Chunks are messages too: on a server with a small max_payload they must fit it.
        chunk = min(OBJ_DEFAULT_CHUNK_SIZE, max(512, self.nc.max_payload - 1024))
        meta = ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=chunk))
        await (await self.store()).put(name, data, meta=meta)
        return b"", {**(headers or {}), CLAIM: name, CLAIM_SIZE: str(len(data))}

    async def fetch(self, headers: Headers) -> bytes:
        """The claimed body; raises :class:`ClaimMissingError` if it cannot be had."""
        name = headers[CLAIM]
        try:
            store = self._store or await self.store()
            async with asyncio.timeout(self.fetch_timeout):
                info = await store.get_info(name)
                if not info.size:
                    data = b""
                elif _batch_gets(self.nc):
                    data = await _read_chunks(self.nc, store, info)
                else:  # batched direct gets need nats-server 2.11
                    data = (await store.get(name)).data or b""
        except ClaimMissingError:
            raise
        except NotFoundError:
            raise ClaimMissingError(
                f"object {name!r} is not in bucket {CLAIMS} (aged out or deleted)"
            ) from None
        except TimeoutError:
            raise ClaimMissingError(
                f"object {name!r} of bucket {CLAIMS} not read in {self.fetch_timeout:g} s"
            ) from None
        except Exception as exc:
            raise ClaimMissingError(f"object {name!r} of bucket {CLAIMS}: {exc}") from None
        size = headers.get(CLAIM_SIZE)
        if size is not None and size.isdigit() and int(size) != len(data):
            raise ClaimMissingError(
                f"object {name!r} of bucket {CLAIMS} has {len(data)} bytes, not {size}"
            )
        return data


def _batch_gets(nc: NATS) -> bool:
    try:
        version = nc.connected_server_version
        return (version.major, version.minor) >= (2, 11)
    except Exception:  # not connected, or a version string that is not semver
        return False


async def _read_chunks(nc: NATS, store: ObjectStore, info: ObjectInfo) -> bytes:
    """An object's chunks by batched direct gets (nats-py's ``get`` takes an ordered consumer
    per object, ~20x slower here), checked against the object's digest."""
    subject = f"$O.{CLAIMS}.C.{info.nuid}"
    total = info.chunks or 0
    chunks: list[bytes] = []
    inbox = nc.new_inbox()
    loop = asyncio.get_running_loop()
    batch: list[asyncio.Future[str]] = [loop.create_future()]
    next_seq = 1

    async def on_msg(msg: Msg) -> None:
        nonlocal next_seq
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            chunks.append(msg.data)
            next_seq = int((msg.headers or {}).get("Nats-Sequence", next_seq)) + 1
        if (status is not None or len(chunks) == total) and not batch[0].done():
            batch[0].set_result(status or "")

    sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
    try:
        while len(chunks) < total:
            batch[0] = loop.create_future()
            request = {"next_by_subj": subject, "batch": total - len(chunks), "seq": next_seq}
            await nc.publish(
                f"$JS.API.DIRECT.GET.{store._stream}", json.dumps(request).encode(), reply=inbox
            )
            if await batch[0] not in ("", "204"):  # 204: the end of a (capped) batch
                raise NotFoundError
    finally:
        await sub.unsubscribe()
    data = b"".join(chunks)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    if (info.digest or "").split("=", 1)[-1] != digest:
        raise ClaimMissingError(f"object {info.name!r} of bucket {CLAIMS}: digest mismatch")
    return data


async def publish(
    nc: NATS, subject: str, data: bytes, headers: dict[str, str], *, threshold: int | None = None
) -> PubAck:
    """A JetStream publish (waiting for the PubAck) that claims a body too big to travel.

    The path of triggers (``Client.start``): never a frame the server would refuse.
    """
    claims = Claims(nc, threshold=threshold)
    if len(data) > claims.threshold or len(header_block(headers)) + len(data) > nc.max_payload:
        data, headers = await claims.stash(subject, data, headers)
    size = len(header_block(headers)) + len(data)
    if size > nc.max_payload:
        raise PayloadTooLargeError(
            f"headers of the message to {subject} exceed the server's max payload "
            f"({size} > {nc.max_payload} bytes)"
        )
    return await claims.js.publish(subject, data, headers=headers)


async def body_of(nc: NATS, headers: Headers | None, data: bytes) -> bytes:
    """A message's body, fetched from the object store if the message is a claim check."""
    if headers and CLAIM in headers:
        return await Claims(nc).fetch(headers)
    return data
