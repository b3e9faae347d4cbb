"""The outermost layer of every request: request id, body limit, metrics, last-resort errors.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it wraps Starlette's own
error middleware too: even a crash inside a handler leaves with an
``X-Request-ID`` and the error envelope.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_apps.api.envelope import error_body
from serve_apps.api.metrics import ApiMetrics
from wealthalloc.logging import get_logger

log = get_logger(__name__)

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, max_body_bytes: int, behind_serve: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # Ray Serve puts its request id on the request and echoes it on the
        # response itself; behind it, adopt that id and add no second header.
        self.behind_serve = behind_serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope, trust_incoming=self.behind_serve)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                extra = _extra_headers(scope, request_id, with_request_id=not self.behind_serve)
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, self._limited(receive), send_with_id)
        except _BodyTooLarge:
            if not status_holder["started"]:
                await _send_error(
                    send_with_id,
                    413,
                    request_id,
                    "PAYLOAD_TOO_LARGE",
                    f"The request body is larger than {self.max_body_bytes} bytes.",
                )
        except Exception:
            log.exception("unhandled_error", path=scope.get("path"), request_id=request_id)
            if not status_holder["started"]:
                await _send_error(
                    send_with_id,
                    500,
                    request_id,
                    "INTERNAL_ERROR",
                    "An unexpected error occurred; it has been logged.",
                )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                scope["method"], template, int(status_holder["status"]), time.perf_counter() - started
            )

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        return receive_limited


def _extra_headers(scope: Scope, request_id: str, *, with_request_id: bool) -> list[tuple[bytes, bytes]]:
    """X-Request-ID (unless Serve adds it) and, once a caller is authenticated, its rate-limit state:
    on every authenticated response, errors included."""
    extra: list[tuple[bytes, bytes]] = []
    if with_request_id:
        extra.append((b"x-request-id", request_id.encode()))
    limits = scope.get("state", {}).get("rate_limit_headers")
    if limits:
        extra.extend((name.lower().encode(), value.encode()) for name, value in limits.items())
    return extra


def _request_id(scope: Scope, *, trust_incoming: bool) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if trust_incoming or _CLIENT_REQUEST_ID.match(candidate):
                return candidate
    return f"req_{uuid.uuid4().hex}"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, status: int, request_id: str, code: str, message: str) -> None:
    body: Any = json.dumps(error_body(request_id, code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
