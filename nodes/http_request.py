"""http_request: call an HTTP endpoint and output its status, headers and body.

One ``httpx.AsyncClient`` per step instance (opened in ``setup``, closed in ``close``), so
connections are reused across messages. ``timeout`` bounds the whole call, body included.

Config: see the fields of the config model below (documented in docs/nodes.md).

Input: anything JSON can carry (sent as the body where the method has one and ``body`` is
not set).
Output: ``{"status": 200, "headers": {...}, "body": ...}``; header names are lower case; the
body is parsed JSON when the response says ``application/json`` (or ``+json``), else text;
an empty body is ``null``.
Errors: 5xx, 408, 425, 429, timeouts and connection failures raise ``NodeError`` (retried by
the step's retry policy); any other unexpected status, a body over ``max_response_bytes``,
a bad URL or a JSON body that does not parse raise ``NonRetryableError``.

Example:

```yaml
name: notify
steps:
  post:
    node: http_request
    with:
      url: https://hooks.example.com/orders
      method: POST
      headers: {authorization: Bearer abc123}
      body: '{"id": input.id, "total": input.total}'
      expect_status: [200, 201, 202]
```
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import to_json
from typing_extensions import TypedDict

from nanoservice import CelExpression, Expression, ExpressionError
from nanoservice.errors import NodeError, NonRetryableError
from nanoservice.sdk.node import Context, Node, NodeType, as_node_type

__all__ = ["HttpRequest", "HttpRequestConfig", "HttpResponse", "http_request"]

_MIB = 1024 * 1024
_JSON = "application/json"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_RETRYABLE_4XX = frozenset({408, 425, 429})
_SNIPPET = 300


class HttpRequestConfig(BaseModel):
    """Config of the ``http_request`` node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="The URL to call (http or https).")
    url_expr: CelExpression | None = Field(
        None, description="CEL expression giving the URL (instead of `url`)."
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "GET", description="HTTP method."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: CelExpression | None = Field(
        None,
        description="CEL expression for the JSON body (default: the input, for POST/PUT/PATCH).",
    )
    timeout: float = Field(10.0, gt=0, le=3600, description="Seconds the whole call may take.")
    expect_status: list[int] | None = Field(
        None, min_length=1, description="Statuses that count as success (default: any 2xx)."
    )
    max_response_bytes: int = Field(
        _MIB, gt=0, le=1024 * _MIB, description="Largest response body read, in bytes."
    )
    follow_redirects: bool = Field(False, description="Follow 3xx redirects.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(value)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k, v in value.items() if not k.strip() or any(c in k + v for c in "\r\n\0")]
        if bad:
            raise ValueError(f"header names or values with line breaks or NUL: {bad}")
        return value

    @field_validator("expect_status")
    @classmethod
    def _check_statuses(cls, value: list[int] | None) -> list[int] | None:
        bad = [s for s in value or () if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"not HTTP statuses: {bad}")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> HttpRequestConfig:
        if (self.url is None) == (self.url_expr is None):
            raise ValueError("give exactly one of `url` and `url_expr`")
        return self


class HttpResponse(TypedDict):
    """The node's output."""

    status: int
    headers: dict[str, str]
    body: Any


class HttpRequest(Node[Any, HttpResponse, HttpRequestConfig]):
    """Call an HTTP endpoint and output its status, headers and body."""

    name = "http_request"
    Config = HttpRequestConfig

    def __init__(self, config: HttpRequestConfig) -> None:
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None
        given = {name.lower() for name in config.headers}
        self._body_headers = {} if "content-type" in given else {"content-type": _JSON}

    async def setup(self) -> None:
        self._client = httpx.AsyncClient(
            headers={"user-agent": "nanoservice-py", **self.config.headers},
            timeout=self.config.timeout,
            follow_redirects=self.config.follow_redirects,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def handle(self, ctx: Context, input: Any) -> HttpResponse:
        if self._client is None:
            raise RuntimeError("http_request: handle() called before setup()")
        cfg = self.config
        url = cfg.url if cfg.url_expr is None else _url_from(ctx, cfg.url_expr)
        assert url is not None  # the config validator guarantees url or url_expr
        kwargs: dict[str, Any] = {}
        if cfg.body is not None or cfg.method in _BODY_METHODS:
            value = input if cfg.body is None else _evaluate(ctx, cfg.body, "body")
            kwargs["content"] = to_json(value, bytes_mode="base64")
            kwargs["headers"] = self._body_headers
        where = f"{cfg.method} {_redacted(url)}"
        try:
            async with asyncio.timeout(cfg.timeout):
                async with self._client.stream(cfg.method, url, **kwargs) as response:
                    return await _result(response, cfg, where)
        except TimeoutError:
            raise NodeError(f"{where}: no complete response within {cfg.timeout} s") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as exc:
            raise NonRetryableError(f"{where}: {exc}") from exc
        except httpx.TimeoutException:
            raise NodeError(f"{where}: no complete response within {cfg.timeout} s") from None
        except httpx.HTTPError as exc:
            raise NodeError(f"{where}: {type(exc).__name__}: {exc}") from exc


http_request: NodeType = as_node_type(HttpRequest)
"""The registered node type (entry point ``nanoservice.nodes:http_request``)."""


async def _result(response: httpx.Response, cfg: HttpRequestConfig, where: str) -> HttpResponse:
    status = response.status_code
    if not (status in cfg.expect_status if cfg.expect_status else 200 <= status < 300):
        snippet = await _read(response, _SNIPPET, where, cut=True)
        text = snippet.decode("utf-8", errors="replace").strip()
        message = f"{where}: HTTP {status} {response.reason_phrase}".rstrip()
        if text:
            message += f": {text}"
        if status >= 500 or status in _RETRYABLE_4XX:
            raise NodeError(message)
        raise NonRetryableError(message)
    content = await _read(response, cfg.max_response_bytes, where, cut=False)
    return {
        "status": status,
        "headers": dict(response.headers.items()),
        "body": _decode(response, content, where),
    }


async def _read(response: httpx.Response, limit: int, where: str, *, cut: bool) -> bytes:
    """Read at most ``limit`` bytes of the (decoded) body; beyond it cut or refuse."""
    declared = response.headers.get("content-length", "")
    if not cut and declared.isdigit() and int(declared) > limit:
        raise NonRetryableError(_too_big(where, limit, f"content-length {declared}"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if cut:
                return b"".join(chunks)[:limit]
            raise NonRetryableError(_too_big(where, limit, "more"))
    return b"".join(chunks)


def _too_big(where: str, limit: int, got: str) -> str:
    return f"{where}: response body is larger than max_response_bytes={limit} ({got})"


def _decode(response: httpx.Response, content: bytes, where: str) -> Any:
    if not content:
        return None
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == _JSON or media.endswith("+json"):
        try:
            return json.loads(content)
        except ValueError as exc:
            raise NonRetryableError(
                f"{where}: response says {media} but is not JSON: {exc}"
            ) from None
    try:
        return content.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def _evaluate(ctx: Context, expression: Expression, what: str) -> Any:
    try:
        return ctx.evaluate(expression)
    except ExpressionError as exc:
        raise NonRetryableError(f"{what}: {exc}") from exc


def _url_from(ctx: Context, expression: Expression) -> str:
    url = _evaluate(ctx, expression, "url_expr")
    if not isinstance(url, str):
        raise NonRetryableError(f"url_expr: '{expression.source}' gave {url!r}, not a string")
    try:
        _check_http_url(url)
    except ValueError as exc:
        raise NonRetryableError(f"url_expr: {exc}") from None
    return url


def _redacted(url: str) -> str:
    """The URL without its user:password part, for error messages."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def _check_http_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
