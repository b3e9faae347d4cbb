"""A frozen record is a frozen dataclass in every way a caller can see; only its constructor is faster."""

from __future__ import annotations

import dataclasses

import pytest

from wealthalloc.domain.records import frozen_record


@frozen_record
class Row:
    symbol: str
    shares: int
    note: str | None = None


def test_fields_are_set_by_keyword_or_position_and_defaults_apply() -> None:
    assert Row("AAPL", 3) == Row(symbol="AAPL", shares=3) == Row("AAPL", 3, None)
    assert Row("AAPL", 3, note="x").note == "x"
    assert [field.name for field in dataclasses.fields(Row)] == ["symbol", "shares", "note"]


def test_a_record_refuses_assignment_and_deletion() -> None:
    row = Row("AAPL", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.shares = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del row.symbol  # type: ignore[misc]


def test_records_compare_hash_and_replace_like_frozen_dataclasses() -> None:
    row = Row("AAPL", 3)
    assert hash(row) == hash(Row("AAPL", 3))
    assert {row, Row("AAPL", 3)} == {row}
    assert dataclasses.replace(row, shares=5) == Row("AAPL", 5)
    assert repr(row) == "Row(symbol='AAPL', shares=3, note=None)"


def test_missing_or_unknown_fields_are_refused_as_by_a_dataclass() -> None:
    with pytest.raises(TypeError):
        Row("AAPL")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Row("AAPL", 3, colour="red")  # type: ignore[call-arg]


def test_classes_whose_construction_would_be_skipped_are_refused() -> None:
    with pytest.raises(TypeError, match="__post_init__"):

        @frozen_record
        class Checked:
            value: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="default_factory"):

        @frozen_record
        class Listed:
            items: list[int] = dataclasses.field(default_factory=list)
