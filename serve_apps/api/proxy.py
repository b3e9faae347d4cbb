"""What runs in Ray Serve's own HTTP servers, in front of the API: a request id Ray may echo.

Ray Serve's HTTP proxy and each replica's direct-ingress server wrap every
application in its ``RequestIdMiddleware``, which takes the client's
``X-Request-ID`` as it is and writes it back on the response: a client could
make the platform answer ``X-Request-ID: <script>...``. Ray calls the function
named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` for a list of
middlewares that wrap *outside* its own, so :class:`RequestIdGuard`, returned
by :func:`proxy_middlewares`, replaces a malformed id before Ray reads it.

The same callback makes the servers' answer to a request they cannot parse (a
broken request line, a malformed header) the API's JSON error envelope with an
``X-Request-ID``, where uvicorn writes a plain-text 400: uvicorn has no setting
for it, so :func:`answer_unparsable_requests_in_json` replaces the one method
both of its HTTP implementations call for it.

This module is imported by Ray's proxy processes: it imports nothing heavier than the
envelope (FastAPI, which Serve's proxy has loaded anyway).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_apps.api.envelope import error_body

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


def unparsable_request_answer() -> bytes:
    """A complete HTTP response: 400 in the error envelope, with a fresh request id."""
    request_id = new_request_id()
    body = json.dumps(
        error_body(request_id, "BAD_REQUEST", "The request could not be read as HTTP.")
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\n"
        "content-type: application/json\r\n"
        f"x-request-id: {request_id}\r\n"
        "x-content-type-options: nosniff\r\n"
        "cache-control: no-store\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _send_400_in_json(self: Any, msg: str) -> None:
    self.transport.write(unparsable_request_answer())
    self.transport.close()


def answer_unparsable_requests_in_json() -> None:
    """Make uvicorn's answer to an unparsable request (both HTTP implementations) the envelope."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    H11Protocol.send_400_response = _send_400_in_json  # type: ignore[method-assign]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional; uvicorn then uses h11 only
        return
    HttpToolsProtocol.send_400_response = _send_400_in_json  # type: ignore[method-assign]


def proxy_middlewares() -> list[Middleware]:
    """The callback Ray Serve's HTTP servers call (see ``PROXY_CALLBACK_ENV``)."""
    answer_unparsable_requests_in_json()
    return [Middleware(RequestIdGuard)]
