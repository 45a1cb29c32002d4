"""Starting workflows from plain NATS clients: a publish to a foreign subject, and a
request to ``nano._request.<workflow>`` answered with the outcome."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from nanoservice import subjects
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.triggers.requests import STATUS
from nanoservice.triggers.service import TriggerOptions, Triggers
from nanoservice.types import EXECUTION, MSG_ID
from tests.integration.triggers_support import workflows

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORDERS = """
name: orders
input:
  type: object
  required: [id]
  properties:
    id: {type: string}
trigger:
  subjects: [orders.created]
steps:
  total:
    node: transform
    with:
      expr: '{"order": input.id, "ok": true}'
"""

NODE_CLIENT = Path(__file__).parent / "node_client"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(server: LocalServer) -> AsyncIterator[Triggers]:
    options = TriggerOptions(http=False, schedules=False)
    async with workflows(server.url, [ORDERS], options) as (_, _, triggers):
        assert triggers is not None
        yield triggers


@pytest_asyncio.fixture(loop_scope="module")
async def plain(server: LocalServer, running: Triggers) -> AsyncIterator[NATS]:
    """A plain nats-py client, knowing nothing of nanoservice."""
    nc = await nats.connect(server.url)
    yield nc
    await nc.close()


async def test_a_plain_publish_to_a_foreign_subject_starts_one_execution(plain: NATS) -> None:
    seen: list[str] = []
    sub = await plain.subscribe("nano.orders._done.*", cb=functools.partial(_note, seen))
    await plain.flush()
    await plain.publish("orders.created", b'{"id": "o-1"}')  # core NATS: no JetStream API
    js = plain.jetstream()
    # A JetStream publish repeated with one Nats-Msg-Id is stored once: one execution.
    for _ in range(2):
        await js.publish("orders.created", b'{"id": "o-2"}', headers={MSG_ID: "order-o-2"})
    for _ in range(200):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a wrong third result to show
    await sub.unsubscribe()
    orders = sorted(json.loads(body)["output"]["order"] for _, body in seen)
    assert orders == ["o-1", "o-2"]
    # the execution id is derived from the stored message (its stream sequence)
    assert all(subject.rsplit(".", 1)[-1].startswith("s") for subject, _ in seen)


async def _note(seen: list[tuple[str, bytes]], msg: nats.aio.msg.Msg) -> None:  # type: ignore[type-arg]
    seen.append((msg.subject, msg.data))


async def test_a_request_gets_the_outcome_as_its_reply(plain: NATS) -> None:
    reply = await plain.request(
        subjects.request_subject("orders"), b'{"id": "o-3"}', timeout=20, headers={EXECUTION: "r-3"}
    )
    assert reply.headers is not None
    assert reply.headers[STATUS] == "ok" and reply.headers[EXECUTION] == "r-3"
    assert msgspec.json.decode(reply.data) == {"order": "o-3", "ok": True}
    # stored in JetStream before it ran
    stored = await plain.jetstream().get_last_msg(
        subjects.stream_name("orders"), subjects.start_subject("orders", "r-3")
    )
    assert msgspec.json.decode(stored.data) == {"id": "o-3"}
    # asking again with the same id returns that outcome; the new payload is not run
    again = await plain.request(
        subjects.request_subject("orders"), b'{"id": "o-4"}', timeout=20, headers={EXECUTION: "r-3"}
    )
    assert msgspec.json.decode(again.data) == {"order": "o-3", "ok": True}


async def test_bad_requests_get_an_invalid_reply_saying_why(plain: NATS) -> None:
    cases = {
        (subjects.request_subject("orders"), b'{"id": 7}'): "input field 'id'",
        (subjects.request_subject("orders"), b"{not json"): "malformed JSON",
        (subjects.request_subject("nosuch"), b"{}"): "no workflow 'nosuch'",
    }
    for (subject, body), says in cases.items():
        reply = await plain.request(subject, body, timeout=10)
        assert reply.headers is not None and reply.headers[STATUS] == "invalid"
        assert says in msgspec.json.decode(reply.data)["error"]


async def test_a_node_js_client_publishes_and_requests(server: LocalServer, plain: NATS) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_CLIENT / "node_modules" / "@nats-io" / "transport-node").is_dir():
        pytest.skip(f"npm packages absent: run `npm ci` in {NODE_CLIENT}")
    seen: list[tuple[str, bytes]] = []
    sub = await plain.subscribe("nano.orders._done.*", cb=functools.partial(_note, seen))
    await plain.flush()
    proc = await asyncio.create_subprocess_exec(
        node,
        "request.mjs",
        server.url,
        "orders",
        "orders.created",
        '{"id": "from-node"}',
        cwd=NODE_CLIENT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    reply = json.loads(out.decode().strip().splitlines()[-1])
    assert reply == {
        "status": "ok",
        "execution": "node-1",
        "body": {"order": "from-node", "ok": True},
    }
    for _ in range(200):  # the plain publish ran too (and the request)
        if sum(json.loads(b)["output"]["order"] == "from-node" for _, b in seen) >= 2:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    assert sum(json.loads(b)["output"]["order"] == "from-node" for _, b in seen) == 2
