"""Decimal strings in, exact amounts out; users hashed onto slots and shards the same way everywhere."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

import pytest

from wealthalloc.domain.money import InvalidAmount, parse_decimal
from wealthalloc.domain.sharding import shard_of, slot_of


@pytest.mark.parametrize(
    ("text", "value"), [("12.50", "12.50"), (" 0.01 ", "0.01"), ("-3", "-3"), ("+7.1", "7.1")]
)
def test_decimal_strings_parse_exactly(text: str, value: str) -> None:
    assert parse_decimal(text, places=2, allow_negative=True) == Decimal(value)


@pytest.mark.parametrize(
    "text", ["1.001", "abc", "", "1e3", "NaN", "Infinity", "0", "-0.00", "1_000", "0x10", "1,000", "１"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_decimal(text, places=2, allow_negative=True)


def test_numbers_must_come_as_strings_and_negatives_only_when_allowed() -> None:
    with pytest.raises(InvalidAmount):
        parse_decimal(12.5, places=2)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        parse_decimal("-1", places=2)


def test_a_user_always_lands_on_the_same_slot_and_slots_spread_evenly() -> None:
    users = [uuid.UUID(int=i * 7919 + 13) for i in range(4000)]
    assert [slot_of(u, 4096) for u in users[:50]] == [slot_of(u, 4096) for u in users[:50]]
    counts = Counter(shard_of(u, slot_count=4096, shard_count=4) for u in users)
    assert set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) < 200
