"""The JetStream publisher on a real server: PubAck timeouts and the plain-publish fallback."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from nanoservice.nats import wire
from nanoservice.nats.transport import Publisher
from nanoservice.nats.wire import PublishError

BOUND = 20.0  # waits are bounded by this; no test expects a duration


async def test_a_publish_whose_puback_never_comes_fails_after_ack_timeout(nc: NATS) -> None:
    # A core subscriber takes the message and never answers: no PubAck, no "no responders".
    swallowed: list[bytes] = []

    async def swallow(msg: object) -> None:
        swallowed.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe("silent.x", cb=swallow)
    await nc.jetstream().add_stream(StreamConfig(name="KEPT", subjects=["kept.>"]))
    publisher = Publisher(nc, ack_timeout=0.5)
    await publisher.start()
    try:
        lost = await publisher.publish("silent.x", b"hello")
        kept = await publisher.publish("kept.a", b"stored")
        assert await asyncio.wait_for(kept, BOUND) == 1
        with pytest.raises(PublishError, match="no PubAck in time"):
            await asyncio.wait_for(lost, BOUND)
    finally:
        await publisher.close()
    assert swallowed == [b"hello"]


async def test_messages_flow_through_plain_publish_without_the_internals(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If nats-py's internals were gone, ``send`` uses ``nc.publish``: same messages stored."""
    monkeypatch.setattr(wire, "_DIRECT", False)
    published: list[str] = []
    real_publish = nc.publish

    async def spy(subject: str, *args: object, **kwargs: object) -> None:
        published.append(subject)
        await real_publish(subject, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(nc, "publish", spy)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="FALLBACK", subjects=["fb.>"]))
    publisher = Publisher(nc)
    await publisher.start()
    try:
        futures = [
            await publisher.publish(f"fb.{i}", b"m%d" % i, {"Nats-Msg-Id": f"id-{i}"})
            for i in range(3)
        ]
        seqs = await asyncio.wait_for(asyncio.gather(*futures), BOUND)
        again = await publisher.publish("fb.0", b"m0", {"Nats-Msg-Id": "id-0"})
        await asyncio.wait_for(again, BOUND)
    finally:
        await publisher.close()
    assert seqs == [1, 2, 3]
    stored = await js.get_msg("FALLBACK", 2)
    assert stored.data == b"m1" and stored.headers == {"Nats-Msg-Id": "id-1"}
    assert (await js.stream_info("FALLBACK")).state.messages == 3  # the repeat was deduplicated
    assert [s for s in published if s.startswith("fb.")] == ["fb.0", "fb.1", "fb.2", "fb.0"]
