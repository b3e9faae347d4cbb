"""Recommendations in PostgreSQL: ``ai_recommendations`` rows, each portfolio's last run, their orders.

Three writers, and the locks that keep them apart:

- a *run* (listing, or an explicit regeneration, in an API replica) takes the
  portfolio's ``recommendation_runs`` row first (:func:`lock_run`), then the
  open rows of that portfolio, so two runs of one portfolio never interleave;
- *accepting* (in the shard that owns the user) locks the portfolio row and
  then the recommendation (:func:`recommendation` ``for_update``);
- *dismissing* (in an API replica) locks only the recommendation.

Each takes the rows in the same order, and a recommendation changes status
only under its row lock, from ``open``, so an accept and a dismiss (or an
expiry) of one recommendation cannot both win. The partial unique index
``ai_recommendations_open_key`` keeps one open row per (portfolio, kind, symbol).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from wealthalloc.storage.books import Conn, Row

COLUMNS = """
id, user_id, portfolio_id, kind, symbol, rationale, confidence, status, model_version, details,
created_date, updated_date, as_of, resolved_at, resolved_by, dismiss_reason, accept_key, order_keys
"""
STATUSES = ("open", "accepted", "dismissed", "expired")


async def risk_tolerance(conn: Conn, user_id: uuid.UUID) -> str | None:
    """The owner's risk tolerance (``users.risk_tolerance``); ``None`` for a user that does not exist."""
    cur = await conn.execute(
        "SELECT risk_tolerance FROM users WHERE id = %s AND deleted_at IS NULL", (user_id,)
    )
    row = await cur.fetchone()
    return None if row is None else str(row["risk_tolerance"])


# Runs -----------------------------------------------------------------------------------------------


async def run_of(conn: Conn, portfolio_id: uuid.UUID) -> Row | None:
    cur = await conn.execute(
        """SELECT portfolio_id, user_id, fingerprint, as_of, recommendations, anomaly_checked, generated_at
           FROM recommendation_runs WHERE portfolio_id = %s""",
        (portfolio_id,),
    )
    return await cur.fetchone()


async def lock_run(conn: Conn, portfolio_id: uuid.UUID, user_id: uuid.UUID) -> Row:
    """The portfolio's run row, created when missing, locked until the transaction ends."""
    await conn.execute(
        """INSERT INTO recommendation_runs (portfolio_id, user_id) VALUES (%s, %s)
           ON CONFLICT (portfolio_id) DO NOTHING""",
        (portfolio_id, user_id),
    )
    cur = await conn.execute(
        """SELECT portfolio_id, user_id, fingerprint, as_of, recommendations, anomaly_checked, generated_at
           FROM recommendation_runs WHERE portfolio_id = %s FOR UPDATE""",
        (portfolio_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def finish_run(
    conn: Conn,
    portfolio_id: uuid.UUID,
    *,
    fingerprint: str,
    as_of: date,
    recommendations: int,
    anomaly_checked: bool,
) -> None:
    await conn.execute(
        """UPDATE recommendation_runs SET fingerprint = %s, as_of = %s, recommendations = %s,
                  anomaly_checked = %s, generated_at = now()
           WHERE portfolio_id = %s""",
        (fingerprint, as_of, recommendations, anomaly_checked, portfolio_id),
    )


# Recommendations -----------------------------------------------------------------------------------


async def recommendation(conn: Conn, recommendation_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM ai_recommendations WHERE id = %s{lock}", (recommendation_id,)
    )
    return await cur.fetchone()


async def open_of_portfolio(conn: Conn, portfolio_id: uuid.UUID, *, for_update: bool = False) -> list[Row]:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"""SELECT {COLUMNS} FROM ai_recommendations WHERE portfolio_id = %s AND status = 'open'
            ORDER BY created_date, id{lock}""",
        (portfolio_id,),
    )
    return await cur.fetchall()


async def recently_resolved(conn: Conn, portfolio_id: uuid.UUID, since: datetime) -> set[tuple[str, str]]:
    """(kind, symbol or "") of the portfolio's recommendations accepted or dismissed since ``since``."""
    cur = await conn.execute(
        """SELECT DISTINCT kind, coalesce(symbol, '') AS symbol FROM ai_recommendations
           WHERE portfolio_id = %s AND status IN ('accepted', 'dismissed') AND resolved_at >= %s""",
        (portfolio_id, since),
    )
    return {(str(row["kind"]), str(row["symbol"])) for row in await cur.fetchall()}


async def insert(
    conn: Conn, *, user_id: uuid.UUID, portfolio_id: uuid.UUID, values: Mapping[str, Any]
) -> Row:
    """A new open recommendation; ``values`` has kind, symbol, rationale, confidence, model_version,
    as_of and details."""
    cur = await conn.execute(
        f"""INSERT INTO ai_recommendations (user_id, portfolio_id, kind, symbol, rationale, confidence,
                                            model_version, as_of, details)
            VALUES (%(user)s, %(portfolio)s, %(kind)s, %(symbol)s, %(rationale)s, %(confidence)s,
                    %(model_version)s, %(as_of)s, %(details)s)
            RETURNING {COLUMNS}""",
        {**_with_json(values), "user": user_id, "portfolio": portfolio_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def refresh(conn: Conn, recommendation_id: uuid.UUID, values: Mapping[str, Any]) -> Row:
    """An open recommendation's figures as of a new run; its id (what a client may accept) stays."""
    cur = await conn.execute(
        f"""UPDATE ai_recommendations SET rationale = %(rationale)s, confidence = %(confidence)s,
                   model_version = %(model_version)s, as_of = %(as_of)s, details = %(details)s,
                   updated_date = now()
            WHERE id = %(id)s AND status = 'open' RETURNING {COLUMNS}""",
        {**_with_json(values), "id": recommendation_id},
    )
    row = await cur.fetchone()
    assert row is not None, "refresh() is called with the open row locked"
    return row


async def expire(conn: Conn, recommendation_ids: Collection[uuid.UUID]) -> list[Row]:
    if not recommendation_ids:
        return []
    cur = await conn.execute(
        f"""UPDATE ai_recommendations SET status = 'expired', updated_date = now()
            WHERE id = ANY(%s) AND status = 'open' RETURNING {COLUMNS}""",
        (list(recommendation_ids),),
    )
    return await cur.fetchall()


async def mark_accepted(
    conn: Conn, recommendation_id: uuid.UUID, *, by: uuid.UUID, accept_key: str, order_keys: Sequence[str]
) -> Row:
    cur = await conn.execute(
        f"""UPDATE ai_recommendations SET status = 'accepted', resolved_at = now(), resolved_by = %s,
                   accept_key = %s, order_keys = %s, updated_date = now()
            WHERE id = %s AND status = 'open' RETURNING {COLUMNS}""",
        (by, accept_key, json.dumps(list(order_keys)), recommendation_id),
    )
    row = await cur.fetchone()
    assert row is not None, "mark_accepted() is called with the open row locked"
    return row


async def mark_dismissed(conn: Conn, recommendation_id: uuid.UUID, *, by: uuid.UUID, reason: str) -> Row:
    cur = await conn.execute(
        f"""UPDATE ai_recommendations SET status = 'dismissed', resolved_at = now(), resolved_by = %s,
                   dismiss_reason = %s, updated_date = now()
            WHERE id = %s AND status = 'open' RETURNING {COLUMNS}""",
        (by, reason, recommendation_id),
    )
    row = await cur.fetchone()
    assert row is not None, "mark_dismissed() is called with the open row locked"
    return row


async def listing(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    portfolio_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Row]:
    """The user's recommendations in live portfolios: open ones first, surest first, then newest."""
    cur = await conn.execute(
        f"""SELECT {", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))}
            FROM ai_recommendations r
            LEFT JOIN portfolios p ON p.id = r.portfolio_id
            WHERE r.user_id = %(user)s
              AND (r.portfolio_id IS NULL OR p.deleted_at IS NULL)
              AND (%(portfolio)s::uuid IS NULL OR r.portfolio_id = %(portfolio)s::uuid)
              AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
            ORDER BY (r.status = 'open') DESC, r.confidence DESC, r.updated_date DESC, r.id
            LIMIT %(limit)s""",
        {"user": user_id, "portfolio": portfolio_id, "status": status, "limit": limit},
    )
    return await cur.fetchall()


async def orders_by_key(conn: Conn, user_id: uuid.UUID, keys: Collection[str]) -> dict[str, Row]:
    """The orders placed under ``keys`` (Idempotency-Keys), by key: those an acceptance placed."""
    if not keys:
        return {}
    cur = await conn.execute(
        """SELECT id, idempotency_key, symbol, side, quantity, status, filled_quantity, average_fill_price,
                  origin, created_date
           FROM orders WHERE user_id = %s AND idempotency_key = ANY(%s)""",
        (user_id, list(keys)),
    )
    return {str(row["idempotency_key"]): row for row in await cur.fetchall()}


def _with_json(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["details"] = json.dumps(values["details"], default=str)
    return out
