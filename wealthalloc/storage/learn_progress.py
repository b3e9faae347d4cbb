"""Which Learn articles a person has finished (migration 0019); the articles themselves are package data."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import DictRow


async def completed(conn: AsyncConnection[DictRow], user_id: uuid.UUID) -> dict[str, datetime]:
    """Each finished article's slug and when it was first finished."""
    cur = await conn.execute("SELECT slug, completed_at FROM learn_progress WHERE user_id = %s", (user_id,))
    return {row["slug"]: row["completed_at"] for row in await cur.fetchall()}


async def complete(conn: AsyncConnection[DictRow], user_id: uuid.UUID, slug: str) -> datetime:
    """Marks the article finished (again is a no-op) and says when it first was."""
    cur = await conn.execute(
        """INSERT INTO learn_progress (user_id, slug) VALUES (%s, %s)
           ON CONFLICT (user_id, slug) DO UPDATE SET slug = EXCLUDED.slug
           RETURNING completed_at""",
        (user_id, slug),
    )
    row = await cur.fetchone()
    assert row is not None
    completed_at: datetime = row["completed_at"]
    return completed_at
