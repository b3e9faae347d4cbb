"""Rows written straight to PostgreSQL, for tests of a part below the API (a service, the gateway's
rules) that needs someone to own what it works on."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg


def investor_with_portfolio(
    conn: psycopg.Connection[tuple[object, ...]], prefix: str, *, cash: Decimal | int = 0
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new user and their default taxable portfolio holding ``cash``: (user id, portfolio id)."""
    user = conn.execute(
        "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
        (f"{prefix}-{uuid.uuid4().hex[:10]}@example.com",),
    ).fetchone()
    assert user is not None
    portfolio = conn.execute(
        "INSERT INTO portfolios (user_id, name, is_default, cash_balance) VALUES (%s, 'Main', true, %s)"
        " RETURNING id",
        (user[0], cash),
    ).fetchone()
    assert portfolio is not None
    return uuid.UUID(str(user[0])), uuid.UUID(str(portfolio[0]))
