"""Replacement candidates for a harvested security: similar enough to keep the exposure, not identical.

Selling at a loss and buying a substantially identical security within 30
days forfeits the loss; holding cash for 31 days forfeits the exposure. The
usual way out is a replacement that moves with the security sold without
being identical to it. Similarity here is::

    similarity = (1 - sector_weight) * max(correlation, 0) + sector_weight * same_sector

where ``correlation`` is that of daily returns over the price history given
(pairwise: each pair over the days both have a close) and ``same_sector`` is
1 when both have the same sector. It lies in 0..1; a negatively correlated
security is no replacement, so its correlation counts as 0. Candidates never
include the security itself or anything in its identity group.

Pure: a frame of closes and a sector lookup in, candidates out; the caller
reads them from :class:`~wealthalloc.marketdata.PriceHistory` and
:class:`~wealthalloc.marketdata.SecurityReference`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wealthalloc.domain.wash_sale import IdentityGroups


@dataclass(frozen=True)
class Candidate:
    """A possible replacement, with the figures its rank comes from.

    Attributes
    ----------
    symbol : str
        The candidate.
    similarity : float
        0..1, higher is closer.
    correlation : float
        Of daily returns with the security sold, -1..1.
    same_sector : bool
        Both are in the same sector.
    sector : str, optional
        The candidate's sector, when known.
    overlap : int
        Days of returns the correlation is computed from.
    """

    symbol: str
    similarity: float
    correlation: float
    same_sector: bool
    sector: str | None
    overlap: int


class SimilarityEngine:
    """Ranks replacement candidates by return correlation and sector.

    Parameters
    ----------
    closes : DataFrame
        Daily closes, one column per symbol, indexed by date (as
        :meth:`PriceHistory.frame` returns them). Missing closes are NaN.
    sectors : mapping of str to str
        Symbol to sector; a symbol missing here gets no sector bonus.
    groups : IdentityGroups, optional
        Substantially identical securities, never offered as replacements of one another.
    universe : collection of str, optional
        The symbols that may be offered (tradable ones: not an index); every
        column when omitted.
    sector_weight : float
        Weight of the same-sector term, 0..1.
    min_overlap : int
        Fewest days of returns in common for a correlation to count.
    """

    def __init__(
        self,
        closes: pd.DataFrame,
        sectors: Mapping[str, str],
        *,
        groups: IdentityGroups | None = None,
        universe: Collection[str] | None = None,
        sector_weight: float = 0.25,
        min_overlap: int = 250,
    ) -> None:
        if not 0 <= sector_weight <= 1:
            raise ValueError("sector_weight must lie in 0..1")
        if min_overlap < 2:
            raise ValueError("min_overlap must be at least 2")
        frame = closes.sort_index()
        frame.columns = [str(column).upper() for column in frame.columns]
        returns = frame.pct_change(fill_method=None).iloc[1:]
        present = returns.notna().to_numpy(dtype=np.float64)
        self._symbols: list[str] = list(frame.columns)
        self._position = {symbol: i for i, symbol in enumerate(self._symbols)}
        self._correlation = returns.corr(min_periods=min_overlap).to_numpy(dtype=np.float64)
        self._overlap = (present.T @ present).astype(np.int64)
        self._sectors = {symbol.upper(): sector for symbol, sector in sectors.items()}
        self._groups = groups or IdentityGroups()
        allowed = self._symbols if universe is None else [symbol.upper() for symbol in universe]
        self._universe = [symbol for symbol in allowed if symbol in self._position]
        self._sector_weight = sector_weight
        self._ranked: dict[str, list[Candidate]] = {}

    @property
    def symbols(self) -> list[str]:
        """The symbols with prices."""
        return list(self._symbols)

    def correlation(self, a: str, b: str) -> float | None:
        """Correlation of daily returns, or ``None`` when either has no prices or too few days in common."""
        i, j = self._position.get(a.upper()), self._position.get(b.upper())
        if i is None or j is None:
            return None
        value = float(self._correlation[i, j])
        return None if math.isnan(value) else value

    def similarity(self, a: str, b: str) -> float | None:
        """The similarity of two securities (0..1), or ``None`` when their correlation is unknown."""
        rho = self.correlation(a, b)
        if rho is None:
            return None
        sector_a, sector_b = self._sectors.get(a.upper()), self._sectors.get(b.upper())
        same = sector_a is not None and sector_a == sector_b
        return (1 - self._sector_weight) * max(rho, 0.0) + self._sector_weight * float(same)

    def candidates(self, symbol: str, *, limit: int = 5, exclude: Collection[str] = ()) -> list[Candidate]:
        """The closest replacements for ``symbol``, most similar first.

        Parameters
        ----------
        symbol : str
            The security to be sold.
        limit : int
            At most this many.
        exclude : collection of str
            More symbols not to offer (blocked by a wash-sale window of their own, say).

        Returns
        -------
        list of Candidate
            Never ``symbol`` nor a member of its identity group; empty when
            ``symbol`` has no prices. Ties are broken by symbol.
        """
        key = symbol.upper()
        ranked = self._ranked.get(key)
        if ranked is None:
            ranked = self._ranked[key] = self._rank(key)
        excluded = {item.upper() for item in exclude}
        return [item for item in ranked if item.symbol not in excluded][: max(limit, 0)]

    def _rank(self, symbol: str) -> list[Candidate]:
        i = self._position.get(symbol)
        if i is None:
            return []
        identical = self._groups.members(symbol)
        sector = self._sectors.get(symbol)
        found: list[Candidate] = []
        for other in self._universe:
            if other in identical or self._groups.identical(symbol, other):
                continue
            j = self._position[other]
            rho = float(self._correlation[i, j])
            if math.isnan(rho):
                continue
            other_sector = self._sectors.get(other)
            same = sector is not None and sector == other_sector
            score = (1 - self._sector_weight) * max(rho, 0.0) + self._sector_weight * float(same)
            found.append(
                Candidate(
                    symbol=other,
                    similarity=round(min(max(score, 0.0), 1.0), 6),
                    correlation=round(rho, 6),
                    same_sector=same,
                    sector=other_sector,
                    overlap=int(self._overlap[i, j]),
                )
            )
        found.sort(key=lambda item: (-item.similarity, item.symbol))
        return found
