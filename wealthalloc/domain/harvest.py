"""Tax-loss harvesting: which lots to sell at a loss, what it saves this year, and what would spoil it.

A position in a taxable account is an opportunity when selling its loss lots
realizes a loss at least ``min_loss`` in dollars AND at least ``min_loss_pct``
of their basis (both, so that neither a small loss on a large position nor a
large percentage of a few dollars is worth a trade). The lots are listed in
HIFO order and sold by specific identification, so only the loss lots are sold.

A lot's loss and term are what selling it today would realize under the rule of
how it was acquired (:mod:`wealthalloc.domain.acquisitions`, docs/tax-acquisitions.md):
a gift whose value at the gift was below the donor's basis measures a loss from
that lower value (its loss basis), with a holding period starting at the gift,
and a price between the two bases realizes nothing, so such a lot is no
opportunity; an inherited lot's loss is long-term whatever its dates.

The saving is this year's tax with the harvest against without it, under the
taxpayer's profile: losses first offset the gains realized so far this year
(short against short, long against long, then across), and what remains
offsets ordinary income up to the $3,000 limit ($1,500 married filing
separately). Beyond that the loss carries forward; that later value is not
counted here. Each opportunity is estimated as if it were the only one harvested.

Losses carried into the year (``TaxProfile.carryforward``: computed from the
platform's earlier years, started from the carryover the taxpayer entered for
the years before it) are netted first, as Schedule D nets them, so they use
up the gains and the deduction before a harvest does: a taxpayer whose
carryforward already covers this year's gains and the whole limit saves
nothing this year from harvesting (the harvested loss only adds to what is
carried forward, which is not counted).

A harvest is spoiled by any purchase of the same or a substantially
identical security within 30 days before or after the sale, in any account:
recent buys (a transfer-in is the purchase it was, on its date; a gift or an
inheritance received is no purchase, IRC 1091), open buy orders and dividend
reinvestment are listed as blockers, and the sale opens a window ending 30
days later in which the security must not be bought back. IRA and Roth IRA
losses are never deductible, so only taxable accounts are scanned.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from wealthalloc.domain.acquisitions import basis_for_sale, term_of
from wealthalloc.domain.gains_report import CapitalLossCarryforward, FilingStatus, capital_loss_limit
from wealthalloc.domain.lots import Lot, LotMethod, Term, order_lots
from wealthalloc.domain.money import money
from wealthalloc.domain.similarity import Candidate, SimilarityEngine
from wealthalloc.domain.wash_sale import WASH_SALE_DAYS, AccountLot, IdentityGroups, Side, Transaction

_ZERO = Decimal(0)


@dataclass(frozen=True)
class TaxProfile:
    """What the tax on this year's capital gains depends on.

    Attributes
    ----------
    short_rate : Decimal
        Marginal rate on ordinary income (federal plus state), which taxes
        short-term gains and is what a deduction against income saves.
    long_rate : Decimal
        Marginal rate on long-term gains.
    filing_status : FilingStatus
        Decides the deduction limit.
    realized_short, realized_long : Decimal
        Net gains (negative: losses) realized so far this year, wash-sale adjustments included.
    carryforward : CapitalLossCarryforward
        Losses carried into this year.
    """

    short_rate: Decimal
    long_rate: Decimal
    filing_status: FilingStatus = FilingStatus.SINGLE
    realized_short: Decimal = _ZERO
    realized_long: Decimal = _ZERO
    carryforward: CapitalLossCarryforward = field(default_factory=CapitalLossCarryforward)

    def __post_init__(self) -> None:
        for name in ("short_rate", "long_rate"):
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a fraction in 0..1, not {rate}")


def capital_gains_tax(
    profile: TaxProfile, *, more_short: Decimal = _ZERO, more_long: Decimal = _ZERO
) -> Decimal:
    """This year's tax on net capital gains; negative when a net loss reduces the tax on income.

    Parameters
    ----------
    profile : TaxProfile
        Rates, filing status, gains realized so far and the carryforward.
    more_short, more_long : Decimal
        Gains (negative: losses) to add to those realized so far.
    """
    short = profile.realized_short + more_short - profile.carryforward.short
    long = profile.realized_long + more_long - profile.carryforward.long
    if short >= 0 and long >= 0:
        return short * profile.short_rate + long * profile.long_rate
    net = short + long
    if net < 0:
        return -min(-net, capital_loss_limit(profile.filing_status)) * profile.short_rate
    # One term's loss absorbed by the other's gain: what remains is taxed at the gaining term's rate.
    return net * (profile.long_rate if short < 0 else profile.short_rate)


def estimate_tax_savings(profile: TaxProfile, *, short_loss: Decimal, long_loss: Decimal) -> Decimal:
    """Tax saved this year by realizing these losses (positive amounts), rounded to money.

    Parameters
    ----------
    profile : TaxProfile
        The taxpayer.
    short_loss, long_loss : Decimal
        The harvested losses by term, as positive amounts.
    """
    before = capital_gains_tax(profile)
    after = capital_gains_tax(profile, more_short=-short_loss, more_long=-long_loss)
    return money(max(before - after, _ZERO))


@dataclass(frozen=True)
class LotOrigin:
    """How a lot came to be held, where that changes harvesting it (``lots.source`` and its columns).

    A lot the scanner is given no origin for is an ordinary purchase.

    Attributes
    ----------
    purchase : bool
        Acquired by purchase (a buy, or a transfer-in on its purchase date): only a purchase can be
        the replacement shares of a wash sale, so a gift or an inheritance received blocks nothing.
    loss_basis : Decimal, optional
        A gift's basis for figuring a loss: the value at the gift, when it was below the donor's basis.
    always_long : bool
        Inherited: long-term however briefly held.
    """

    purchase: bool = True
    loss_basis: Decimal | None = None
    always_long: bool = False


ORDINARY = LotOrigin()


@dataclass(frozen=True)
class LotLoss:
    """What selling a whole lot at a price would realize: its value, the basis it is measured from,
    the loss (negative: a gain, or nothing) and the term."""

    market_value: Decimal
    basis: Decimal
    loss: Decimal
    term: Term


def loss_if_sold(lot: Lot, origin: LotOrigin, *, price: Decimal, on: dt.date) -> LotLoss:
    """The loss selling ``lot`` at ``price`` on ``on`` would realize, by the rule of how it was acquired.

    The basis and holding period are the sale's own (:func:`~wealthalloc.domain.acquisitions.basis_for_sale`,
    :func:`~wealthalloc.domain.acquisitions.term_of`), so the harvest shows what the sale will book:
    a gift below its loss basis loses from the loss basis (plus any wash-sale loss it carries), short-term
    from the gift; between its two bases it loses nothing; an inherited lot is long-term.
    """
    value = money(lot.shares * price)
    sale = basis_for_sale(
        amount_realized=value,
        basis=lot.adjusted_basis,
        loss_basis=None if origin.loss_basis is None else origin.loss_basis + lot.wash_sale_disallowed,
        holding_period_start=lot.holding_period_start,
        acquired_at=lot.acquired_at,
    )
    held = term_of(holding_period_start=sale.holding_period_start, always_long=origin.always_long, sold_on=on)
    return LotLoss(market_value=value, basis=sale.basis, loss=sale.basis - value, term=held)


class BlockerKind(enum.StrEnum):
    RECENT_BUY = "recent_buy"
    OPEN_BUY_ORDER = "open_buy_order"
    DIVIDEND_REINVESTMENT = "dividend_reinvestment"


@dataclass(frozen=True)
class OpenBuyOrder:
    """A buy order not yet filled: filling it within 30 days of the harvest would be a wash sale."""

    account_id: str
    symbol: str
    quantity: Decimal
    order_id: str | None = None


@dataclass(frozen=True)
class DividendReinvestment:
    """An account that reinvests the dividends of ``symbol``: each dividend is a purchase."""

    account_id: str
    symbol: str


@dataclass(frozen=True)
class HarvestActivity:
    """The taxpayer's recent and pending purchases, across all accounts.

    ``recent_buys`` may hold any trades: only buys of the last 30 days count.
    """

    recent_buys: Sequence[Transaction] = ()
    open_buy_orders: Sequence[OpenBuyOrder] = ()
    dividend_reinvestment: Sequence[DividendReinvestment] = ()


@dataclass(frozen=True)
class Blocker:
    """A purchase that would make the harvest a wash sale."""

    kind: BlockerKind
    account_id: str
    symbol: str
    on: dt.date | None
    quantity: Decimal | None
    detail: str


@dataclass(frozen=True)
class HarvestLot:
    """A lot to sell, valued at the current price.

    ``cost_basis`` is what the sale's loss is measured from: the adjusted basis, or a gift's loss basis.
    """

    lot: AccountLot
    market_value: Decimal
    loss: Decimal
    term: Term
    cost_basis: Decimal
    origin: LotOrigin = ORDINARY

    @property
    def shares(self) -> Decimal:
        return self.lot.lot.shares


@dataclass(frozen=True)
class Opportunity:
    """Selling ``lots`` of ``symbol`` in one taxable account realizes ``loss`` (positive).

    ``term`` is "short", "long" or "mixed", as the ``tax_harvests`` table holds it.
    """

    account_id: str
    symbol: str
    price: Decimal
    lots: tuple[HarvestLot, ...]
    shares: Decimal
    cost_basis: Decimal
    market_value: Decimal
    loss: Decimal
    loss_pct: Decimal
    short_loss: Decimal
    long_loss: Decimal
    term: str
    estimated_tax_savings: Decimal
    wash_sale_window_end: dt.date
    blockers: tuple[Blocker, ...]
    replacements: tuple[Candidate, ...]

    @property
    def lot_ids(self) -> list[str]:
        return [str(item.lot.lot.id) for item in self.lots]

    @property
    def blocked(self) -> bool:
        """Harvesting now would be a wash sale, unless the blockers are cleared first."""
        return bool(self.blockers)


class HarvestScanner:
    """Finds harvesting opportunities in a taxpayer's open lots.

    Parameters
    ----------
    min_loss : Decimal
        Smallest loss worth a trade, in dollars (``Settings.harvest_min_loss``).
    min_loss_pct : Decimal
        Smallest loss as a fraction of each sold lot's basis (``Settings.harvest_min_loss_pct``).
    groups : IdentityGroups, optional
        Substantially identical securities.
    similarity : SimilarityEngine, optional
        Proposes replacements; none are proposed without it.
    max_replacements : int
        Replacement candidates per opportunity.
    """

    def __init__(
        self,
        *,
        min_loss: Decimal,
        min_loss_pct: Decimal,
        groups: IdentityGroups | None = None,
        similarity: SimilarityEngine | None = None,
        max_replacements: int = 3,
    ) -> None:
        if min_loss < 0 or not 0 <= min_loss_pct <= 1:
            raise ValueError("min_loss must be >= 0 and min_loss_pct in 0..1")
        self._min_loss = min_loss
        self._min_loss_pct = min_loss_pct
        self._groups = groups or IdentityGroups()
        self._similarity = similarity
        self._max_replacements = max_replacements

    def scan(
        self,
        lots: Iterable[AccountLot],
        *,
        prices: Mapping[str, Decimal],
        today: dt.date,
        profile: TaxProfile,
        activity: HarvestActivity | None = None,
        origins: Mapping[uuid.UUID, LotOrigin] | None = None,
    ) -> list[Opportunity]:
        """Every opportunity among ``lots``, largest estimated saving first.

        Parameters
        ----------
        lots : iterable of AccountLot
            The taxpayer's open lots in all accounts (other accounts' recent
            lots are blockers too).
        prices : mapping of str to Decimal
            Current prices; a position without one is skipped.
        today : date
            The day the sale would happen.
        profile : TaxProfile
            For the saving estimate.
        activity : HarvestActivity, optional
            Recent buys, open buy orders and dividend reinvestment, all accounts.
        origins : mapping of lot id to LotOrigin, optional
            How the lots that were not bought came (gifts, inheritances); the others are purchases.

        Returns
        -------
        list of Opportunity
            Sorted by estimated saving, then loss, descending.
        """
        activity = activity or HarvestActivity()
        origins = origins or {}
        held = list(lots)
        purchases = _Purchases(self._groups, held, activity, today, origins)
        positions: dict[tuple[str, str], list[AccountLot]] = {}
        for item in held:
            if item.account_type.is_taxable and item.lot.shares > 0:
                positions.setdefault((item.account_id, item.lot.symbol), []).append(item)
        found: list[Opportunity] = []
        for (account_id, symbol), position in positions.items():
            price = prices.get(symbol)
            if price is None or price <= 0:
                continue
            opportunity = self._opportunity(
                account_id, symbol, price, position, today, profile, purchases, origins
            )
            if opportunity is not None:
                found.append(opportunity)
        found.sort(key=lambda o: (-o.estimated_tax_savings, -o.loss, o.symbol, o.account_id))
        return found

    def _opportunity(
        self,
        account_id: str,
        symbol: str,
        price: Decimal,
        position: list[AccountLot],
        today: dt.date,
        profile: TaxProfile,
        purchases: _Purchases,
        origins: Mapping[uuid.UUID, LotOrigin],
    ) -> Opportunity | None:
        by_id = {item.lot.id: item for item in position}
        chosen: list[HarvestLot] = []
        for lot in order_lots([item.lot for item in position], LotMethod.HIFO):
            origin = origins.get(lot.id, ORDINARY)
            sale = loss_if_sold(lot, origin, price=price, on=today)
            # Not a break: a gift's loss basis can sit below the HIFO order's next lot's basis.
            if sale.loss <= 0 or sale.loss < sale.basis * self._min_loss_pct:
                continue
            chosen.append(
                HarvestLot(
                    lot=by_id[lot.id],
                    market_value=sale.market_value,
                    loss=sale.loss,
                    term=sale.term,
                    cost_basis=sale.basis,
                    origin=origin,
                )
            )
        total_loss = sum((item.loss for item in chosen), _ZERO)
        if not chosen or total_loss < self._min_loss:
            return None
        basis = sum((item.cost_basis for item in chosen), _ZERO)
        short_loss = sum((item.loss for item in chosen if item.term is Term.SHORT), _ZERO)
        long_loss = total_loss - short_loss
        terms = {item.term for item in chosen}
        replacements: tuple[Candidate, ...] = ()
        if self._similarity is not None:
            replacements = tuple(
                candidate
                for candidate in self._similarity.candidates(symbol, limit=self._max_replacements + 4)
                if not self._groups.identical(symbol, candidate.symbol)
            )[: self._max_replacements]
        return Opportunity(
            account_id=account_id,
            symbol=symbol,
            price=price,
            lots=tuple(chosen),
            shares=sum((item.shares for item in chosen), _ZERO),
            cost_basis=basis,
            market_value=sum((item.market_value for item in chosen), _ZERO),
            loss=total_loss,
            loss_pct=(total_loss / basis).quantize(Decimal("0.000001")) if basis else _ZERO,
            short_loss=short_loss,
            long_loss=long_loss,
            term=terms.pop().value if len(terms) == 1 else "mixed",
            estimated_tax_savings=estimate_tax_savings(profile, short_loss=short_loss, long_loss=long_loss),
            wash_sale_window_end=today + dt.timedelta(days=WASH_SALE_DAYS),
            blockers=purchases.blocking(symbol, chosen),
            replacements=replacements,
        )


class _Purchases:
    """The taxpayer's purchases that could be replacement shares, indexed by identity group."""

    def __init__(
        self,
        groups: IdentityGroups,
        held: list[AccountLot],
        activity: HarvestActivity,
        today: dt.date,
        origins: Mapping[uuid.UUID, LotOrigin],
    ) -> None:
        self._groups = groups
        start = today - dt.timedelta(days=WASH_SALE_DAYS)
        self._buys: dict[str, list[Transaction]] = {}
        refs: set[str] = set()
        for tx in activity.recent_buys:
            if tx.side is Side.BUY and start <= tx.date <= today:
                self._buys.setdefault(groups.key(tx.symbol), []).append(tx)
                if tx.ref is not None:
                    refs.add(tx.ref)
        # Lots bought in the window and still held are purchases too, when no buy above stands for them;
        # a gift or an inheritance received in the window was not bought.
        self._lots: dict[str, list[AccountLot]] = {}
        for item in held:
            if not origins.get(item.lot.id, ORDINARY).purchase:
                continue
            if start <= item.lot.acquired_at <= today and item.lot.shares > 0:
                if item.opened_by_ref is None or item.opened_by_ref not in refs:
                    self._lots.setdefault(groups.key(item.lot.symbol), []).append(item)
        self._orders: dict[str, list[OpenBuyOrder]] = {}
        for order in activity.open_buy_orders:
            self._orders.setdefault(groups.key(order.symbol), []).append(order)
        self._drip: dict[str, list[DividendReinvestment]] = {}
        for flag in activity.dividend_reinvestment:
            self._drip.setdefault(groups.key(flag.symbol), []).append(flag)

    def blocking(self, symbol: str, chosen: Sequence[HarvestLot]) -> tuple[Blocker, ...]:
        """What would make selling ``chosen`` a wash sale; the lots sold (and their buys) replace nothing."""
        key = self._groups.key(symbol)
        sold = {item.lot.lot.id for item in chosen}
        own_refs = {item.lot.opened_by_ref for item in chosen if item.lot.opened_by_ref is not None}
        blockers: list[Blocker] = []
        for tx in self._buys.get(key, []):
            if tx.ref is not None and tx.ref in own_refs:
                continue
            blockers.append(
                Blocker(
                    kind=BlockerKind.RECENT_BUY,
                    account_id=tx.account_id,
                    symbol=tx.symbol,
                    on=tx.date,
                    quantity=tx.quantity,
                    detail=f"bought {tx.quantity} {tx.symbol} on {tx.date} in account {tx.account_id}",
                )
            )
        for item in self._lots.get(key, []):
            if item.lot.id in sold:
                continue
            blockers.append(
                Blocker(
                    kind=BlockerKind.RECENT_BUY,
                    account_id=item.account_id,
                    symbol=item.lot.symbol,
                    on=item.lot.acquired_at,
                    quantity=item.lot.shares,
                    detail=f"holds {item.lot.shares} {item.lot.symbol} bought on {item.lot.acquired_at}"
                    f" in account {item.account_id}",
                )
            )
        for order in self._orders.get(key, []):
            blockers.append(
                Blocker(
                    kind=BlockerKind.OPEN_BUY_ORDER,
                    account_id=order.account_id,
                    symbol=order.symbol,
                    on=None,
                    quantity=order.quantity,
                    detail=f"open order to buy {order.quantity} {order.symbol} in account {order.account_id}",
                )
            )
        for flag in self._drip.get(key, []):
            blockers.append(
                Blocker(
                    kind=BlockerKind.DIVIDEND_REINVESTMENT,
                    account_id=flag.account_id,
                    symbol=flag.symbol,
                    on=None,
                    quantity=None,
                    detail=f"dividends of {flag.symbol} are reinvested in account {flag.account_id}",
                )
            )
        return tuple(blockers)
