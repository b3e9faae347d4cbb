"""The hash chain that makes the audit trail tamper-evident (wealthalloc.events.audit_chain)."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.events.audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainedEntry,
    entry_hash,
    verify_chain,
)

T0 = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
ADMIN = uuid.UUID("00000000-0000-4000-8000-00000000000a")
ALICE = uuid.UUID("00000000-0000-4000-8000-0000000000a1")


def _entry(n: int, action: str = "auth.login", **fields: object) -> AuditEntry:
    base = AuditEntry(
        id=uuid.UUID(int=n + 1),
        action=action,
        created_at=T0 + timedelta(seconds=n),
        actor_id=ALICE,
        subject=f"user:{ALICE}",
        details={"n": n},
        ip="198.51.100.7",
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def _chain(entries: list[AuditEntry]) -> list[ChainedEntry]:
    rows: list[ChainedEntry] = []
    prev = GENESIS_HASH
    for sequence, entry in enumerate(entries, start=1):
        current = entry_hash(prev, entry)
        rows.append(ChainedEntry(entry=entry, sequence=sequence, prev_hash=prev, hash=current))
        prev = current
    return rows


def _five() -> list[ChainedEntry]:
    actions = ["auth.register", "auth.login", "portfolio.create", "order.submit", "auth.logout"]
    return _chain([_entry(i, action) for i, action in enumerate(actions)])


# The hash of one entry ------------------------------------------------------------------------


def test_an_entry_hash_is_sha256_hex_over_the_previous_hash_and_the_canonical_content() -> None:
    entry = _entry(0)
    expected = hashlib.sha256(f"{GENESIS_HASH}\n{entry.canonical()}".encode()).hexdigest()

    assert entry_hash(GENESIS_HASH, entry) == expected
    assert len(expected) == 64


def test_the_canonical_form_is_compact_json_with_sorted_keys() -> None:
    entry = AuditEntry(
        id=uuid.UUID(int=1),
        action="auth.login",
        created_at=T0,
        actor_id=ALICE,
        subject="user:x",
        details={"b": 2, "a": "é"},
        ip="198.51.100.7",
        event_id=uuid.UUID(int=2),
    )

    assert entry.canonical() == (
        '{"action":"auth.login","actor_id":"00000000-0000-4000-8000-0000000000a1",'
        '"created_at":"2026-01-05T09:30:00.123456+00:00","details":{"a":"é","b":2},'
        '"event_id":"00000000-0000-0000-0000-000000000002","id":"00000000-0000-0000-0000-000000000001",'
        '"ip":"198.51.100.7","subject":"user:x"}'
    )


def test_absent_optional_fields_are_null_in_the_canonical_form() -> None:
    entry = AuditEntry(id=uuid.UUID(int=1), action="system.start", created_at=T0)

    assert entry.canonical() == (
        '{"action":"system.start","actor_id":null,"created_at":"2026-01-05T09:30:00.123456+00:00",'
        '"details":{},"event_id":null,"id":"00000000-0000-0000-0000-000000000001","ip":null,"subject":null}'
    )


def test_the_same_instant_in_another_time_zone_hashes_the_same() -> None:
    paris = timezone(timedelta(hours=1))

    assert entry_hash(GENESIS_HASH, _entry(0)) == entry_hash(
        GENESIS_HASH, _entry(0, created_at=T0.astimezone(paris))
    )


def test_whole_second_times_are_written_with_microseconds_so_they_read_back_the_same() -> None:
    entry = _entry(0, created_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC))

    assert '"created_at":"2026-01-05T09:30:00.000000+00:00"' in entry.canonical()


def test_the_order_in_which_details_were_built_does_not_change_the_hash() -> None:
    first = _entry(0, details={"a": 1, "b": {"y": 2, "x": 3}})
    second = _entry(0, details={"b": {"x": 3, "y": 2}, "a": 1})

    assert entry_hash(GENESIS_HASH, first) == entry_hash(GENESIS_HASH, second)


@pytest.mark.parametrize(
    "change",
    [
        {"id": uuid.UUID(int=999)},
        {"action": "auth.login_failed"},
        {"created_at": T0 + timedelta(microseconds=1)},
        {"actor_id": ADMIN},
        {"actor_id": None},
        {"subject": "user:someone-else"},
        {"details": {"n": 1}},
        {"details": {"n": 0, "extra": True}},
        {"ip": "198.51.100.8"},
        {"event_id": uuid.UUID(int=7)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_changing_any_field_changes_the_hash(change: dict[str, Any]) -> None:
    original = _entry(0)

    assert entry_hash(GENESIS_HASH, original) != entry_hash(GENESIS_HASH, _entry(0, **change))


def test_the_same_entry_after_another_predecessor_hashes_differently() -> None:
    entry = _entry(0)

    assert entry_hash(GENESIS_HASH, entry) != entry_hash("f" * 64, entry)


# Verifying a chain -----------------------------------------------------------------------------


def test_an_empty_trail_is_intact() -> None:
    assert verify_chain([]) == verify_chain(iter([]))
    report = verify_chain([])

    assert report.intact
    assert report.entries == 0
    assert report.problems == []


def test_a_chain_written_by_the_rules_is_intact() -> None:
    report = verify_chain(_five())

    assert report.intact
    assert report.entries == 5
    assert report.problems == []


def test_a_chain_can_be_verified_from_a_stream() -> None:
    report = verify_chain(row for row in _five())

    assert report.intact
    assert report.entries == 5


def test_the_verifier_follows_the_links_whatever_order_the_rows_arrive_in() -> None:
    rows = _five()

    assert verify_chain(list(reversed(rows))).intact
    assert verify_chain([rows[2], rows[0], rows[4], rows[1], rows[3]]).intact


def test_an_altered_row_is_reported_by_its_sequence_and_action() -> None:
    rows = _five()
    rows[2] = dataclasses.replace(rows[2], entry=_entry(2, "portfolio.create", details={"n": 2, "x": 1}))

    report = verify_chain(rows)

    assert not report.intact
    assert report.entries == 5
    assert report.problems == ["entry 3 (portfolio.create) was altered: its hash does not match"]


def test_a_row_altered_with_its_hash_recomputed_breaks_the_link_to_the_next_row() -> None:
    rows = _five()
    forged = _entry(1, "auth.login", actor_id=ADMIN)
    rows[1] = dataclasses.replace(rows[1], entry=forged, hash=entry_hash(rows[1].prev_hash, forged))

    report = verify_chain(rows)

    assert not report.intact
    assert report.problems == ["3 entries are not linked to the chain from its start"]


def test_a_removed_row_unlinks_every_row_after_it() -> None:
    rows = _five()
    del rows[1]

    report = verify_chain(rows)

    assert not report.intact
    assert report.entries == 4
    assert report.problems == ["3 entries are not linked to the chain from its start"]


def test_removing_the_first_row_is_detected() -> None:
    report = verify_chain(_five()[1:])

    assert not report.intact
    assert report.problems == ["4 entries are not linked to the chain from its start"]


def test_rows_swapped_in_place_are_reported_as_altered() -> None:
    rows = _five()
    second, third = rows[1], rows[2]
    rows[1] = dataclasses.replace(second, entry=third.entry)
    rows[2] = dataclasses.replace(third, entry=second.entry)

    report = verify_chain(rows)

    assert not report.intact
    assert report.problems == [
        "entry 2 (portfolio.create) was altered: its hash does not match",
        "entry 3 (auth.login) was altered: its hash does not match",
    ]


def test_rows_relinked_in_another_order_without_rehashing_are_detected() -> None:
    rows = _five()
    second, third = rows[1], rows[2]
    # The third row now claims to follow the first, the second to follow the third.
    rows[1] = dataclasses.replace(third, sequence=2, prev_hash=rows[0].hash)
    rows[2] = dataclasses.replace(second, sequence=3, prev_hash=third.hash)

    report = verify_chain(rows)

    assert not report.intact
    assert any("was altered" in problem for problem in report.problems)


def test_rows_whose_sequence_numbers_were_swapped_are_reported() -> None:
    rows = _five()
    # An UPDATE of the sequence column: the login now appears to come after the order.
    rows[1], rows[3] = (
        dataclasses.replace(rows[3], sequence=2),
        dataclasses.replace(rows[1], sequence=4),
    )

    report = verify_chain(rows)

    assert not report.intact


def test_two_rows_claiming_the_same_predecessor_fork_the_chain() -> None:
    rows = _five()
    rogue = _entry(99, "admin.grant_role", actor_id=ADMIN)
    fork = ChainedEntry(entry=rogue, sequence=6, prev_hash=rows[1].hash, hash=entry_hash(rows[1].hash, rogue))

    report = verify_chain([*rows, fork])

    assert not report.intact
    assert report.entries == 6
    assert "entries 3 and 6 fork the chain" in report.problems
    assert any("not linked to the chain from its start" in problem for problem in report.problems)


def test_a_duplicated_row_is_a_fork() -> None:
    rows = _five()

    report = verify_chain([*rows, rows[4]])

    assert not report.intact
    assert "entries 5 and 5 fork the chain" in report.problems


def test_rows_forged_into_a_loop_are_reported_without_hanging() -> None:
    first = _chain([_entry(0)])[0]
    loop = ChainedEntry(entry=_entry(1), sequence=2, prev_hash=first.hash, hash=first.hash)

    report = verify_chain([first, loop])

    assert not report.intact
    assert "the chain loops back on itself" in report.problems
    assert "entry 2 (auth.login) was altered: its hash does not match" in report.problems


def test_a_chain_that_does_not_start_at_genesis_is_not_intact() -> None:
    entries = [_entry(0), _entry(1)]
    rows = _chain(entries)
    start = "a" * 64
    rebased = [
        dataclasses.replace(rows[0], prev_hash=start, hash=entry_hash(start, entries[0])),
    ]
    rebased.append(
        dataclasses.replace(rows[1], prev_hash=rebased[0].hash, hash=entry_hash(rebased[0].hash, entries[1]))
    )

    report = verify_chain(rebased)

    assert not report.intact
    assert report.problems == ["2 entries are not linked to the chain from its start"]


# Properties ------------------------------------------------------------------------------------


_details = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
    max_size=4,
)


@given(details=st.lists(_details, min_size=1, max_size=12))
def test_any_honestly_written_chain_is_intact(details: list[dict[str, object]]) -> None:
    rows = _chain([_entry(i, details=d) for i, d in enumerate(details)])

    report = verify_chain(rows)

    assert report.intact
    assert report.entries == len(rows)


@given(size=st.integers(min_value=1, max_value=12), data=st.data())
def test_removing_any_row_but_the_newest_is_detected(size: int, data: st.DataObject) -> None:
    rows = _chain([_entry(i) for i in range(size + 1)])
    victim = data.draw(st.integers(min_value=0, max_value=size - 1))

    assert not verify_chain(rows[:victim] + rows[victim + 1 :]).intact


@given(size=st.integers(min_value=1, max_value=12), data=st.data())
def test_altering_the_details_of_any_row_is_detected(size: int, data: st.DataObject) -> None:
    rows = _chain([_entry(i) for i in range(size)])
    victim = data.draw(st.integers(min_value=0, max_value=size - 1))
    rows[victim] = dataclasses.replace(rows[victim], entry=_entry(victim, details={"n": -1}))

    assert not verify_chain(rows).intact
