"""Appending to and reading the hash-chained ``audit_log``.

Writers race for the head of the chain; ``UNIQUE (prev_hash)`` lets exactly
one of two writers that read the same head append to it, and the loser reads
the new head and tries again inside a savepoint, so the caller's transaction
survives. Entries written in a caller's transaction become visible with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow

from wealthalloc.events.audit_chain import GENESIS_HASH, AuditEntry, ChainedEntry, entry_hash

MAX_APPEND_ATTEMPTS = 20
# Unique violations that mean "this entry is already in the trail", as opposed to losing the head race.
ALREADY_THERE = frozenset({"audit_log_event_key", "audit_log_pkey"})

_HEAD = "SELECT hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
_INSERT = """
INSERT INTO audit_log (id, event_id, actor_id, action, subject, details, ip, prev_hash, hash, created_at)
VALUES (%(id)s, %(event_id)s, %(actor_id)s, %(action)s, %(subject)s, %(details)s, %(ip)s,
        %(prev_hash)s, %(hash)s, %(created_at)s)
"""

# A batch in one statement, in the chain's order (the sequence is handed out row by row as they come).
_INSERT_MANY = """
INSERT INTO audit_log (id, event_id, actor_id, action, subject, details, ip, prev_hash, hash, created_at)
SELECT id, event_id, actor_id, action, subject, details::jsonb, ip, prev_hash, hash, created_at
FROM unnest(%(id)b::uuid[], %(event_id)b::uuid[], %(actor_id)b::uuid[], %(action)b::text[],
            %(subject)b::text[], %(details)b::text[], %(ip)b::text[], %(prev_hash)b::text[],
            %(hash)b::text[], %(created_at)b::timestamptz[])
     WITH ORDINALITY
     AS e(id, event_id, actor_id, action, subject, details, ip, prev_hash, hash, created_at, n)
ORDER BY n
"""


def new_entry(
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
    ip: str | None = None,
    event_id: uuid.UUID | None = None,
) -> AuditEntry:
    return AuditEntry(
        id=uuid.uuid4(),
        action=action,
        created_at=datetime.now(UTC),
        actor_id=actor_id,
        subject=subject,
        details=dict(details or {}),
        ip=ip,
        event_id=event_id,
    )


def _params(entry: AuditEntry, prev_hash: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "event_id": entry.event_id,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "subject": entry.subject,
        "details": json.dumps(entry.details, default=str),
        "ip": entry.ip,
        "prev_hash": prev_hash,
        "hash": entry_hash(prev_hash, entry),
        "created_at": entry.created_at,
    }


async def append_audit(conn: AsyncConnection[DictRow], entry: AuditEntry) -> str:
    """Append ``entry`` to the chain in ``conn``'s transaction; returns its hash."""
    for _ in range(MAX_APPEND_ATTEMPTS):
        try:
            async with conn.transaction():
                cur = await conn.execute(_HEAD)
                row = await cur.fetchone()
                prev = row["hash"] if row else GENESIS_HASH
                params = _params(entry, prev)
                await conn.execute(_INSERT, params)
                return str(params["hash"])
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name in ALREADY_THERE:
                raise  # this entry (or its event) is already in the trail: not a race for the head
            continue
    raise RuntimeError("could not append to the audit chain: too much contention")


async def append_audit_many(conn: AsyncConnection[DictRow], entries: Sequence[AuditEntry]) -> int:
    """Append ``entries`` in order in ``conn``'s transaction; those whose event is already in the
    trail are skipped. Returns how many were appended.

    The head is read once and the batch's hashes chained in memory, then inserted in one
    statement (its columns as arrays, in binary): a consumer's batch costs three round trips,
    where a statement per row made the audit logger a third of the event bus's CPU.
    """
    ids = [e.event_id for e in entries if e.event_id is not None]
    there: set[Any] = set()
    if ids:
        cur = await conn.execute("SELECT event_id FROM audit_log WHERE event_id = ANY(%b)", (ids,))
        there = {row["event_id"] for row in await cur.fetchall()}
    fresh: list[AuditEntry] = []
    for entry in entries:
        if entry.event_id is None or entry.event_id not in there:
            fresh.append(entry)
            there.add(entry.event_id)
    if not fresh:
        return 0
    for _ in range(MAX_APPEND_ATTEMPTS):
        try:
            async with conn.transaction():
                cur = await conn.execute(_HEAD)
                row = await cur.fetchone()
                prev = row["hash"] if row else GENESIS_HASH
                columns: dict[str, list[Any]] = {}
                for entry in fresh:
                    params = _params(entry, prev)
                    for name, value in params.items():
                        columns.setdefault(name, []).append(value)
                    prev = params["hash"]
                await conn.execute(_INSERT_MANY, columns)
                return len(fresh)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name in ALREADY_THERE:
                raise  # written meanwhile by another consumer of the same group: the caller retries
            continue
    raise RuntimeError("could not append to the audit chain: too much contention")


def append_audit_sync(conn: Connection[DictRow], entry: AuditEntry) -> str:
    for _ in range(MAX_APPEND_ATTEMPTS):
        try:
            with conn.transaction():
                row = conn.execute(_HEAD).fetchone()
                prev = row["hash"] if row else GENESIS_HASH
                params = _params(entry, prev)
                conn.execute(_INSERT, params)
                return str(params["hash"])
        except psycopg.errors.UniqueViolation:
            continue
    raise RuntimeError("could not append to the audit chain: too much contention")


def row_to_chained(row: Mapping[str, Any]) -> ChainedEntry:
    entry = AuditEntry(
        id=row["id"],
        action=row["action"],
        created_at=row["created_at"],
        actor_id=row["actor_id"],
        subject=row["subject"],
        details=row["details"],
        ip=row["ip"],
        event_id=row["event_id"],
    )
    return ChainedEntry(entry=entry, sequence=row["sequence"], prev_hash=row["prev_hash"], hash=row["hash"])


def iter_chain(conn: Connection[DictRow], *, batch: int = 5000) -> Iterator[ChainedEntry]:
    """Every audit row in sequence order, streamed with a server-side cursor."""
    with conn.cursor(name="audit_chain") as cur:
        cur.itersize = batch
        cur.execute("SELECT * FROM audit_log ORDER BY sequence")
        for row in cur:
            yield row_to_chained(row)


async def audit_page(
    conn: AsyncConnection[DictRow],
    *,
    before_sequence: int | None,
    limit: int,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """The newest audit rows first, ``limit`` of them, older than ``before_sequence`` when given."""
    cur = await conn.execute(
        """SELECT sequence, id, event_id, actor_id, action, subject, details, ip, prev_hash, hash, created_at
           FROM audit_log
           WHERE (%(before)s::bigint IS NULL OR sequence < %(before)s::bigint)
             AND (%(actor)s::uuid IS NULL OR actor_id = %(actor)s::uuid)
             AND (%(action)s::text IS NULL OR action = %(action)s::text)
           ORDER BY sequence DESC LIMIT %(limit)s""",
        {"before": before_sequence, "actor": actor_id, "action": action, "limit": limit},
    )
    return await cur.fetchall()
