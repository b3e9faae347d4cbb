"""What runs in Ray Serve's own HTTP servers, in front of the API: a request id Ray may echo.

Ray Serve's HTTP proxy and each replica's direct-ingress server wrap every
application in its ``RequestIdMiddleware``, which takes the client's
``X-Request-ID`` as it is and writes it back on the response: a client could
make the platform answer ``X-Request-ID: <script>...``. Ray calls the function
named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` for a list of
middlewares that wrap *outside* its own, so :class:`RequestIdGuard`, returned
by :func:`proxy_middlewares`, replaces a malformed id before Ray reads it.

This module is imported by Ray's proxy processes: it imports nothing heavy.
"""

from __future__ import annotations

import re
import uuid

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve_apps.api.proxy:proxy_middlewares"

# A client's id is kept only when it is a short token: safe in a header, a log line and a page.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def valid_request_id(value: bytes) -> bool:
    return len(value) <= 128 and CLIENT_REQUEST_ID.fullmatch(value.decode("latin-1")) is not None


class RequestIdGuard:
    """Drops a malformed ``X-Request-ID`` header (and duplicates) in favour of a generated one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = scope.get("headers", [])
            ids = [value for name, value in headers if name == b"x-request-id"]
            if ids and (len(ids) > 1 or not valid_request_id(ids[0])):
                kept = [(name, value) for name, value in headers if name != b"x-request-id"]
                kept.append((b"x-request-id", new_request_id().encode()))
                scope = {**scope, "headers": kept}
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """The callback Ray Serve's HTTP servers call (see ``PROXY_CALLBACK_ENV``)."""
    return [Middleware(RequestIdGuard)]
