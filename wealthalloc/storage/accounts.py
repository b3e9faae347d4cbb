"""Users, sessions, refresh tokens, API keys and advisor links in PostgreSQL.

Plain parameterised SQL (never string-built), one function per question or
change, each taking the connection so the caller decides the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]
Row = dict[str, Any]

USER_COLUMNS = """
id, email, password_hash, full_name, role, tier, risk_tolerance, investment_experience,
filing_status, federal_rate, state_rate, short_term_rate, long_term_rate,
mfa_secret, mfa_enabled, mfa_last_counter, failed_logins, locked_until, deleted_at,
disabled_at, disabled_reason, created_date, updated_date
"""

PROFILE_FIELDS = frozenset(
    {
        "full_name",
        "risk_tolerance",
        "investment_experience",
        "filing_status",
        "federal_rate",
        "state_rate",
        "short_term_rate",
        "long_term_rate",
    }
)


async def _one(conn: Conn, query: str, params: Mapping[str, Any] | tuple[Any, ...]) -> Row | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def user_by_email(conn: Conn, email: str) -> Row | None:
    return await _one(
        conn,
        f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower(%s) AND deleted_at IS NULL",
        (email,),
    )


async def user_by_id(conn: Conn, user_id: uuid.UUID, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
    return await _one(
        conn, f"SELECT {USER_COLUMNS} FROM users WHERE id = %s AND deleted_at IS NULL{lock}", (user_id,)
    )


async def insert_user(
    conn: Conn, *, email: str, password_hash: str, full_name: str | None, risk_tolerance: str
) -> Row | None:
    """The new user, or None when the address is taken (whatever its case, deleted accounts included)."""
    return await _one(
        conn,
        f"""INSERT INTO users (email, password_hash, full_name, risk_tolerance)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT ((lower(email))) DO NOTHING
            RETURNING {USER_COLUMNS}""",
        (email, password_hash, full_name, risk_tolerance),
    )


async def update_profile(conn: Conn, user_id: uuid.UUID, changes: Mapping[str, Any]) -> Row | None:
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    if not changes:
        return await user_by_id(conn, user_id)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in changes
    )
    query = sql.SQL(
        "UPDATE users SET {}, updated_date = now() WHERE id = {} AND deleted_at IS NULL RETURNING "
    ).format(assignments, sql.Placeholder("__id")) + sql.SQL(USER_COLUMNS)
    cur = await conn.execute(query, {**changes, "__id": user_id})
    return await cur.fetchone()


async def update_password_hash(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        "UPDATE users SET password_hash = %s, updated_date = now() WHERE id = %s", (password_hash, user_id)
    )


async def lock_user(conn: Conn, user_id: uuid.UUID, *, until: datetime, failures: int) -> None:
    await conn.execute(
        "UPDATE users SET locked_until = %s, failed_logins = %s, updated_date = now() WHERE id = %s",
        (until, failures, user_id),
    )


async def record_login_success(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE users SET failed_logins = 0, locked_until = NULL, updated_date = now()
           WHERE id = %s AND (failed_logins <> 0 OR locked_until IS NOT NULL)""",
        (user_id,),
    )


async def set_mfa_secret(conn: Conn, user_id: uuid.UUID, secret: str) -> None:
    """A new, not yet enabled secret; an enabled one is never replaced this way."""
    await conn.execute(
        """UPDATE users SET mfa_secret = %s, mfa_last_counter = NULL, updated_date = now()
           WHERE id = %s AND NOT mfa_enabled""",
        (secret, user_id),
    )


async def claim_mfa_step(conn: Conn, user_id: uuid.UUID, step: int, *, enable: bool = False) -> bool:
    """Record ``step`` as used; False when it (or a later one) already was, so two racing logins
    presenting the same code cannot both pass."""
    cur = await conn.execute(
        """UPDATE users SET mfa_last_counter = %s, mfa_enabled = mfa_enabled OR %s, updated_date = now()
           WHERE id = %s AND mfa_secret IS NOT NULL AND (mfa_last_counter IS NULL OR mfa_last_counter < %s)
           RETURNING id""",
        (step, enable, user_id, step),
    )
    return await cur.fetchone() is not None


async def disable_mfa(conn: Conn, user_id: uuid.UUID) -> None:
    """MFA off and its secret forgotten: turning it on again starts from a new secret."""
    await conn.execute(
        """UPDATE users SET mfa_enabled = false, mfa_secret = NULL, mfa_last_counter = NULL,
                  updated_date = now()
           WHERE id = %s""",
        (user_id,),
    )


async def stand_in_user(
    conn: Conn, *, email: str, password_hash: str, full_name: str | None, risk_tolerance: str
) -> Row:
    """The row registering ``email`` would have created, inserted under a placeholder address and
    rolled back at once: an answer for a taken address with the real defaults, clock and shape,
    and an id that matches nothing."""
    async with conn.transaction(force_rollback=True):
        row = await insert_user(
            conn,
            email=f"{uuid.uuid4().hex}@stand-in.invalid",
            password_hash=password_hash,
            full_name=full_name,
            risk_tolerance=risk_tolerance,
        )
    assert row is not None
    return {**row, "email": email}


async def soft_delete_user(conn: Conn, user_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "UPDATE users SET deleted_at = now(), updated_date = now() WHERE id = %s AND deleted_at IS NULL "
        "RETURNING id",
        (user_id,),
    )
    found = await cur.fetchone() is not None
    await revoke_sessions_of(conn, user_id)
    await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    return found


async def disable_user(conn: Conn, user_id: uuid.UUID, *, reason: str) -> Row | None:
    """Suspend the account (None when there is no such user), keeping the first suspension's time
    and reason when it already is: a retried request changes nothing. Nothing else of the user
    changes; the caller ends their sessions."""
    return await _one(
        conn,
        f"""UPDATE users SET disabled_at = coalesce(disabled_at, now()),
                             disabled_reason = coalesce(disabled_reason, %s),
                             updated_date = now()
            WHERE id = %s AND deleted_at IS NULL RETURNING {USER_COLUMNS}""",
        (reason, user_id),
    )


async def enable_user(conn: Conn, user_id: uuid.UUID) -> Row | None:
    """Lift a suspension (None when there is no such user). Ended sessions stay ended; API keys
    that are neither revoked nor expired work again."""
    return await _one(
        conn,
        f"""UPDATE users SET disabled_at = NULL, disabled_reason = NULL, updated_date = now()
            WHERE id = %s AND deleted_at IS NULL RETURNING {USER_COLUMNS}""",
        (user_id,),
    )


# Sessions (one per login) --------------------------------------------------------------------------


async def insert_session(
    conn: Conn, *, session_id: uuid.UUID, user_id: uuid.UUID, authenticated_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO sessions (id, user_id, authenticated_at) VALUES (%s, %s, %s)",
        (session_id, user_id, authenticated_at),
    )


async def session(conn: Conn, session_id: uuid.UUID) -> Row | None:
    return await _one(
        conn, "SELECT id, user_id, authenticated_at, revoked_at FROM sessions WHERE id = %s", (session_id,)
    )


async def user_in_live_session(conn: Conn, user_id: uuid.UUID, session_id: uuid.UUID) -> Row | None:
    """The user, when they exist, are not disabled and ``session_id`` is one of their logins that
    has not ended.

    One indexed query: it runs for every request a replica cannot answer from its cache, so a
    suspension is refused here rather than by a query of its own.
    """
    return await _one(
        conn,
        f"""SELECT {USER_COLUMNS} FROM users
            WHERE id = %s AND deleted_at IS NULL AND disabled_at IS NULL
              AND EXISTS (SELECT 1 FROM sessions s
                          WHERE s.id = %s AND s.user_id = users.id AND s.revoked_at IS NULL)""",
        (user_id, session_id),
    )


async def revoke_sessions_of(
    conn: Conn, user_id: uuid.UUID, *, except_session: uuid.UUID | None = None
) -> int:
    """End every login of the user (but ``except_session``): their sessions and refresh tokens."""
    cur = await conn.execute(
        """UPDATE sessions SET revoked_at = now()
           WHERE user_id = %s AND revoked_at IS NULL AND id IS DISTINCT FROM %s""",
        (user_id, except_session),
    )
    await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE user_id = %s AND revoked_at IS NULL AND family_id IS DISTINCT FROM %s""",
        (user_id, except_session),
    )
    return cur.rowcount


# Refresh tokens ------------------------------------------------------------------------------------


async def insert_refresh_token(
    conn: Conn, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: datetime
) -> uuid.UUID:
    row = await _one(
        conn,
        """INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
           VALUES (%s, %s, %s, %s) RETURNING id""",
        (user_id, family_id, token_hash, expires_at),
    )
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def refresh_token_for_update(conn: Conn, token_hash: str) -> Row | None:
    """The token row, locked: two concurrent refreshes with one token serialise here."""
    return await _one(conn, "SELECT * FROM refresh_tokens WHERE token_hash = %s FOR UPDATE", (token_hash,))


async def mark_rotated(conn: Conn, token_id: uuid.UUID, replaced_by: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET rotated_at = now(), replaced_by = %s WHERE id = %s",
        (replaced_by, token_id),
    )


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> int:
    """End one login: its session (so its access tokens stop) and every refresh token of it."""
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (family_id,)
    )
    cur = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
        (family_id,),
    )
    return cur.rowcount


# API keys ------------------------------------------------------------------------------------------


async def insert_api_key(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    expires_at: datetime,
) -> Row:
    row = await _one(
        conn,
        """INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s)
           RETURNING id, name, prefix, scopes, expires_at, revoked_at, last_used_at, created_at""",
        (user_id, name, prefix, key_hash, scopes, expires_at),
    )
    assert row is not None
    return row


async def api_key_by_hash(conn: Conn, key_hash: str) -> Row | None:
    """The key with its owner's row (``deleted_at`` and ``disabled_at`` included), in the one query
    every API-key request makes: the caller refuses a deleted or disabled owner with a reason."""
    return await _one(
        conn,
        f"""SELECT k.id AS key_id, k.scopes, k.expires_at, k.revoked_at, k.last_used_at,
                   {", ".join("u." + c.strip() for c in USER_COLUMNS.split(","))}
            FROM api_keys k JOIN users u ON u.id = k.user_id
            WHERE k.key_hash = %s""",
        (key_hash,),
    )


async def touch_api_key(conn: Conn, key_id: uuid.UUID) -> None:
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))


async def api_keys_of(conn: Conn, user_id: uuid.UUID) -> list[Row]:
    cur = await conn.execute(
        """SELECT id, name, prefix, scopes, expires_at, revoked_at, last_used_at, created_at
           FROM api_keys WHERE user_id = %s ORDER BY created_at DESC""",
        (user_id,),
    )
    return await cur.fetchall()


async def revoke_api_key(conn: Conn, user_id: uuid.UUID, key_id: uuid.UUID) -> Row | None:
    return await _one(
        conn,
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE id = %s AND user_id = %s
           RETURNING id, name, prefix, scopes, expires_at, revoked_at, last_used_at, created_at""",
        (key_id, user_id),
    )


# Advisor links -------------------------------------------------------------------------------------


async def link_advisor(
    conn: Conn, *, advisor_id: uuid.UUID, client_id: uuid.UUID, granted_by: uuid.UUID, source: str
) -> Row:
    row = await _one(
        conn,
        """INSERT INTO advisor_clients (advisor_id, client_id, granted_by, source)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (advisor_id, client_id) DO UPDATE SET advisor_id = EXCLUDED.advisor_id
           RETURNING advisor_id, client_id, granted_by, source, created_date""",
        (advisor_id, client_id, granted_by, source),
    )
    assert row is not None
    return row


async def unlink_advisor(conn: Conn, *, advisor_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "DELETE FROM advisor_clients WHERE advisor_id = %s AND client_id = %s RETURNING advisor_id",
        (advisor_id, client_id),
    )
    return await cur.fetchone() is not None


async def is_linked(conn: Conn, *, advisor_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    row = await _one(
        conn,
        "SELECT 1 AS linked FROM advisor_clients WHERE advisor_id = %s AND client_id = %s",
        (advisor_id, client_id),
    )
    return row is not None


async def links_of(conn: Conn, user_id: uuid.UUID) -> list[Row]:
    """The links where ``user_id`` is the advisor or the client, with the other side's name."""
    cur = await conn.execute(
        """SELECT l.advisor_id, a.email AS advisor_email, a.full_name AS advisor_name,
                  l.client_id, c.email AS client_email, c.full_name AS client_name,
                  l.source, l.created_date
           FROM advisor_clients l
           JOIN users a ON a.id = l.advisor_id AND a.deleted_at IS NULL
           JOIN users c ON c.id = l.client_id AND c.deleted_at IS NULL
           WHERE l.advisor_id = %s OR l.client_id = %s
           ORDER BY l.created_date""",
        (user_id, user_id),
    )
    return await cur.fetchall()


async def users_page(conn: Conn, *, after_email: str | None, limit: int) -> list[Row]:
    cur = await conn.execute(
        f"""SELECT {USER_COLUMNS} FROM users
            WHERE deleted_at IS NULL AND (%(after)s::text IS NULL OR lower(email) > lower(%(after)s::text))
            ORDER BY lower(email) LIMIT %(limit)s""",
        {"after": after_email, "limit": limit},
    )
    return await cur.fetchall()


async def set_role_and_tier(
    conn: Conn, user_id: uuid.UUID, *, role: str | None, tier: str | None
) -> Row | None:
    return await _one(
        conn,
        f"""UPDATE users SET role = coalesce(%s, role), tier = coalesce(%s, tier), updated_date = now()
            WHERE id = %s AND deleted_at IS NULL RETURNING {USER_COLUMNS}""",
        (role, tier, user_id),
    )
