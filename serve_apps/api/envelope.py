"""The success and error envelopes of the API, produced here and nowhere else.

Every response body the API writes goes through :func:`success` or
:func:`error_body`, so the frontend can rely on one shape: ``data/meta/links``
on success and ``error{code, message, details, timestamp, request_id}`` on
failure, whatever raised the error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from wealthalloc.config import VERSION
from wealthalloc.errors import ServiceError


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


# Money and quantities leave the API as decimal strings, never floats.
_ENCODERS: dict[Any, Any] = {Decimal: str, UUID: str}


_AS_IS = frozenset({str, int, float, bool, type(None)})


def encode(value: Any) -> Any:
    """``value`` as JSON types. Plain dicts, lists and scalars (all of a cached snapshot, most of
    any answer) are walked here; FastAPI's encoder, which tries each type it knows on every value,
    sees only the rest (dates, enums, models), so the answer is the same at a fraction of the cost."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {k if type(k) is str else encode(k): encode(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [encode(v) for v in value]
    if (as_string := _ENCODERS.get(kind)) is not None:
        return as_string(value)
    return jsonable_encoder(value, custom_encoder=_ENCODERS)


def success(
    request: Request,
    data: Any,
    *,
    status_code: int = 200,
    links: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "data": encode(data),
        "meta": {"timestamp": utc_timestamp(), "version": VERSION, "request_id": request_id_of(request)},
        "links": {"self": request.url.path, **(links or {})},
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


def error_body(request_id: str, code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": encode(details) if details is not None else {},
            "timestamp": utc_timestamp(),
            "request_id": request_id,
        }
    }


class ApiError(ServiceError):
    """An error a route raises on purpose: it becomes the envelope with this status and code.

    The same mechanism as the services' refusals (one handler renders both); ``status_code``
    is kept as the name routes and FastAPI use.
    """

    @property
    def status_code(self) -> int:
        return self.status
