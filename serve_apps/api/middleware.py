"""The outermost layer of every request: request id, trace span, input hygiene, body limit, security
headers, metrics, last-resort errors.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it wraps Starlette's own
error middleware too: even a crash inside a handler leaves with an
``X-Request-ID`` and the error envelope. Everything here runs on every request,
so each check is a byte search that almost always finds nothing; the slow path
(parsing a body to name the offending field) runs only when it found something.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

import structlog
from opentelemetry.trace import StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_apps.api.envelope import error_body
from serve_apps.api.metrics import ApiMetrics
from serve_apps.api.proxy import new_request_id, valid_request_id
from wealthalloc.logging import get_logger
from wealthalloc.ops import tracing

log = get_logger(__name__)

# PostgreSQL text cannot hold U+0000: a NUL that reached a query would fail there as a 500. JSON can
# only carry it escaped (a raw NUL byte is invalid JSON and already refused as MALFORMED_JSON).
_JSON_NUL = b"\\u0000"
_NUL_MESSAGE = "Text must not contain the NUL character (U+0000)."
# 422, not the 400 of a malformed request: the request is well formed, but it carries text that can
# never be stored. The code is that of every other validation error (serve_apps/api/errors.py).
_NUL_STATUS = 422

# On every answer. A page that needs more (the dashboard, /docs) sets its own policy.
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_API_POLICY = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Tokens and account data must not stay in a browser's or a proxy's cache; only static files may.
_NO_STORE = (b"cache-control", b"no-store")
_CACHEABLE_PREFIX = "/static/"
# Static files are kept but checked (ETag) on each use: after an upgrade the page's ES modules are
# all the new ones, never a mix of old and new.
_REVALIDATE = (b"cache-control", b"no-cache")
# Request headers past this many bytes are refused (431) here, in the envelope. The HAProxy ingress
# buffers up to 128 KiB of request head (wealthalloc/runtime/haproxy_errors.py), so it is this answer,
# not HAProxy's HTML one, that a client with oversized headers gets.
MAX_HEADER_BYTES = 32_768


class _Refused(BaseException):  # noqa: N818 - not an error: the answer this middleware gives instead
    """A request refused while the app reads its body.

    A ``BaseException`` on purpose: FastAPI turns any ``Exception`` raised while it reads a
    body into its own 400 ("There was an error parsing the body"), which would hide what was
    wrong; this passes through it to :class:`RequestContextMiddleware`, which answers.
    """


class _BodyTooLarge(_Refused):
    pass


class _HeadersTooLarge(_Refused):
    pass


class _NulInText(_Refused):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


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

        request_id, echoed = _request_id(scope, behind_serve=self.behind_serve)
        scope.setdefault("state", {})["request_id"] = request_id
        # Every log line written while this request runs carries its id (wealthalloc/logging.py).
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if tracing.enabled():
                await self._traced(scope, receive, send, request_id, echoed)
            else:
                await self._serve(scope, receive, send, request_id, echoed)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            structlog.contextvars.unbind_contextvars("user_id")  # bound once the caller is known (deps.py)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, echoed: bool
    ) -> None:
        """The request as the root span of its trace, or as a child of the caller's ``traceparent``."""
        method = scope["method"]
        parent = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        attributes = {"http.request.method": method, "url.path": scope["path"], "request_id": request_id}
        with tracing.continued(parent, method, attributes=attributes) as span:
            status, template = await self._serve(scope, receive, send, request_id, echoed)
            span.update_name(f"{method} {template}")
            span.set_attribute("http.route", template)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, echoed: bool
    ) -> tuple[int, str]:
        """Answer the request; its status and route template (as the metrics name them)."""
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message = {
                    **message,
                    "headers": _response_headers(scope, message, request_id, with_request_id=not echoed),
                }
            await send(message)

        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                raise _BodyTooLarge
            _check_url_and_headers(scope)
            await self.app(scope, self._checked(receive), send_with_id)
        except _BodyTooLarge:
            if not status_holder["started"]:
                await _send_error(
                    send_with_id,
                    413,
                    request_id,
                    "PAYLOAD_TOO_LARGE",
                    f"The request body is larger than {self.max_body_bytes} bytes.",
                )
        except _HeadersTooLarge:
            await _send_error(
                send_with_id,
                431,
                request_id,
                "REQUEST_HEADERS_TOO_LARGE",
                f"The request's headers are larger than {MAX_HEADER_BYTES} bytes.",
            )
        except _NulInText as exc:
            if not status_holder["started"]:
                details = [{"field": exc.field, "message": _NUL_MESSAGE, "type": "string_nul"}]
                await _send_error(
                    send_with_id, _NUL_STATUS, request_id, "VALIDATION_ERROR", _NUL_MESSAGE, details
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
            status = int(status_holder["status"])
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)
        return status, template

    def _checked(self, receive: Receive) -> Receive:
        """The body as the app reads it: refused past the size limit, or when a JSON string holds a NUL.

        Only a chunk that contains the escape ``\\u0000`` (or ends in part of one) is looked at
        further: then the rest of the body is read, parsed, and the field that holds the NUL named.
        A body that merely contains the six characters elsewhere (``"\\\\u0000"``, or JSON that
        does not parse) is handed on whole.
        """
        limit = self.max_body_bytes
        seen = 0
        tail = b""
        delivered: list[bytes] = []  # chunks already handed on: a NUL's field is named from the whole body

        async def receive_checked() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk: bytes = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise _BodyTooLarge
            if _JSON_NUL in chunk or (tail and _JSON_NUL in tail + chunk[: len(_JSON_NUL) - 1]):
                return await _inspect(message, receive, limit - seen)
            if message.get("more_body", False):  # what a NUL split across chunks would start with
                keep = len(_JSON_NUL) - 1
                tail = chunk[-keep:] if len(chunk) >= keep else (tail + chunk)[-keep:]
                delivered.append(chunk)
            return message

        async def _inspect(first: Message, rest: Receive, room: int) -> Message:
            parts = [first.get("body", b"")]
            more = bool(first.get("more_body", False))
            while more:
                message = await rest()
                if message["type"] != "http.request":
                    break
                part = message.get("body", b"")
                room -= len(part)
                if room < 0:
                    raise _BodyTooLarge
                parts.append(part)
                more = bool(message.get("more_body", False))
            body = b"".join(parts)
            field = _nul_field(b"".join([*delivered, body]))
            if field is not None:
                raise _NulInText(field)
            return {"type": "http.request", "body": body, "more_body": False}

        return receive_checked


def _nul_field(body: bytes) -> str | None:
    """Where in a JSON body a string (or an object key) holds U+0000, as errors name fields: ``body.a.0``."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return _find_nul(document, "body")


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if "\x00" in key:
                return where
            found = _find_nul(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}.{index}")
            if found is not None:
                return found
    return None


def _check_url_and_headers(scope: Scope) -> None:
    """Refuse a NUL in the path, the query string or a header value (each may reach a query), and
    headers larger than :data:`MAX_HEADER_BYTES`."""
    if "\x00" in scope["path"]:
        raise _NulInText("path")
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                raise _NulInText(f"query.{name.replace(chr(0), '')}")
        raise _NulInText("query")
    headers = scope.get("headers", ())
    values = b"".join([value for _, value in headers])  # one search instead of one per header
    if b"\x00" in values:
        name = next(name for name, value in headers if b"\x00" in value)
        raise _NulInText(f"header.{name.decode('latin-1')}")
    if len(values) > MAX_HEADER_BYTES:
        raise _HeadersTooLarge


def _response_headers(
    scope: Scope, message: Message, request_id: str, *, with_request_id: bool
) -> list[tuple[bytes, bytes]]:
    """The response's headers plus X-Request-ID (unless Serve adds it), the security headers, and,
    once a caller is authenticated, its rate-limit state: on every authenticated response, errors
    included."""
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    has_policy = has_cache_control = False
    for name, _ in headers:
        if name == b"content-security-policy":
            has_policy = True
        elif name == b"cache-control":
            has_cache_control = True
    if with_request_id:
        headers.append((b"x-request-id", request_id.encode()))
    headers.extend(_SECURITY_HEADERS)
    if not has_policy:
        headers.append(_API_POLICY)
    if not has_cache_control:
        headers.append(_REVALIDATE if scope["path"].startswith(_CACHEABLE_PREFIX) else _NO_STORE)
    limits = scope.get("state", {}).get("rate_limit_headers")
    if limits:
        headers.extend((name.lower().encode(), value.encode()) for name, value in limits.items())
    return headers


def _request_id(scope: Scope, *, behind_serve: bool) -> tuple[str, bool]:
    """This request's id, and whether Ray Serve echoes it on the response already.

    A client's id is kept when it is a short token. Behind Serve, the id on the request is the one
    Serve's proxy chose (the client's, checked by :class:`serve_apps.api.proxy.RequestIdGuard`,
    or its own) and Serve writes it back; one that still fails the check (a deployment without the
    guard) is replaced here and sent by the app itself.
    """
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            if valid_request_id(value):
                return value.decode("latin-1"), behind_serve
            break
    return new_request_id(), False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(
    send: Send, status: int, request_id: str, code: str, message: str, details: Any = None
) -> None:
    body: Any = json.dumps(error_body(request_id, code, message, details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
