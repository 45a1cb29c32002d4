"""The built-in nodes, driven through the SDK the way a host drives them."""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from nanoservice.errors import NodeError, NonRetryableError
from nanoservice.nodes import delay as delay_module
from nanoservice.nodes.delay import delay
from nanoservice.nodes.http_request import http_request
from nanoservice.nodes.log import log
from nanoservice.nodes.transform import transform
from nanoservice.sdk.node import Context, NodeInstance, NodeType
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.spec import WorkflowSpec

ORDER = {"id": "o-1", "total": 150.0, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]}
BUILTINS = {"transform": transform, "log": log, "delay": delay, "http_request": http_request}


def make_ctx(scope: Mapping[str, Any] | None = None, **kwargs: Any) -> Context:
    base = {"input": ORDER, "prev": ORDER, "steps": {}, "vars": {}, "execution": {"id": "e1"}}
    return Context(
        execution_id="e1", workflow="w", step="s", scope={**base, **(scope or {})}, **kwargs
    )


@asynccontextmanager
async def built(node_type: NodeType, config: Mapping[str, Any]) -> AsyncIterator[NodeInstance]:
    inst = node_type.build(config)
    await inst.setup()
    try:
        yield inst
    finally:
        await inst.close()


async def run(
    node_type: NodeType, config: Mapping[str, Any], value: Any, ctx: Context | None = None
) -> Any:
    """Build, set up, handle one message, close: what a host does for one step and message."""
    async with built(node_type, config) as inst:
        out = await inst.handle(ctx or make_ctx(), node_type.validate_input(value))
        return node_type.dump_output(out)


# --- registration and docs -------------------------------------------------------------------


def test_entry_points_name_every_builtin() -> None:
    registry = Registry.discover()
    for name, node_type in BUILTINS.items():
        assert registry.get(name) == node_type


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_module_docstring_example_is_a_valid_workflow(name: str) -> None:
    module = __import__(f"nanoservice.nodes.{name}", fromlist=["__doc__"])
    examples = re.findall(r"```yaml\n(.*?)```", module.__doc__ or "", re.S)
    assert examples, f"{name}: module docstring has no ```yaml example"
    for text in examples:
        spec = WorkflowSpec.model_validate(yaml.safe_load(text))
        for step in spec.steps.values():
            BUILTINS[step.node].configure(step.with_)
    assert BUILTINS[name].description


def test_config_schemas_are_json() -> None:
    for node_type in BUILTINS.values():
        schema = node_type.config_model.model_json_schema()
        json.dumps(schema)
    expr = transform.config_model.model_json_schema()["properties"]["expr"]
    assert expr["format"] == "cel"


# --- transform -------------------------------------------------------------------------------


async def test_transform_outputs_expression_over_scope() -> None:
    out = await run(
        transform,
        {"expr": '{"id": input.id, "big": input.total > 100.0, "n": size(prev.items)}'},
        {"ignored": True},
    )
    assert out == {"id": "o-1", "big": True, "n": 2}


async def test_transform_reads_steps_vars_and_execution() -> None:
    ctx = make_ctx({"steps": {"a": {"output": [1, 2, 3]}}, "vars": {"k": 10}})
    out = await run(
        transform,
        {"expr": '[steps.a.output.map(x, x * vars.k), execution.id + "!"]'},
        None,
        ctx,
    )
    assert out == [[10, 20, 30], "e1!"]


async def test_transform_output_is_plain_json() -> None:
    out = await run(transform, {"expr": '[timestamp("2024-01-01T00:00:00Z"), {1: 2}]'}, None)
    assert out == ["2024-01-01T00:00:00Z", {"1": 2}]


async def test_transform_chooses_route() -> None:
    ctx = make_ctx()
    await run(
        transform,
        {"expr": "input.id", "route": 'input.total > 100.0 ? "big" : "small"'},
        None,
        ctx,
    )
    assert ctx.route == "big"


async def test_transform_without_route_leaves_route_unset() -> None:
    ctx = make_ctx()
    await run(transform, {"expr": "1"}, None, ctx)
    assert ctx.route is None


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"expr": "1 +"}, "cannot compile"),
        ({"expr": "nope.x"}, "unknown variable nope"),
        ({"expr": "1", "route": "("}, "cannot compile"),
        ({}, "expr"),
        ({"expr": "1", "extra": 1}, "extra"),
        ({"expr": 3}, "string of CEL"),
    ],
)
def test_transform_bad_config_fails_at_build(config: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(needle)):
        transform.build(config)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"expr": "input.missing"}, "no such key"),
        ({"expr": "1 / 0"}, "division by zero"),
        ({"expr": "1", "route": "input.total"}, "not a route name"),
        ({"expr": "1", "route": "input.nope"}, "route:"),
    ],
)
async def test_transform_runtime_errors_are_not_retryable(
    config: dict[str, Any], needle: str
) -> None:
    with pytest.raises(NonRetryableError, match=re.escape(needle)):
        await run(transform, config, None)


@pytest.mark.parametrize(
    ("scope", "expr", "where"),
    [
        ({"input": {"n": 2**64}}, "input.n", "input.n is 18446744073709551616"),
        ({"input": {"xs": [1, -(2**63) - 1]}}, '{"a": input.xs}', "input.xs[1] is"),
        ({"steps": {"a": {"output": 2**70}}}, "steps.a.output + 1", "steps.a.output is"),
        ({"vars": {"big": 2**64}}, "1", None),
    ],
)
async def test_transform_refuses_integers_beyond_64_bits(
    scope: dict[str, Any], expr: str, where: str | None
) -> None:
    """CEL would read 2**64 as 1.8446744073709552e+19: refused, naming value, place and step."""
    ctx = make_ctx(scope)
    if where is None:  # not read by the expression: no refusal
        assert await run(transform, {"expr": expr}, None, ctx) == 1
        return
    with pytest.raises(NonRetryableError, match=re.escape(where)) as info:
        await run(transform, {"expr": expr}, None, ctx)
    assert "step 's'" in str(info.value)


async def test_transform_keeps_64_bit_edges_exact() -> None:
    ctx = make_ctx({"input": {"lo": -(2**63), "hi": 2**64 - 1, "i": 2**63 - 1}})
    out = await run(transform, {"expr": "[input.lo, input.hi, input.i]"}, None, ctx)
    assert out == [-(2**63), 2**64 - 1, 2**63 - 1]


# --- log -------------------------------------------------------------------------------------


async def test_log_passes_input_through_and_logs_json(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nanoservice.sdk.node")
    out = await run(log, {"level": "warning", "message": "got:"}, ORDER)
    assert out == ORDER
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("got: {")
    assert json.loads(record.getMessage().removeprefix("got: ")) == ORDER
    assert (record.__dict__["execution"], record.__dict__["step"]) == ("e1", "s")


async def test_log_defaults_to_info_and_cuts_long_input(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nanoservice.sdk.node")
    big = ["x" * 100] * 100
    assert await run(log, {"max_chars": 100}, big) == big
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith(" chars)")
    assert len(record.getMessage()) < 150


async def test_log_below_level_writes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nanoservice.sdk.node")
    assert await run(log, {"level": "debug"}, 42) == 42
    assert caplog.records == []


def test_log_rejects_unknown_level() -> None:
    with pytest.raises(ValidationError, match="level"):
        log.build({"level": "loud"})


# --- delay -----------------------------------------------------------------------------------


async def test_delay_passes_input_through() -> None:
    assert await run(delay, {"seconds": 0.05}, ORDER) == ORDER
    assert await run(delay, {"seconds": 0}, None) is None


async def test_delay_heartbeats_during_long_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    beats: list[int] = []

    async def heartbeat() -> None:
        beats.append(1)

    monkeypatch.setattr(delay_module, "HEARTBEAT_EVERY", 0.01)
    ctx = make_ctx(heartbeat=heartbeat)
    assert await run(delay, {"seconds": 0.05}, "x", ctx) == "x"
    assert beats


@pytest.mark.parametrize("seconds", [-1, 3601, "soon"])
def test_delay_rejects_bad_seconds(seconds: Any) -> None:
    with pytest.raises(ValidationError, match="seconds"):
        delay.build({"seconds": seconds})


# --- http_request: a real HTTP server on a free port -----------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(length) if length else b""
        path = self.path
        if path.startswith("/echo"):
            echo = {
                "method": self.command,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": data.decode(),
            }
            self._reply(200, json.dumps(echo).encode(), "application/json", x_extra="1")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self._reply(status, b"went wrong here", "text/plain")
        elif path == "/text":
            self._reply(200, "héllo".encode("latin-1"), "text/plain; charset=latin-1")
        elif path == "/empty":
            self._reply(204, b"", "text/plain")
        elif path == "/problem":
            self._reply(200, b'{"type": "x"}', "application/problem+json")
        elif path == "/badjson":
            self._reply(200, b"{not json", "application/json")
        elif path == "/big":
            self._reply(200, b"x" * 5000, "text/plain")
        elif path == "/big-undeclared":
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for _ in range(5):
                self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip-bomb":
            body = gzip.compress(b"z" * 100_000)
            self._reply(200, body, "text/plain", content_encoding="gzip")
        elif path == "/redirect":
            self._reply(302, b"", "text/plain", location="/echo/redirected")
        elif path == "/slow":
            time.sleep(1.0)
            self._reply(200, b"late", "text/plain")
        else:
            self._reply(404, b"no such path", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the test


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_http_get_parses_json(server: str) -> None:
    out = await run(http_request, {"url": f"{server}/echo/a?q=1"}, ORDER)
    assert out["status"] == 200
    assert out["headers"]["x-extra"] == "1"
    body = out["body"]
    assert (body["method"], body["path"], body["body"]) == ("GET", "/echo/a?q=1", "")
    assert body["headers"]["user-agent"] == "nanoservice-py"


async def test_http_post_sends_input_as_json(server: str) -> None:
    config = {"url": f"{server}/echo", "method": "post", "headers": {"X-Token": "t"}}
    body = (await run(http_request, config, ORDER))["body"]
    assert body["method"] == "POST"
    assert json.loads(body["body"]) == ORDER
    assert body["headers"]["content-type"] == "application/json"
    assert body["headers"]["x-token"] == "t"


async def test_http_body_and_url_expressions(server: str) -> None:
    config = {
        "url_expr": f'"{server}/echo/" + input.id',
        "method": "PUT",
        "body": '{"total": input.total, "step": execution.id}',
        "headers": {"Content-Type": "application/merge-patch+json"},
    }
    body = (await run(http_request, config, None))["body"]
    assert (body["method"], body["path"]) == ("PUT", "/echo/o-1")
    assert json.loads(body["body"]) == {"total": 150.0, "step": "e1"}
    assert body["headers"]["content-type"] == "application/merge-patch+json"


async def test_http_null_input_posts_json_null(server: str) -> None:
    body = (await run(http_request, {"url": f"{server}/echo", "method": "POST"}, None))["body"]
    assert body["body"] == "null"


async def test_http_text_empty_and_plus_json_bodies(server: str) -> None:
    assert (await run(http_request, {"url": f"{server}/text"}, None))["body"] == "héllo"
    empty = await run(http_request, {"url": f"{server}/empty"}, None)
    assert (empty["status"], empty["body"]) == (204, None)
    assert (await run(http_request, {"url": f"{server}/problem"}, None))["body"] == {"type": "x"}


async def test_http_expect_status_accepts_listed(server: str) -> None:
    out = await run(http_request, {"url": f"{server}/status/404", "expect_status": [404]}, None)
    assert (out["status"], out["body"]) == (404, "went wrong here")


async def test_http_redirects(server: str) -> None:
    with pytest.raises(NonRetryableError, match="HTTP 302"):
        await run(http_request, {"url": f"{server}/redirect"}, None)
    out = await run(http_request, {"url": f"{server}/redirect", "follow_redirects": True}, None)
    assert out["body"]["path"] == "/echo/redirected"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_http_server_errors_are_retryable(server: str, status: int) -> None:
    with pytest.raises(NodeError, match=f"HTTP {status}.*went wrong here") as info:
        await run(http_request, {"url": f"{server}/status/{status}"}, None)
    assert not isinstance(info.value, NonRetryableError)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_http_client_errors_are_not_retryable(server: str, status: int) -> None:
    with pytest.raises(NonRetryableError, match=f"GET {server}/status/{status}: HTTP {status}"):
        await run(http_request, {"url": f"{server}/status/{status}"}, None)


@pytest.mark.parametrize("path", ["/big", "/big-undeclared", "/gzip-bomb"])
async def test_http_oversized_response_is_refused(server: str, path: str) -> None:
    config = {"url": f"{server}{path}", "max_response_bytes": 4096}
    with pytest.raises(NonRetryableError, match="larger than max_response_bytes=4096"):
        await run(http_request, config, None)


async def test_http_response_within_limit_is_read(server: str) -> None:
    out = await run(http_request, {"url": f"{server}/big", "max_response_bytes": 5000}, None)
    assert out["body"] == "x" * 5000


async def test_http_bad_json_response_is_not_retryable(server: str) -> None:
    with pytest.raises(NonRetryableError, match="not JSON"):
        await run(http_request, {"url": f"{server}/badjson"}, None)


async def test_http_timeout_is_retryable(server: str) -> None:
    with pytest.raises(NodeError, match=re.escape("no complete response within 0.2 s")):
        await run(http_request, {"url": f"{server}/slow", "timeout": 0.2}, None)


async def test_http_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NodeError, match="ConnectError") as info:
        await run(http_request, {"url": f"http://bob:secret@127.0.0.1:{port}/"}, None)
    assert not isinstance(info.value, NonRetryableError)
    assert f"GET http://127.0.0.1:{port}/" in str(info.value)
    assert "secret" not in str(info.value)


async def test_http_url_expr_errors_are_not_retryable() -> None:
    with pytest.raises(NonRetryableError, match="not a string"):
        await run(http_request, {"url_expr": "input.total"}, None)
    with pytest.raises(NonRetryableError, match="not an http"):
        await run(http_request, {"url_expr": '"ftp://x/" + input.id'}, None)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({}, "exactly one of `url` and `url_expr`"),
        ({"url": "http://a", "url_expr": '"http://b"'}, "exactly one"),
        ({"url": "ftp://host/x"}, "not an http(s) URL"),
        ({"url": "http://a", "method": "TRACE"}, "method"),
        ({"url": "http://a", "body": "input."}, "cannot compile"),
        ({"url": "http://a", "timeout": 0}, "timeout"),
        ({"url": "http://a", "expect_status": [99]}, "not HTTP statuses"),
        ({"url": "http://a", "max_response_bytes": 0}, "max_response_bytes"),
        ({"url": "http://a", "headers": {"x": "1\r\nevil: 1"}}, "line breaks"),
    ],
)
def test_http_bad_config_fails_at_build(config: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(needle)):
        http_request.build(config)


async def test_http_client_lives_from_setup_to_close(server: str) -> None:
    inst = http_request.build({"url": f"{server}/echo"})
    with pytest.raises(RuntimeError, match="setup"):
        await inst.handle(make_ctx(), None)
    await inst.setup()
    ctx = make_ctx()
    first = await inst.handle(ctx, None)
    second = await inst.handle(ctx, None)
    assert first["status"] == second["status"] == 200
    await inst.close()
    await inst.close()
    with pytest.raises(RuntimeError, match="setup"):
        await inst.handle(ctx, None)
