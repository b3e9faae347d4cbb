"""Which lots a sale relieves, and the basis that goes with the shares sold."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.domain.lots import InsufficientShares, Lot, LotMethod, Term, UnknownLot, relieve, term


def lot(shares: str, basis: str, acquired: date, symbol: str = "AAPL") -> Lot:
    return Lot(
        id=uuid.uuid4(),
        symbol=symbol,
        shares=Decimal(shares),
        cost_basis=Decimal(basis),
        adjusted_basis=Decimal(basis),
        acquired_at=acquired,
        holding_period_start=acquired,
    )


OLD_CHEAP = lot("10", "1000.00", date(2019, 1, 2))  # 100 a share
MID_DEAR = lot("10", "1800.00", date(2020, 6, 1))  # 180 a share
NEW_MID = lot("10", "1500.00", date(2021, 3, 1))  # 150 a share
LOTS = [NEW_MID, OLD_CHEAP, MID_DEAR]


def test_fifo_sells_the_oldest_lots_first() -> None:
    reliefs = relieve(LOTS, Decimal("15"), LotMethod.FIFO)
    assert [(r.lot.id, r.shares) for r in reliefs] == [(OLD_CHEAP.id, 10), (MID_DEAR.id, 5)]
    assert [r.cost_basis for r in reliefs] == [Decimal("1000.00"), Decimal("900.0000")]


def test_hifo_sells_the_highest_basis_per_share_first() -> None:
    reliefs = relieve(LOTS, Decimal("15"), LotMethod.HIFO)
    assert [(r.lot.id, r.shares) for r in reliefs] == [(MID_DEAR.id, 10), (NEW_MID.id, 5)]


def test_specific_identification_sells_the_named_lots_in_the_order_named() -> None:
    reliefs = relieve(LOTS, Decimal("12"), LotMethod.SPECIFIC, [NEW_MID.id, OLD_CHEAP.id])
    assert [(r.lot.id, r.shares) for r in reliefs] == [(NEW_MID.id, 10), (OLD_CHEAP.id, 2)]
    with pytest.raises(UnknownLot):
        relieve(LOTS, Decimal("1"), LotMethod.SPECIFIC, [uuid.uuid4()])
    with pytest.raises(UnknownLot):
        relieve(LOTS, Decimal("1"), LotMethod.SPECIFIC, [])


def test_selling_more_than_held_is_refused_with_what_is_available() -> None:
    with pytest.raises(InsufficientShares) as info:
        relieve(LOTS, Decimal("30.000001"), LotMethod.FIFO)
    assert info.value.available == Decimal("30")


def test_a_lot_sold_in_pieces_relieves_exactly_its_basis() -> None:
    odd = lot("3", "100.00", date(2020, 1, 2))
    remaining = [odd]
    relieved = Decimal(0)
    for _ in range(3):
        [relief] = relieve(remaining, Decimal("1"), LotMethod.FIFO)
        relieved += relief.cost_basis
        remaining = [relief.remaining]
    assert relieved == Decimal("100.00")
    assert remaining[0].shares == 0 and remaining[0].cost_basis == 0


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=6),
    bases=st.lists(st.integers(min_value=0, max_value=100_000), min_size=6, max_size=6),
    method=st.sampled_from([LotMethod.FIFO, LotMethod.HIFO]),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_relief_never_invents_or_loses_shares_or_basis(
    sizes: list[int], bases: list[int], method: LotMethod, fraction: object
) -> None:
    lots = [
        lot(str(n), f"{b}.37", date(2018, 1, 1 + i))
        for i, (n, b) in enumerate(zip(sizes, bases, strict=False))
    ]
    total = sum(Decimal(n) for n in sizes)
    wanted = (total * Decimal(str(float(fraction)))).quantize(Decimal("0.000001"))  # type: ignore[arg-type]
    if wanted <= 0:
        return
    reliefs = relieve(lots, wanted, method)
    assert sum(r.shares for r in reliefs) == wanted
    for r in reliefs:
        assert Decimal(0) <= r.cost_basis <= r.lot.cost_basis
        assert r.remaining.shares >= 0 and r.remaining.cost_basis >= 0


@pytest.mark.parametrize(
    ("start", "sold", "expected"),
    [
        (date(2021, 3, 10), date(2022, 3, 10), Term.SHORT),  # exactly one year is not more than one year
        (date(2021, 3, 10), date(2022, 3, 11), Term.LONG),
        (date(2020, 2, 29), date(2021, 3, 1), Term.SHORT),  # leap day: the anniversary is 1 March
        (date(2020, 2, 29), date(2021, 3, 2), Term.LONG),
    ],
)
def test_long_term_means_held_more_than_one_year(start: date, sold: date, expected: Term) -> None:
    assert term(start, sold) is expected
