"""Which shard owns a user: users hash into a fixed number of slots, slots map onto shards.

The slot of a user never changes (it depends only on the id and the slot
count), so growing from 4 shards to 16 moves whole slots, not individual
users, and the map is the only thing a router needs. The hash is SHA-256, not
Python's ``hash``, because every process must agree on it.
"""

from __future__ import annotations

import hashlib
import uuid


def slot_of(user_id: uuid.UUID, slot_count: int) -> int:
    digest = hashlib.sha256(user_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % slot_count


def shard_of(user_id: uuid.UUID, *, slot_count: int, shard_count: int) -> int:
    return slot_of(user_id, slot_count) % shard_count


def shard_name(index: int) -> str:
    return f"portfolio-shard-{index}"
