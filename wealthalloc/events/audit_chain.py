"""The hash chain that makes the audit trail tamper-evident.

Each entry's hash covers its own content and the previous entry's hash, so
changing, removing or reordering any row breaks every link after it. The
content is serialised canonically (sorted keys, no whitespace, ISO-8601 UTC
time with microseconds) so the hash recomputed from the row read back from the
database is the hash written.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    id: uuid.UUID
    action: str
    created_at: datetime
    actor_id: uuid.UUID | None = None
    subject: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    ip: str | None = None
    event_id: uuid.UUID | None = None

    def canonical(self) -> str:
        return json.dumps(
            {
                "id": str(self.id),
                "action": self.action,
                "created_at": self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
                "actor_id": str(self.actor_id) if self.actor_id else None,
                "subject": self.subject,
                "details": self.details,
                "ip": self.ip,
                "event_id": str(self.event_id) if self.event_id else None,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(f"{prev_hash}\n{entry.canonical()}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainedEntry:
    entry: AuditEntry
    sequence: int
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainReport:
    entries: int
    intact: bool
    problems: list[str]


def verify_chain(rows: Iterable[ChainedEntry]) -> ChainReport:
    """Walk the chain from the genesis hash and say where, if anywhere, it breaks."""
    by_prev: dict[str, ChainedEntry] = {}
    problems: list[str] = []
    count = 0
    for row in rows:
        count += 1
        recomputed = entry_hash(row.prev_hash, row.entry)
        if recomputed != row.hash:
            problems.append(f"entry {row.sequence} ({row.entry.action}) was altered: its hash does not match")
        if row.prev_hash in by_prev:
            problems.append(f"entries {by_prev[row.prev_hash].sequence} and {row.sequence} fork the chain")
        by_prev[row.prev_hash] = row
    reached = 0
    head = GENESIS_HASH
    last_sequence: int | None = None
    while head in by_prev:
        reached += 1
        row = by_prev[head]
        # Rows are read and shown in sequence order: the links must run the same way.
        if last_sequence is not None and row.sequence <= last_sequence:
            problems.append(
                f"entry {row.sequence} is linked after entry {last_sequence}: rows were reordered"
            )
        last_sequence = row.sequence
        head = row.hash
        if reached > count:  # a cycle can only come from forged rows
            problems.append("the chain loops back on itself")
            break
    if reached < count:
        problems.append(f"{count - reached} entries are not linked to the chain from its start")
    return ChainReport(entries=count, intact=not problems, problems=problems)
