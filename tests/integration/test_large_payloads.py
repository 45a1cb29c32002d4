"""Large payloads on a real nats-server (default 1 MiB max_payload): frame size checks that
count headers, and the claim check that carries big bodies through the object store."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from nanoservice.nats.wire import PayloadTooLargeError, send


async def test_headers_that_push_a_frame_over_max_payload_are_refused_locally(
    nats_url: str,
) -> None:
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        got: list[bytes] = []

        async def on_msg(msg: Msg) -> None:
            got.append(msg.data)

        await nc.subscribe("t.after", cb=on_msg)
        headers = {"Nano-Padding": "x" * 200}
        body = b"b" * (nc.max_payload - 100)  # fits alone; with the headers it does not
        with pytest.raises(PayloadTooLargeError, match="max payload"):
            await send(nc, "t.big", body, headers=headers)
        await nc.flush()
        await send(nc, "t.after", b"still here")
        await nc.flush()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert nc.is_connected and got == [b"still here"]
    finally:
        await nc.close()
