"""Keyset cursors for the API's newest-first lists (orders, notifications).

A cursor is the last row's timestamp and id, opaque to clients; the next page is what comes
before it. An offset would skip or repeat rows when new ones arrive between two pages.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fastapi import Request

from serve_apps.api.envelope import ApiError


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a cursor names; None for the first page; 400 for one this API did not give."""
    if not cursor:
        return None
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "VALIDATION_ERROR", "cursor is not one this API gave out.") from exc


def next_links(request: Request, rows: Sequence[Mapping[str, Any]], limit: int, *, at: str) -> dict[str, str]:
    """``links.next`` after the last row (its ``at`` column and id) when the page is full (there may
    be more), else nothing."""
    return links_after(request, len(rows), limit, (rows[-1][at], rows[-1]["id"]) if rows else None)


def links_after(
    request: Request, count: int, limit: int, last: tuple[datetime, uuid.UUID] | None
) -> dict[str, str]:
    """:func:`next_links` for a page of ``count`` items, the last at ``last`` (its time and id)."""
    if last is None or count < limit:
        return {}
    params = {**request.query_params, "cursor": encode_cursor(*last)}
    return {"next": f"{request.url.path}?" + "&".join(f"{k}={v}" for k, v in params.items())}
