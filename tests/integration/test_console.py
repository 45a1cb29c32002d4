"""The web console over real HTTP (uvicorn on a free port) and a real nats-server.

One server per module; each test runs its own workflows (own streams) through ``serve``,
starts a console on them and requests its pages with httpx, as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import uvicorn
from nats.aio.client import Client as NATS

from nanoservice import Context, node
from nanoservice.console import Console, open_console, standalone
from nanoservice.console.hub import Hub
from nanoservice.console.render import environment
from nanoservice.inspect import dlq
from nanoservice.inspect.trace import Trace
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.runtime.serve import serve
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable

BROKEN: set[str] = set()
"""Workflows whose ``shaky`` node fails, until a test fixes them."""

MARKUP = '<script>alert("x")</script><img src=x onerror="alert(1)">'


@node("shaky")
async def shaky(ctx: Context, input: Any) -> Any:
    """Fails with markup in its message while its workflow is in BROKEN."""
    if ctx.workflow in BROKEN:
        raise ValueError(f"bad input {input.get('text', '')} {MARKUP}")
    return {"n": input["n"] * 2}


REGISTRY = Registry.discover()
REGISTRY.add(shaky)


def workflow(name: str) -> str:
    return f"""
name: {name}
steps:
  prepare: {{node: transform, with: {{expr: 'input'}}, next: compute}}
  compute: {{node: shaky, retry: {{max_attempts: 1}}}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as started:
        yield started


@dataclass
class Served:
    url: str
    """The console's address (``.../ui``)."""
    nc: NATS
    tables: dict[str, RoutingTable]
    console: Console
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def served(
    nats_url: str,
    *names: str,
    token: str | None = None,
    history: float = 3600.0,
    keep: int = 500,
) -> AsyncIterator[Served]:
    """Workflows running, a console on them served by uvicorn on a free loopback port."""
    tables = [compile_text(workflow(n), REGISTRY, file=f"{n}.yaml") for n in names]
    nc = await nats.connect(nats_url)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        async with nats_backend(nats_url) as backend:
            for table in tables:
                await backend.provision(table)
            async with (
                serve(backend, tables, REGISTRY, drain_timeout=2),
                open_console(nc, token=token, history=history, keep=keep) as console,
            ):
                config = uvicorn.Config(
                    standalone(console),
                    log_level="warning",
                    lifespan="off",
                    timeout_graceful_shutdown=1,
                )
                web = uvicorn.Server(config)
                task = asyncio.create_task(web.serve(sockets=[sock]))
                try:
                    async with httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}", timeout=10
                    ) as http:
                        yield Served(
                            f"http://127.0.0.1:{port}/ui",
                            nc,
                            {t.workflow: t for t in tables},
                            console,
                            http,
                        )
                finally:
                    web.should_exit = True
                    await asyncio.wait_for(task, 10)
    finally:
        sock.close()
        await nc.close()


EXTERNAL = re.compile(
    r"""(?:src|href|action|data-events)\s*=\s*["']?\s*(?:(?!data:)[a-z][a-z0-9+.-]*:|//)""", re.I
)


def no_external_url(page: str) -> None:
    """No attribute loads or links anything off the console (no scheme, no //host)."""
    assert not EXTERNAL.findall(page), EXTERNAL.findall(page)
    assert "http://" not in page and "https://" not in page


async def get_ok(s: Served, path: str) -> str:
    response = await s.http.get(f"{s.url}{path}")
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    assert "content-security-policy" in response.headers
    return response.text


async def test_every_page_and_fragment_renders_without_any_external_url(
    server: LocalServer,
) -> None:
    BROKEN.add("cs_pages")
    async with served(server.url, "cs_pages") as s:
        client = Client(s.nc)
        BROKEN.discard("cs_pages")
        ok = await client.run("cs_pages", {"n": 2}, timeout=20)
        assert ok.ok, ok
        BROKEN.add("cs_pages")
        failed = await client.run("cs_pages", {"n": 3}, timeout=20)
        assert not failed.ok
        (letter,) = await dlq.dead_letters(s.nc, s.tables, ["cs_pages"])
        ok_id = ok.execution
        pages = {
            "/": ["cs_pages"],
            "/fragments/workflows": ["cs_pages"],
            "/workflows/cs_pages": ["flowchart LR", "compute", 'src="cs_pages/graph.svg"'],
            "/fragments/workflows/cs_pages/steps": ["compute", "prepare"],
            "/executions": [ok_id, failed.execution],
            "/executions?workflow=cs_pages&outcome=failed&since=300": [failed.execution],
            f"/executions/cs_pages/{ok_id}": ["succeeded", "compute", "&#34;n&#34;: 4"],
            f"/executions/cs_pages/{failed.execution}": ["Why it failed", "ValueError"],
            "/dead-letters": [failed.execution],
            "/dead-letters?workflow=cs_pages": [failed.execution],
            f"/dead-letters/cs_pages/{letter.seq}": ["compute", "Retry"],
            f"/dead-letters/cs_pages/{letter.seq}/retry": ["Yes, retry it"],
        }
        for path, expected in pages.items():
            page = await get_ok(s, path)
            no_external_url(page)
            for text in expected:
                assert text in page, (path, text)
        graph = await s.http.get(f"{s.url}/workflows/cs_pages/graph.svg")  # the <img> above
        assert graph.headers["content-type"] == "image/svg+xml"
        assert "<svg" in graph.text and ">compute<" in graph.text and ">prepare<" in graph.text
        filtered = await get_ok(s, "/executions?outcome=failed")
        assert failed.execution in filtered and ok_id not in filtered
        for asset in ("htmx.min.js", "console.js", "console.css"):
            text = await get_ok(s, f"/static/{asset}")
            assert "http://" not in text and "https://" not in text, asset
        home = await s.http.get("/", follow_redirects=False)
        assert home.status_code == 307 and home.headers["location"] == "/ui/"
        missing = await s.http.get(f"{s.url}/executions/cs_pages/nosuchexecution")
        assert missing.status_code == 404
        assert "has no execution" in missing.text and "Traceback" not in missing.text
        unknown = await s.http.get(f"{s.url}/workflows/nope")
        assert unknown.status_code == 404 and "no workflow &#39;nope&#39;" in unknown.text
    BROKEN.discard("cs_pages")


def test_the_vendored_library_is_the_recorded_one() -> None:
    static = Path(__file__).resolve().parents[2] / "bus" / "console" / "static"
    record = (static / "VENDORED.txt").read_text()
    digest = hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest()
    assert f"sha256 {digest}" in record
    assert "htmx.org 2.0.11" in record


async def test_payload_and_error_markup_is_shown_as_text(server: LocalServer) -> None:
    BROKEN.add("cs_escape")
    async with served(server.url, "cs_escape") as s:
        big = "y" * 5000 + MARKUP  # the markup falls past the cut: no half tag either
        failed = await Client(s.nc).run(
            "cs_escape", {"n": 1, "text": MARKUP, "zz_big": big}, timeout=20
        )
        assert not failed.ok
        (letter,) = await dlq.dead_letters(s.nc, s.tables, ["cs_escape"])
        for path in (
            f"/executions/cs_escape/{failed.execution}",
            f"/dead-letters/cs_escape/{letter.seq}",
            "/dead-letters",
        ):
            page = await get_ok(s, path)
            parsed = Parsed(page)
            assert not parsed.injected, (path, parsed.injected)
            assert MARKUP in parsed.text, path  # the node's error message, as text
            if "/executions/" in path:  # the trigger as sent (a step's output has no key order)
                assert json.dumps(MARKUP) in parsed.text, path  # the payload, as text
            no_external_url(page)
            if "/executions/" in path:
                assert "more characters not shown" in parsed.text
                assert "y" * 3000 in parsed.text and "y" * 5000 not in parsed.text
    BROKEN.discard("cs_escape")


class Parsed(HTMLParser):
    """A page's text, and any element or attribute that markup from data could have made."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.injected: list[str] = []
        self.feed(page)
        self.text = "".join(self.chunks)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" or (tag == "script" and not dict(attrs).get("src", "").startswith("/ui/")):
            self.injected.append(tag)
        self.injected += [name for name, _ in attrs if name.startswith("on")]

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


async def read_events(lines: AsyncIterator[str], want: str, timeout: float) -> dict[str, Any]:
    """The first ``execution`` event whose row mentions ``want``."""

    async def scan() -> dict[str, Any]:
        event = ""
        async for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "execution":
                data: dict[str, Any] = json.loads(line.split(":", 1)[1])
                if want in data["html"]:
                    return data
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(scan(), timeout)


async def test_the_event_stream_shows_a_new_execution_and_its_outcome(
    server: LocalServer,
) -> None:
    async with (
        served(server.url, "cs_live", "cs_other") as s,
        s.http.stream("GET", f"{s.url}/events?workflow=cs_live") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        other = await Client(s.nc).start("cs_other", {"n": 1})
        execution = await Client(s.nc).start("cs_live", {"n": 5})
        lines = response.aiter_lines()
        first = await read_events(lines, execution, 10)
        assert first["id"] == f"cs_live.{execution}"
        assert f'href="/ui/executions/cs_live/{execution}"' in first["html"]
        done = await read_events(lines, "succeeded", 10)
        assert execution in done["html"] and other not in done["html"]
        # and the page lists it, without JavaScript
        page = await get_ok(s, "/executions?workflow=cs_live")
        assert execution in page and other not in page


async def test_a_restarted_console_lists_recent_executions_from_the_streams(
    server: LocalServer,
) -> None:
    async with served(server.url, "cs_back") as s:
        outcome = await Client(s.nc).run("cs_back", {"n": 1}, timeout=20)
    async with served(server.url, "cs_back") as s:
        page = await get_ok(s, "/executions?outcome=succeeded")
        assert outcome.execution in page
    async with served(server.url, "cs_back", history=0.001) as s:
        page = await get_ok(s, "/executions")
        assert outcome.execution not in page


async def test_a_restarted_console_reads_back_the_newest_executions(server: LocalServer) -> None:
    async with served(server.url, "cs_many") as s:
        client = Client(s.nc)
        ids = [(await client.run("cs_many", {"n": i}, timeout=20)).execution for i in range(30)]
    async with served(server.url, "cs_many", keep=2) as s:
        listed = [x.execution for x in s.console.hub.recent()]
        page = await get_ok(s, "/executions")
    assert listed == [ids[-1], ids[-2]], (ids, [vars(x) for x in s.console.hub.recent()])
    assert ids[-1] in page and ids[0] not in page


async def test_retry_needs_its_confirmation_and_runs_on_the_fix(server: LocalServer) -> None:
    BROKEN.add("cs_retry")
    async with served(server.url, "cs_retry") as s:
        failed = await Client(s.nc).run("cs_retry", {"n": 21}, timeout=20)
        assert not failed.ok
        (letter,) = await dlq.dead_letters(s.nc, s.tables, ["cs_retry"])
        action = f"{s.url}/dead-letters/cs_retry/{letter.seq}/retry"
        confirm = await get_ok(s, f"/dead-letters/cs_retry/{letter.seq}/retry")
        token = re.search(r'name="confirm" value="([0-9a-f]+)"', confirm)
        assert token is not None

        no_token = await s.http.post(action, data={})
        assert no_token.status_code == 403 and "confirmation token" in no_token.text
        wrong = await s.http.post(action, data={"confirm": "0" * 64})
        assert wrong.status_code == 403
        other_site = await s.http.post(
            action, data={"confirm": token[1]}, headers={"Origin": "http://evil.example"}
        )
        assert other_site.status_code == 403 and "another origin" in other_site.text
        assert await dlq.dead_letters(s.nc, s.tables, ["cs_retry"])  # still there

        BROKEN.discard("cs_retry")  # the fix
        port = s.url.split(":")[2].split("/")[0]
        done = await s.http.post(
            action, data={"confirm": token[1]}, headers={"Origin": f"http://127.0.0.1:{port}"}
        )
        assert done.status_code == 200, done.text
        assert "Re-driven" in done.text and failed.execution in done.text
        outcome = await Client(s.nc).outcome("cs_retry", failed.execution, timeout=20)
        assert outcome.ok and outcome.output == {"n": 42}
        assert not await dlq.dead_letters(s.nc, s.tables, ["cs_retry"])
        again = await s.http.post(action, data={"confirm": token[1]})
        assert again.status_code == 404 and "no dead letter" in again.text
        trace = await get_ok(s, f"/executions/cs_retry/{failed.execution}")
        assert "succeeded" in trace


async def test_with_a_token_every_request_needs_it(server: LocalServer) -> None:
    async with served(server.url, "cs_auth", token="s3cret-token") as s:
        for path in ("/", "/executions", "/events", "/static/console.js", "/dead-letters"):
            denied = await s.http.get(f"{s.url}{path}")
            assert denied.status_code == 401, path
            assert "needs its token" in denied.text
        wrong = await s.http.get(f"{s.url}/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = await s.http.get(f"{s.url}/", headers={"Authorization": "Bearer s3cret-token"})
        assert bearer.status_code == 200 and "cs_auth" in bearer.text
        opened = await s.http.get(f"{s.url}/executions?token=s3cret-token&outcome=failed")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/ui/executions?outcome=failed"
        assert "httponly" in opened.headers["set-cookie"].lower()
        follow = await s.http.get(opened.headers["location"])  # the cookie is kept
        assert follow.status_code == 200 and "Executions" in follow.text


def test_a_running_execution_page_follows_it_and_a_finished_one_does_not() -> None:
    env = environment()
    page = env.get_template("trace.html")
    running = page.render(base="/ui", trace=Trace("wf", "ex1", "running"), bars=[])
    finished = page.render(base="/ui", trace=Trace("wf", "ex1", "succeeded"), bars=[])
    assert 'hx-get="/ui/executions/wf/ex1" hx-trigger="every 2s"' in running
    assert "hx-trigger" not in finished


def test_the_hub_keeps_a_bounded_list_and_a_slow_client_loses_the_oldest() -> None:
    hub = Hub(None, dict, keep=3)  # type: ignore[arg-type]  # _apply needs no connection

    async def scenario() -> tuple[list[str], int]:
        async with hub.updates() as client:
            for i in range(600):
                hub._apply(f"nano.wf._start.e{i}", {}, float(i), notify=True)
            got = [client.queue.get_nowait().execution for _ in range(client.queue.qsize())]
            return got, client.dropped

    got, dropped = asyncio.run(scenario())
    assert [s.execution for s in hub.recent()] == ["e599", "e598", "e597"]
    assert len(got) == 256 and got[-1] == "e599" and got[0] == "e344" and dropped == 344
    hub._apply("nano.wf._done.e599", {"Nano-Step": "last"}, 700.0, notify=False)
    assert [s.execution for s in hub.recent(outcome="succeeded")] == ["e599"]
    assert hub.recent(since=598.5) == [hub.get("wf", "e599")]


async def test_with_nats_down_pages_that_need_it_say_so_and_the_list_still_shows(
    tmp_path: Path,
) -> None:
    own = LocalServer(ServerOptions(store_dir=tmp_path))
    own.start()
    try:
        table = compile_text(workflow("cs_down"), REGISTRY, file="cs_down.yaml")
        async with nats_backend(own.url) as backend:
            await backend.provision(table)
        nc = await nats.connect(own.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        sock = socket.create_server(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}/ui"
        async with open_console(nc) as console:
            web = uvicorn.Server(
                uvicorn.Config(standalone(console), log_level="warning", lifespan="off")
            )
            task = asyncio.create_task(web.serve(sockets=[sock]))
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    assert (await http.get(f"{base}/dead-letters")).status_code == 200
                    own.stop()
                    for _ in range(100):  # bounded: the client notices the closed socket
                        if not nc.is_connected:
                            break
                        await asyncio.sleep(0.05)
                    assert not nc.is_connected
                    down = await http.get(f"{base}/dead-letters")
                    assert down.status_code == 503, down.text
                    assert "not connected to NATS (reconnecting)" in down.text
                    assert "Traceback" not in down.text
                    listed = await http.get(f"{base}/executions")
                    assert listed.status_code == 200 and "cs_down" in listed.text
            finally:
                web.should_exit = True
                await asyncio.wait_for(task, 10)
        with contextlib.suppress(Exception):
            await nc.close()
    finally:
        own.stop()
