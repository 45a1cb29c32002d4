"""Large payloads on a real nats-server (default 1 MiB max_payload): frame size checks that
count headers, and the claim check that carries big bodies through the object store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ObjectMeta, ObjectMetaOptions

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.claims import CLAIMS, ClaimMissingError, Claims, claims_store
from nanoservice.nats.client import Client
from nanoservice.nats.provision import provision
from nanoservice.nats.puller import Puller
from nanoservice.nats.transport import NatsTransport
from nanoservice.nats.wire import PayloadTooLargeError, send
from nanoservice.nodes.log import log
from nanoservice.nodes.transform import transform
from nanoservice.runtime.envelope import decode_dead_letter
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.types import CLAIM, CLAIM_SIZE, MSG_ID
from nanoservice.workflow.compiler import compile_text


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


attempts: dict[str, list[int]] = {}


@node("fails_once")
async def fails_once(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    """Records the size of what it saw; fails on the first attempt."""
    attempts.setdefault(ctx.execution_id, []).append(len(input["blob"]))
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return {"size": len(input["blob"])}


REGISTRY = Registry([transform, log, fails_once])

BIG = 5_000_000

THREE_STEPS = """
name: bigflow
input: {type: object, required: [blob]}
steps:
  a: {node: transform, with: {expr: '{"blob": input.blob, "n": 1}'}, next: b}
  b: {node: transform, with: {expr: '{"blob": prev.blob + "b", "n": prev.n + 1}'}, next: c}
  c: {node: transform, with: {expr: '{"blob": prev.blob + "c", "n": prev.n + 1}'}}
output: >-
  {"size": size(steps.c.output.blob), "n": steps.c.output.n,
   "tail": steps.c.output.blob.substring(size(steps.c.output.blob) - 3),
   "same_start": steps.c.output.blob.startsWith(input.blob)}
"""


@asynccontextmanager
async def running(url: str, text: str) -> AsyncIterator[tuple[Client, NATS]]:
    """A provisioned workflow, one host over the NATS backend, and a client."""
    table = compile_text(text, REGISTRY, file="test.yaml")
    nc = await nats.connect(url)
    try:
        async with nats_backend(url) as backend:
            await backend.provision(table)
            async with serve(backend, [table], REGISTRY, drain_timeout=2):
                yield Client(nc), nc
    finally:
        await nc.close()


async def claimed_objects(nc: NATS) -> int:
    store = await nc.jetstream().object_store(CLAIMS)
    return len(await store.list())


async def test_a_5mb_trigger_runs_through_three_steps_as_claim_checks(nats_url: str) -> None:
    blob = "x" * BIG
    async with running(nats_url, THREE_STEPS) as (client, nc):
        assert nc.max_payload == 1024 * 1024
        outcome = await client.run("bigflow", {"blob": blob}, timeout=60)
        assert outcome.ok, outcome
        assert outcome.output == {"size": BIG + 2, "n": 3, "tail": "xbc", "same_start": True}
        # the trigger and the three step messages went as claims: each stored message is small
        info = await nc.jetstream().stream_info("NANO_BIGFLOW")
        assert info.state.messages == 4 and info.state.bytes < 64 * 1024
        assert await claimed_objects(nc) == 3  # trigger, a -> b, b -> c


async def test_a_redelivered_claimed_message_still_resolves(nats_url: str) -> None:
    wf = """
name: retried
steps:
  a: {node: fails_once, retry: {max_attempts: 3, backoff: [0.05]}}
"""
    async with running(nats_url, wf) as (client, _):
        outcome = await client.run("retried", {"blob": "y" * BIG}, timeout=60)
    assert outcome.ok, outcome
    assert outcome.output == {"size": BIG}
    assert attempts[outcome.execution] == [BIG, BIG]


async def test_a_claim_whose_object_is_gone_is_dead_lettered_with_the_reason(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Puller, "claim_retry_delay", 0.05)
    wf = "name: gone\nsteps:\n  a: {node: transform, with: {expr: 'input'}}\n"
    async with running(nats_url, wf) as (client, nc):
        await claims_store(nc.jetstream())
        waiter = await client._watch("gone", "e1")
        try:
            await nc.jetstream().publish(
                "nano.gone._start.e1", b"", headers={CLAIM: "no-such-object", CLAIM_SIZE: "9"}
            )
            outcome = await asyncio.wait_for(waiter.outcome, 20)
        finally:
            await waiter.close()
        dead = await nc.jetstream().get_last_msg("NANO_GONE", "nano.gone._dlq.e1")
    assert not outcome.ok and outcome.error is not None
    assert outcome.error["attempts"] == 3  # nak'ed twice, then handed over as failed
    letter = decode_dead_letter(dead.data)
    assert "'no-such-object' is not in bucket nano_claims" in str(letter.data)


async def test_a_body_under_the_threshold_whose_headers_overflow_is_claimed(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    transport = NatsTransport(nc, claim_threshold=nc.max_payload - 100)
    await transport.start()
    try:
        body = b"z" * (nc.max_payload - 110)  # under the threshold, but not with its headers
        headers = {"Nano-Padding": "p" * 200, MSG_ID: "m1"}
        seq = await (await transport.publish("t.one", body, headers))
        stored = await js.get_msg("T", seq)
        assert stored.data in (b"", None) and stored.headers is not None
        assert stored.headers[CLAIM] == "t.one/m1" and stored.headers[CLAIM_SIZE] == str(len(body))
        assert (await (await js.object_store(CLAIMS)).get("t.one/m1")).data == body
    finally:
        await transport.close()


async def test_the_claims_bucket_lives_as_long_as_the_longest_stream(nc: NATS) -> None:
    js = nc.jetstream()
    spec = "name: {name}\nstream: {{max_age: {age}}}\nsteps:\n  a: {{node: log}}\n"
    for name, age in (("short", 3600), ("long", 172_800), ("mid", 7200)):
        table = compile_text(spec.format(name=name, age=age), REGISTRY, file="t.yaml")
        await provision(js, table)
    store = await js.object_store(CLAIMS)
    assert (await store.status()).ttl == 172_800


async def test_a_claim_of_many_chunks_is_read_whole_and_checked(nc: NATS) -> None:
    store = await claims_store(nc.jetstream())
    data = os.urandom(300_000)
    meta = ObjectMeta(name="many", options=ObjectMetaOptions(max_chunk_size=100))
    await store.put("many", data, meta=meta)  # 3000 chunks
    claims = Claims(nc)
    assert await claims.fetch({CLAIM: "many", CLAIM_SIZE: "300000"}) == data
    with pytest.raises(ClaimMissingError, match="has 300000 bytes, not 5"):
        await claims.fetch({CLAIM: "many", CLAIM_SIZE: "5"})
