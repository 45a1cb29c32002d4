"""The HTTP bridge on a real nats-server and real hosts, through real HTTP requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.triggers.bridge import BridgeSettings
from nanoservice.triggers.service import TriggerOptions, Triggers
from tests.integration.triggers_support import workflows

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREET = """
name: greet
input:
  type: object
  required: [name]
  properties:
    name: {type: string, minLength: 1}
    age: {type: integer}
trigger:
  http:
    - {method: POST, path: "/greet/{lang}", headers: [X-Tenant]}
    - {method: POST, path: /greet-later, mode: async}
steps:
  hello:
    node: transform
    with:
      expr: '{"message": "hi " + input.name, "lang": has(input.lang) ? input.lang : "",
              "tenant": has(input.x_tenant) ? input.x_tenant : "none",
              "q": has(input.q) ? input.q : ""}'
"""

SLOW = """
name: slow
trigger:
  http:
    - {method: POST, path: /slow, timeout: 20}
    - {method: POST, path: /slow/short, timeout: 0.3}
steps:
  wait:
    node: delay
    with: {seconds: 1.5}
"""

CREATED = """
name: created
trigger:
  http: {method: PUT, path: "/things/{id}", response: http}
steps:
  make:
    node: transform
    with:
      expr: '{"status": 201, "headers": {"x-made": input.id}, "body": {"id": input.id}}'
"""

FAILING = """
name: failing
trigger:
  http: {method: POST, path: /fail}
steps:
  boom:
    node: transform
    with:
      expr: 'int("not a number")'
    retry: {max_attempts: 1}
"""

SETTINGS = BridgeSettings(max_body=1024, body_timeout=1.0, header_timeout=1.0, max_in_flight=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bridge(server: LocalServer) -> AsyncIterator[Triggers]:
    options = TriggerOptions(port=0, settings=SETTINGS, schedules=False)
    async with workflows(server.url, [GREET, SLOW, CREATED, FAILING], options) as (_, _, t):
        assert t is not None
        yield t


@pytest_asyncio.fixture(loop_scope="module")
async def http(bridge: Triggers) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.url or "", timeout=30) as client:
        yield client


async def test_sync_route_returns_the_output_with_path_query_and_headers(
    http: httpx.AsyncClient,
) -> None:
    r = await http.post("/greet/fr?q=1", json={"name": "Ada"}, headers={"X-Tenant": "acme"})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "hi Ada", "lang": "fr", "tenant": "acme", "q": "1"}
    assert r.headers["nano-execution"]


async def test_request_id_becomes_the_execution_and_a_repeat_returns_its_outcome(
    http: httpx.AsyncClient,
) -> None:
    first = await http.post("/greet/en", json={"name": "Bo"}, headers={"X-Request-Id": "req-1"})
    again = await http.post("/greet/en", json={"name": "Cy"}, headers={"X-Request-Id": "req-1"})
    assert first.headers["nano-execution"] == again.headers["nano-execution"] == "req-1"
    assert again.json()["message"] == "hi Bo"  # the first run's outcome, not a second run
    bad = await http.post("/greet/en", json={"name": "Bo"}, headers={"X-Request-Id": "a b"})
    assert bad.status_code == 400 and "x-request-id" in bad.json()["error"]


async def test_async_route_answers_202_and_the_location_reports_the_result(
    http: httpx.AsyncClient,
) -> None:
    r = await http.post("/greet-later", json={"name": "Di"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert location == f"/executions/{r.json()['execution']}"
    for _ in range(100):
        status = (await http.get(location)).json()
        if status["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "succeeded"
    assert status["output"]["message"] == "hi Di"
    missing = await http.get("/executions/nosuchexecution")
    assert missing.status_code == 404


async def test_workflow_sets_status_and_headers(http: httpx.AsyncClient) -> None:
    r = await http.put("/things/t7")
    assert r.status_code == 201
    assert r.headers["x-made"] == "t7"
    assert r.json() == {"id": "t7"}


async def test_failed_execution_is_500_with_the_reason(http: httpx.AsyncClient) -> None:
    r = await http.post("/fail", json={})
    assert r.status_code == 500
    body = r.json()
    assert body["step"] == "boom" and body["execution"] and body["detail"]["message"]


async def test_bad_requests_get_their_status_and_a_message(http: httpx.AsyncClient) -> None:
    r = await http.post("/greet/en", content=b'{"name": ', headers={"content-type": "x"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = await http.post("/greet/en", json={"age": "old"})
    assert r.status_code == 422
    fields = {p["field"]: p["problem"] for p in r.json()["problems"]}
    assert fields["name"] == "is required"
    assert "integer" in fields["age"]
    assert "'name'" in r.json()["error"] or "'age'" in r.json()["error"]
    r = await http.post("/nowhere", json={})
    assert r.status_code == 404 and "/nowhere" in r.json()["error"]
    r = await http.get("/greet/en")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await http.post("/greet/en", json={"name": "x" * 2000})
    assert r.status_code == 413


async def test_body_limit_holds_without_content_length(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    r = await http.post("/greet/en", content=chunks())  # chunked: no Content-Length
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


async def test_sync_timeout_is_504_with_the_execution_which_goes_on(
    http: httpx.AsyncClient,
) -> None:
    r = await http.post("/slow/short", json={"n": 1})
    assert r.status_code == 504
    execution = r.json()["execution"]
    assert r.headers["nano-execution"] == execution
    for _ in range(100):
        status = (await http.get(f"/executions/{execution}")).json()
        if status["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert status == {
        "execution": execution,
        "workflow": "slow",
        "status": "succeeded",
        "output": {"n": 1},
    }


async def test_overload_is_503_with_retry_after(http: httpx.AsyncClient) -> None:
    busy = [asyncio.create_task(http.post("/slow", json={"i": i})) for i in range(3)]
    await asyncio.sleep(0.3)  # the three are in flight (each takes 1.5 s)
    r = await http.post("/slow", json={"i": 3})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "overloaded" in r.json()["error"]
    assert [x.status_code for x in await asyncio.gather(*busy)] == [200, 200, 200]


async def _raw(bridge: Triggers) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert bridge.url is not None
    host, port = bridge.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_a_client_trickling_headers_is_disconnected(bridge: Triggers) -> None:
    reader, writer = await _raw(bridge)
    request = b"POST /greet/en HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    closed = False
    for byte in request * 5:  # one byte every 0.1 s: far past the 1 s header deadline
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        await asyncio.sleep(0.1)
    if not closed:
        closed = await asyncio.wait_for(reader.read(), 5) == b""
    assert closed, "the server kept a trickling connection open"
    writer.close()


async def test_a_client_trickling_the_body_gets_408(bridge: Triggers) -> None:
    reader, writer = await _raw(bridge)
    body = json.dumps({"name": "slowpoke"}).encode()
    writer.write(
        b"POST /greet/en HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    for byte in body[:5]:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.3)
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.startswith(b"HTTP/1.1 408"), head
    writer.close()


async def test_openapi_health_and_readiness(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/greet/{lang}"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["name"]
    assert {p["name"] for p in op["parameters"]} >= {"lang", "X-Tenant"}
    assert "202" in doc["paths"]["/greet-later"]["post"]["responses"]
    assert (await http.get("/healthz")).status_code == 200
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["routes"] == 6


async def test_waits_share_the_process_subscriptions(
    bridge: Triggers, http: httpx.AsyncClient
) -> None:
    subs = len(bridge.nc._subs)  # nats-py's table of this connection's subscriptions
    seen: list[int] = []

    async def one(i: int) -> int:
        r = await http.post("/slow", json={"i": i})
        return r.status_code

    tasks = [asyncio.create_task(one(i)) for i in range(3)]
    for _ in range(20):
        await asyncio.sleep(0.05)
        seen.append(len(bridge.nc._subs))
    assert await asyncio.gather(*tasks) == [200, 200, 200]
    assert bridge.results.waiting == 0
    assert set(seen) == {subs}, "a wait opened a subscription of its own"


async def test_a_cloudevent_gives_its_data_and_its_id_names_the_execution(
    http: httpx.AsyncClient,
) -> None:
    binary = {"ce-id": "evt-1", "ce-specversion": "1.0", "ce-type": "t", "ce-source": "s"}
    r = await http.post("/greet/en", json={"name": "Ev"}, headers=binary)
    assert r.status_code == 200 and r.headers["nano-execution"] == "evt-1"
    assert r.json()["message"] == "hi Ev"
    event = {"specversion": "1.0", "id": "id with spaces", "type": "t", "source": "s"}
    structured = {"content-type": "application/cloudevents+json"}
    r = await http.post(
        "/greet/de", content=json.dumps({**event, "data": {"name": "St"}}), headers=structured
    )
    assert r.status_code == 200 and r.json()["message"] == "hi St"
    execution = r.headers["nano-execution"]
    assert execution.startswith("ce-")
    # the same event again is the same execution: its outcome, not a second run
    again = await http.post(
        "/greet/de", content=json.dumps({**event, "data": {"name": "Other"}}), headers=structured
    )
    assert again.headers["nano-execution"] == execution and again.json()["message"] == "hi St"
    r = await http.post("/greet/en", content=b'{"data": 1}', headers=structured)
    assert r.status_code == 400 and "needs a string `id`" in r.json()["error"]


async def test_a_workflow_provisioned_later_is_served_without_a_restart(
    server: LocalServer, http: httpx.AsyncClient
) -> None:
    import nats

    from nanoservice.nats.provision import provision
    from nanoservice.workflow.compiler import compile_text
    from tests.integration.triggers_support import REGISTRY

    assert (await http.post("/added", json={})).status_code == 404
    text = "name: added\ntrigger: {http: {path: /added, mode: async}}\nsteps:\n  a: {node: log}\n"
    nc = await nats.connect(server.url)
    try:
        await provision(nc.jetstream(), compile_text(text, REGISTRY, file="added.yaml"))
    finally:
        await nc.close()
    for _ in range(100):  # the bridge re-reads the stored tables every 2 s
        r = await http.post("/added", json={})
        if r.status_code != 404:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 202, r.text
