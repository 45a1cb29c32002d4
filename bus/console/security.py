"""Access to the console: an optional token, and CSRF checks for the one write (retry).

With a token, every request needs it: ``Authorization: Bearer <token>``, or the cookie
that opening ``...?token=<token>`` once sets (HttpOnly, SameSite=Strict), so a browser
needs the token in the address only the first time. Without one (the default, meant for
loopback) anyone who reaches the port can read the pages.

A retry is a POST that must carry a form token bound to the dead letter (an HMAC under a
secret made at start), and, when the browser sends an ``Origin``, come from the console's
own origin. A page on another site can neither read the token nor pass the origin check.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["COOKIE", "Guard", "TokenMiddleware", "is_loopback"]

COOKIE = "nano_console"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the console on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """Form tokens for state-changing requests, and the same-origin check."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def form_token(self, action: str) -> str:
        return hmac.new(self._secret, action.encode(), hashlib.sha256).hexdigest()

    def allows(self, request: Request, action: str, token: str) -> str | None:
        """None if the POST may proceed, else why not (one line)."""
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            host = urlsplit(origin).netloc
            if host != request.headers.get("host"):
                return f"refused: the request comes from another origin ({origin})"
        elif origin == "null":
            return "refused: the request comes from an opaque origin"
        if not hmac.compare_digest(token, self.form_token(action)):
            return "refused: the confirmation token is missing or wrong; reload the page"
        return None


class TokenMiddleware:
    """Requires ``token`` on every HTTP request (module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            response: Response = RedirectResponse(_without_token(request), status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        for candidate in (bearer, request.cookies.get(COOKIE, "")):
            if candidate and hmac.compare_digest(candidate.encode(), self.token.encode()):
                await self.app(scope, receive, send)
                return
        response = PlainTextResponse(
            "unauthorized: this console needs its token (open the address with ?token=...)\n",
            status_code=401,
        )
        await response(scope, receive, send)


def _without_token(request: Request) -> str:
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
    path = request.url.path
    return f"{path}?{query}" if query else path
