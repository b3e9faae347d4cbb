"""Replacement candidates on the bundled price history: banks find banks, oil finds oil, never themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wealthalloc.domain.similarity import SimilarityEngine
from wealthalloc.domain.wash_sale import IdentityGroups
from wealthalloc.marketdata import INDEX_SYMBOL, PriceHistory, SecurityReference


@pytest.fixture(scope="module")
def closes(data_dir: Path) -> pd.DataFrame:
    return PriceHistory(data_dir / "prices").frame()


@pytest.fixture(scope="module")
def reference() -> SecurityReference:
    return SecurityReference()


def engine(closes: pd.DataFrame, reference: SecurityReference, **options: object) -> SimilarityEngine:
    sectors = {security.symbol: security.sector for security in reference}
    tradable = [security.symbol for security in reference if security.asset_class != "index"]
    return SimilarityEngine(closes, sectors, universe=tradable, **options)  # type: ignore[arg-type]


def test_the_most_similar_to_a_bank_is_the_other_bank(
    closes: pd.DataFrame, reference: SecurityReference
) -> None:
    similar = engine(closes, reference)
    for bank, other in (("BAC", "JPM"), ("JPM", "BAC")):
        best = similar.candidates(bank, limit=3)
        assert best[0].symbol == other
        assert best[0].same_sector and best[0].sector == "Financials"
        assert best[0].correlation > 0.6


def test_energy_and_staples_find_their_own_sector(closes: pd.DataFrame, reference: SecurityReference) -> None:
    similar = engine(closes, reference)
    assert similar.candidates("XOM", limit=1)[0].symbol == "CVX"
    assert {c.symbol for c in similar.candidates("KO", limit=2)} <= {"PEP", "PG", "WMT"}


def test_never_the_symbol_itself_nor_its_group_nor_an_index(
    closes: pd.DataFrame, reference: SecurityReference
) -> None:
    similar = engine(closes, reference, groups=IdentityGroups({"BAC": "big-banks", "JPM": "big-banks"}))
    for symbol in similar.symbols:
        found = [c.symbol for c in similar.candidates(symbol, limit=100)]
        assert symbol not in found
        assert INDEX_SYMBOL not in found
    assert "JPM" not in [c.symbol for c in similar.candidates("BAC", limit=100)]
    assert similar.candidates("BAC", limit=1)[0].sector != "Financials"


def test_similarities_lie_in_0_1_and_come_sorted(closes: pd.DataFrame, reference: SecurityReference) -> None:
    similar = engine(closes, reference)
    found = similar.candidates("MSFT", limit=100)
    assert len(found) == 24  # 25 tradable symbols but MSFT
    scores = [c.similarity for c in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)
    # Factor ETFs start in 2014: their correlations use the days both have prices.
    mtum = next(c for c in found if c.symbol == "MTUM")
    assert 1000 < mtum.overlap < len(closes)
    assert similar.similarity("MSFT", "AAPL") == pytest.approx(
        found[[c.symbol for c in found].index("AAPL")].similarity
    )


def test_exclusions_limits_and_unknown_symbols(closes: pd.DataFrame, reference: SecurityReference) -> None:
    similar = engine(closes, reference)
    assert [c.symbol for c in similar.candidates("BAC", limit=2, exclude=["jpm"])][0] != "JPM"
    assert similar.candidates("BAC", limit=0) == []
    assert similar.candidates("NOPE") == []
    assert similar.correlation("NOPE", "BAC") is None


def test_the_score_is_the_documented_blend_of_correlation_and_sector() -> None:
    days = pd.bdate_range("2020-01-01", periods=300)
    moves = np.random.default_rng(1).normal(0, 0.01, len(days))
    closes = pd.DataFrame(
        {"A": np.cumprod(1 + moves), "TWIN": np.cumprod(1 + moves), "MIRROR": np.cumprod(1 - moves)},
        index=days,
    )
    similar = SimilarityEngine(closes, {"A": "X", "TWIN": "Y", "MIRROR": "X"}, sector_weight=0.25)
    twin, mirror = similar.candidates("A")
    assert (twin.symbol, twin.similarity) == (
        "TWIN",
        pytest.approx(0.75),
    )  # perfect correlation, other sector
    assert (mirror.symbol, mirror.similarity) == (
        "MIRROR",
        pytest.approx(0.25),
    )  # anti-correlated: sector only
    with pytest.raises(ValueError):
        SimilarityEngine(closes, {}, sector_weight=2)
