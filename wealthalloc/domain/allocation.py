"""Allocation and rebalancing: where a portfolio stands against its target, and the orders that bring it back.

Pure domain code: no Ray, no database, no HTTP. Money and share quantities are
:class:`~decimal.Decimal` throughout; a ``float`` is refused wherever money or
shares go in, because binary fractions do not add up to cents.

Targets
    A :class:`TargetAllocation` has three parts, each a mapping of key to a
    weight that is a fraction of the *whole* portfolio, cash included:
    ``asset_class`` (``{"equity": 0.9, "cash": 0.1}``), ``sector`` (GICS
    sectors and fund categories) and ``symbol`` (single symbols pinned to a
    weight). Any part may be empty. A non-empty ``asset_class`` must add to
    exactly 1 (within 1e-9): it describes the whole portfolio, so a class it
    does not name, cash included, has a target of 0. Without that rule a
    class left out would have no room yet still be held, the named classes
    could never reach their targets, and every rebalance would chase a drift
    it cannot close. ``sector`` and ``symbol`` each add to at most
    ``1 - cash weight``: they only describe invested money.

Reports
    :func:`allocation` reports value, current weight, target weight and drift
    (current minus target, so positive means overweight) by asset class, by
    sector and by symbol. Cash is a row of ``by_asset_class`` only: it has no
    sector, and keeping it out of ``by_sector`` lets sector rows be compared
    directly with sector targets. ``by_symbol`` shows only the pinned symbol
    targets; the per-symbol targets :func:`rebalance` derives from sector and
    class targets depend on current values and are not a statement of the
    owner's target. Rows are sorted by value, largest first, then by key.

Rules of :func:`rebalance`, and why
    1. *The most specific target wins.* Each symbol's target weight comes from
       its symbol target; else from its sector's target, split among the
       symbols held in that sector (those not pinned) in proportion to their
       current value; else from its asset class's target split the same way.
       Splitting by current value keeps the owner's own choice of names inside
       a group and trades every name in the same proportion. Pinned symbols
       and sector targets are taken off the sector and class targets first.
       When more specific targets already exceed a broader one, the specific
       ones are kept and the rest of the group is sold down to 0; the broader
       target is listed in :attr:`RebalancePlan.unfillable`.
    2. *A targeted group with nothing held buys a candidate.* A sector target
       with no holding uses the first suitable entry of
       ``candidates[sector]`` (positions with ``shares == 0`` carrying a
       price); an asset class with no holding uses the first candidate of that
       class whose sector has no target of its own; a pinned symbol not held
       takes its price from the candidates. Without one the target is
       listed as unfillable rather than guessed at; an unfilled sector's
       weight then stays with the rest of its asset class's target, as
       without a security there is no knowing which class it would be in.
    3. *Symbols with no target in any part are left alone*: this only happens
       when ``asset_class`` is empty and the symbol's sector has no target.
    4. *Tolerance bands, not calendar rebalancing.* Nothing is traded while
       every targeted row (asset class, cash, sector, symbol) is within
       ``drift_band`` of its target: small drifts cost more in commissions,
       spreads and taxes than they are worth. When rows are outside the band,
       only the symbols under those rows (the symbols whose targets roll up
       into them) are traded, back to their targets. Cash is the complement
       of everything else, so when cash is outside its band, now or once
       those orders fill (selling an overweight sector frees cash), the rows
       that would then drift the other way (underweight rows for surplus
       cash, overweight rows for a shortfall) are traded too: that is the
       least trading that brings cash back, and a plan that left its own sale
       proceeds idle outside the band would only call for a second plan.
    5. *Sells first, then buys from what is there.* Sells come first so their
       proceeds can pay for buys. Buys spend only the cash above the cash
       target (``asset_class["cash"]``, 0 when absent) and never make cash
       negative; when they want more, every buy is scaled down by the same
       fraction, so no name is favoured by the order it was listed in.
    6. *Orders are ones a broker takes.* With ``whole_shares`` quantities are
       floored to whole shares (buys and sells: flooring never overspends and
       never sells more than is held), otherwise floored to
       :data:`FRACTIONAL_STEP` (selling out sells every share held). A sell
       never exceeds the shares held. Orders worth less than
       ``min_trade_value`` are dropped: they cost more than the drift they
       fix. Flooring means each symbol sold ends less than one share's value
       above its target, never below it.

``RebalancePlan.after`` is the allocation if every order filled at its
``price``; prices are the positions' own, so the total value is unchanged.
A portfolio worth nothing or less (a debit balance at least as large as its
holdings) gets no orders: weights of it mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from types import MappingProxyType
from typing import Any, Final, Literal

from wealthalloc.trading.proposed import ProposedOrder

__all__ = [
    "CASH",
    "FRACTIONAL_STEP",
    "AllocationReport",
    "InvalidTarget",
    "Position",
    "ProposedOrder",
    "RebalancePlan",
    "TargetAllocation",
    "Unfillable",
    "WeightRow",
    "allocation",
    "rebalance",
]

CASH: Final = "cash"
"""The asset-class key of cash in targets and in ``AllocationReport.by_asset_class``."""

FRACTIONAL_STEP: Final = Decimal("0.000001")
"""The smallest quantity traded when ``whole_shares`` is off (a millionth of a share)."""

_TOLERANCE: Final = Decimal("1e-9")  # how far weight totals may miss their bounds (rounded decimals)

_PARTS: Final = ("asset_class", "sector", "symbol")
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_PRECISION: Final = 60  # digits for trade arithmetic: products of prices and quantities stay exact

Part = Literal["asset_class", "sector", "symbol"]


class InvalidTarget(ValueError):
    """A target allocation that cannot be used; the message names the part, the key and the reason."""


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Position:
    """A holding (or, with ``shares == 0``, a candidate to buy) at its current price.

    Attributes
    ----------
    symbol : str
        The ticker; one position per symbol (aggregate tax lots first).
    shares : Decimal
        Shares held, ``>= 0`` (short positions are not supported).
    price : Decimal
        Price per share, ``>= 0``; a position priced 0 is never traded.
    asset_class : str
        ``equity``, ``etf``, ... as in the reference table; never ``cash``
        (cash is passed on its own).
    sector : str
        GICS sector or fund category, as in the reference table.
    """

    symbol: str
    shares: Decimal
    price: Decimal
    asset_class: str
    sector: str

    def __post_init__(self) -> None:
        if not self.symbol or not self.symbol.strip():
            raise ValueError("a position needs a symbol")
        shares = _amount("shares", self.shares, f"position {self.symbol}")
        price = _amount("price", self.price, f"position {self.symbol}")
        if shares < 0:
            raise ValueError(f"position {self.symbol} has {shares} shares: short positions are not supported")
        if price < 0:
            raise ValueError(f"position {self.symbol} has a negative price {price}")
        if self.asset_class == CASH:
            raise ValueError(f"position {self.symbol} has asset class {CASH!r}: pass cash as the cash amount")
        object.__setattr__(self, "shares", shares)
        object.__setattr__(self, "price", price)

    @property
    def market_value(self) -> Decimal:
        """``shares * price``."""
        return self.shares * self.price


@dataclass(frozen=True)
class TargetAllocation:
    """A target allocation, validated; see the module docstring for what the parts mean.

    Keys are normalised: asset classes to lower case, symbols to upper case,
    sectors stripped of surrounding spaces. The mappings are read-only.

    Raises
    ------
    InvalidTarget
        On construction (directly or through :meth:`parse`) when a weight is
        not a number in [0, 1], a key is empty or repeated, a sector is named
        ``cash``, a non-empty ``asset_class`` does not add to 1, or the
        ``sector`` or ``symbol`` weights add to more than ``1 - cash``.
    """

    asset_class: Mapping[str, Decimal] = field(default_factory=dict)
    sector: Mapping[str, Decimal] = field(default_factory=dict)
    symbol: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        asset_class = _weights("asset_class", self.asset_class, str.lower)
        sector = _weights("sector", self.sector, _same)
        symbol = _weights("symbol", self.symbol, str.upper)
        for key in sector:
            if key.lower() == CASH:
                raise InvalidTarget(f"sector {key!r}: cash has no sector, give its weight in asset_class")
        if asset_class:
            total = sum(asset_class.values(), _ZERO)
            if abs(total - _ONE) > _TOLERANCE:
                raise InvalidTarget(f"asset_class weights add to {total}; they must add to exactly 1")
        room = _ONE - asset_class.get(CASH, _ZERO)
        for name, part in (("sector", sector), ("symbol", symbol)):
            total = sum(part.values(), _ZERO)
            if total > room + _TOLERANCE:
                raise InvalidTarget(
                    f"{name} weights add to {total}, more than the {room} left after the cash weight"
                )
        object.__setattr__(self, "asset_class", MappingProxyType(asset_class))
        object.__setattr__(self, "sector", MappingProxyType(sector))
        object.__setattr__(self, "symbol", MappingProxyType(symbol))

    def __hash__(self) -> int:
        return hash(tuple(frozenset(part.items()) for part in (self.asset_class, self.sector, self.symbol)))

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TargetAllocation:
        """Read a target stored as JSON: weights as strings (preferred) or numbers.

        Parameters
        ----------
        raw : mapping
            At most the keys ``asset_class``, ``sector`` and ``symbol``, each
            a mapping of key to weight (or ``None``/absent for an empty part).
            Numbers are read through their decimal text, so ``0.1`` is exactly
            ``Decimal("0.1")``.

        Raises
        ------
        InvalidTarget
            When ``raw`` is not such a mapping or a part is invalid (see the class).
        """
        if not isinstance(raw, Mapping):
            raise InvalidTarget(f"a target must be a JSON object, not {type(raw).__name__}")
        unknown = sorted(str(key) for key in raw if key not in _PARTS)
        if unknown:
            raise InvalidTarget(
                f"unknown target part(s) {', '.join(unknown)}; expected only {', '.join(_PARTS)}"
            )
        return cls(
            asset_class=_weights("asset_class", raw.get("asset_class"), str.lower),
            sector=_weights("sector", raw.get("sector"), _same),
            symbol=_weights("symbol", raw.get("symbol"), str.upper),
        )

    def as_json(self) -> dict[str, dict[str, str]]:
        """The three parts with weights as plain decimal strings; :meth:`parse` reads it back unchanged."""
        return {
            "asset_class": {key: _text(weight) for key, weight in self.asset_class.items()},
            "sector": {key: _text(weight) for key, weight in self.sector.items()},
            "symbol": {key: _text(weight) for key, weight in self.symbol.items()},
        }


# -------------------------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class WeightRow:
    """One line of an allocation: a key's value, its weight of the whole portfolio and its drift.

    ``target_weight`` and ``drift`` are ``None`` for a key without a target;
    ``drift`` is ``current_weight - target_weight`` (positive: overweight).
    """

    key: str
    value: Decimal
    current_weight: Decimal
    target_weight: Decimal | None
    drift: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": _text(self.value),
            "current_weight": _weight_text(self.current_weight),
            "target_weight": None if self.target_weight is None else _weight_text(self.target_weight),
            "drift": None if self.drift is None else _weight_text(self.drift),
        }


@dataclass(frozen=True)
class AllocationReport:
    """A portfolio against its target, by asset class (with cash), sector and symbol.

    Attributes
    ----------
    total_value : Decimal
        Market value of the positions plus cash.
    by_asset_class : list of WeightRow
        Every class held or targeted, and ``cash``; current weights add to 1.
    by_sector : list of WeightRow
        Every sector held or targeted; cash is not a sector, so these add to
        ``1 - cash weight``.
    by_symbol : list of WeightRow
        Every position given and every pinned symbol; targets are the pinned
        ones only.
    max_drift : Decimal
        The largest ``|drift|`` over rows with a target (0 when none has).
    """

    total_value: Decimal
    by_asset_class: list[WeightRow]
    by_sector: list[WeightRow]
    by_symbol: list[WeightRow]
    max_drift: Decimal

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts and weights as decimal strings."""
        return {
            "total_value": _text(self.total_value),
            "by_asset_class": [row.as_dict() for row in self.by_asset_class],
            "by_sector": [row.as_dict() for row in self.by_sector],
            "by_symbol": [row.as_dict() for row in self.by_symbol],
            "max_drift": _weight_text(self.max_drift),
        }


def allocation(positions: Sequence[Position], cash: Decimal, target: TargetAllocation) -> AllocationReport:
    """Where the portfolio stands against ``target``.

    Parameters
    ----------
    positions : sequence of Position
        The holdings, one per symbol.
    cash : Decimal
        Cash in the account (may be negative: a debit balance).
    target : TargetAllocation
        The target; a class it does not name has target 0 when its
        ``asset_class`` is non-empty, no target otherwise.

    Returns
    -------
    AllocationReport
        Weights are fractions of ``total_value``; all are 0 when it is not positive.

    Raises
    ------
    ValueError
        When a symbol appears twice in ``positions``.
    TypeError
        When ``cash`` is not a Decimal (or int).
    """
    cash = _amount("cash", cash, "allocation")
    book = _book(positions)
    total = cash + sum((p.market_value for p in book.values()), _ZERO)

    class_values: dict[str, Decimal] = {}
    sector_values: dict[str, Decimal] = {}
    symbol_values: dict[str, Decimal] = {}
    for p in book.values():
        class_values[p.asset_class] = class_values.get(p.asset_class, _ZERO) + p.market_value
        sector_values[p.sector] = sector_values.get(p.sector, _ZERO) + p.market_value
        symbol_values[p.symbol] = p.market_value
    class_values[CASH] = cash

    class_targets: dict[str, Decimal | None] = {}
    if target.asset_class:
        for key in (*class_values, *target.asset_class):
            class_targets[key] = target.asset_class.get(key, _ZERO)
    else:
        class_targets = dict.fromkeys(class_values)
    sector_targets: dict[str, Decimal | None] = dict.fromkeys(sector_values)
    sector_targets.update(target.sector)
    symbol_targets: dict[str, Decimal | None] = dict.fromkeys(symbol_values)
    symbol_targets.update(target.symbol)

    by_asset_class = _rows(class_values, class_targets, total)
    by_sector = _rows(sector_values, sector_targets, total)
    by_symbol = _rows(symbol_values, symbol_targets, total)
    drifts = [abs(row.drift) for row in (*by_asset_class, *by_sector, *by_symbol) if row.drift is not None]
    return AllocationReport(
        total_value=total,
        by_asset_class=by_asset_class,
        by_sector=by_sector,
        by_symbol=by_symbol,
        max_drift=max(drifts, default=_ZERO),
    )


# ---------------------------------------------------------------------------------------- rebalancing


@dataclass(frozen=True)
class Unfillable:
    """A target (or the part of one) the plan cannot meet, and why."""

    part: Part
    key: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"part": self.part, "key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class RebalancePlan:
    """Orders that bring the rows outside their bands back to target.

    Attributes
    ----------
    orders : list of ProposedOrder
        Sells first, then buys; each group sorted by symbol. Empty when every
        targeted row is within its band.
    before, after : AllocationReport
        The allocation now, and if every order filled at its ``price``.
    cash_after : Decimal
        Cash once every order filled.
    unfillable : list of Unfillable
        Targets that cannot be met: no holding and no candidate, no price, or
        a broader target overruled by more specific ones.
    """

    orders: list[ProposedOrder]
    before: AllocationReport
    after: AllocationReport
    cash_after: Decimal
    unfillable: list[Unfillable] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts, quantities and weights as decimal strings."""
        return {
            "orders": [order.as_dict() for order in self.orders],
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "cash_after": _text(self.cash_after),
            "unfillable": [item.as_dict() for item in self.unfillable],
        }


def rebalance(
    positions: Sequence[Position],
    cash: Decimal,
    target: TargetAllocation,
    *,
    drift_band: Decimal = Decimal("0.05"),
    min_trade_value: Decimal = Decimal("100"),
    whole_shares: bool = True,
    candidates: Mapping[str, Sequence[Position]] | None = None,
) -> RebalancePlan:
    """Propose the orders that bring ``positions`` and ``cash`` back to ``target``.

    The rules, and why, are in the module docstring.

    Parameters
    ----------
    positions : sequence of Position
        The holdings, one per symbol.
    cash : Decimal
        Cash in the account.
    target : TargetAllocation
        The target allocation.
    drift_band : Decimal, default 0.05
        How far (absolute weight) a row may drift from target before it is traded.
    min_trade_value : Decimal, default 100
        Orders worth less are dropped.
    whole_shares : bool, default True
        Floor quantities to whole shares; otherwise to :data:`FRACTIONAL_STEP`.
    candidates : mapping of sector to sequence of Position, optional
        Securities to buy for a targeted sector (or asset class) with no
        holding, first choice first; each with ``shares == 0``, a positive
        price and the sector it is listed under.

    Raises
    ------
    ValueError
        On a repeated symbol, a negative band or minimum, or a malformed candidate.
    TypeError
        When an amount is a float.
    """
    cash = _amount("cash", cash, "rebalance")
    band = _amount("drift_band", drift_band, "rebalance")
    minimum = _amount("min_trade_value", min_trade_value, "rebalance")
    if band < 0 or minimum < 0:
        raise ValueError("drift_band and min_trade_value must not be negative")
    book = _book(positions)
    offered = _candidates(candidates)

    before = allocation(positions, cash, target)
    derived = _derive_targets(book, offered, target)
    unfillable = list(derived.unfillable)
    traded_rows = _rows_to_trade(before, band, derived, book, target)
    if not traded_rows or before.total_value <= 0:  # nothing to fix, or nothing weights can be taken of
        return RebalancePlan(orders=[], before=before, after=before, cash_after=cash, unfillable=unfillable)

    total = before.total_value
    step = _ONE if whole_shares else FRACTIONAL_STEP
    sells: list[ProposedOrder] = []
    wanted: list[tuple[Position, Decimal, str]] = []  # (security, value to buy, reason)
    with localcontext() as ctx:
        ctx.prec = _PRECISION  # sums and products of amounts stay exact; divisions round down (_div_down)
        for symbol in sorted(derived.weights):
            reason = _reason_for(symbol, derived, target, traded_rows)
            if reason is None:
                continue
            security = derived.securities[symbol]
            if security.price <= 0:
                unfillable.append(Unfillable("symbol", symbol, "no price: cannot be traded"))
                continue
            held = book[symbol].shares if symbol in book else _ZERO
            current = held * security.price
            goal = derived.weights[symbol] * total
            if current > goal:
                if goal <= 0:  # selling out: every share held, or every whole one
                    quantity = _div_down(held, _ONE, step) if whole_shares else held
                else:
                    quantity = min(_div_down(current - goal, security.price, step), held)
                value = quantity * security.price
                if quantity > 0 and value >= minimum:
                    sells.append(ProposedOrder(symbol, "sell", quantity, security.price, reason))
            elif goal > current:
                wanted.append((security, goal - current, reason))

        with localcontext() as up:
            up.rounding = ROUND_CEILING  # the cash kept back is rounded up, never down
            cash_floor = max(_ZERO, target.asset_class.get(CASH, _ZERO) * total)
        cash_after_sells = cash + sum((order.value for order in sells), _ZERO)
        buys = _buys(wanted, cash_after_sells - cash_floor, step, minimum)
        cash_after = cash_after_sells - sum((order.value for order in buys), _ZERO)

    orders = sells + buys
    after = allocation(_positions_after(book, derived.securities, orders), cash_after, target)
    return RebalancePlan(
        orders=orders, before=before, after=after, cash_after=cash_after, unfillable=unfillable
    )


# ------------------------------------------------------------------------------------------- helpers


@dataclass
class _Derived:
    """Per-symbol target weights worked out from the most specific targets."""

    weights: dict[str, Decimal] = field(default_factory=dict)
    securities: dict[str, Position] = field(default_factory=dict)
    unfillable: list[Unfillable] = field(default_factory=list)

    def assign(self, security: Position, weight: Decimal) -> None:
        self.weights[security.symbol] = weight
        self.securities[security.symbol] = security

    def assigned_in(self, *, sector: str | None = None, asset_class: str | None = None) -> Decimal:
        """The weight already given to symbols of ``sector`` (or of ``asset_class``)."""
        return sum(
            (
                weight
                for symbol, weight in self.weights.items()
                if self.securities[symbol].sector == sector
                or self.securities[symbol].asset_class == asset_class
            ),
            _ZERO,
        )


def _derive_targets(
    book: Mapping[str, Position], offered: Mapping[str, list[Position]], target: TargetAllocation
) -> _Derived:
    derived = _Derived()
    holdings = [p for p in book.values() if p.market_value > 0]
    held = {p.symbol for p in holdings}

    for symbol, weight in target.symbol.items():
        security = book.get(symbol) or next(
            (c for group in offered.values() for c in group if c.symbol == symbol), None
        )
        if security is None:
            derived.unfillable.append(
                Unfillable("symbol", symbol, "not held and not among the candidates: no price to buy at")
            )
        else:
            derived.assign(security, weight)
    pinned = set(derived.weights)

    for sector, weight in target.sector.items():
        taken = derived.assigned_in(sector=sector)
        rest = _rest(derived, "sector", sector, weight, taken)
        group = [p for p in holdings if p.sector == sector and p.symbol not in pinned]
        if group:
            _split(derived, group, rest)
        elif rest > _TOLERANCE:
            pick = next(
                (
                    c
                    for c in offered.get(sector, ())
                    if c.symbol not in derived.weights and c.symbol not in held
                ),
                None,
            )
            if pick is None:
                derived.unfillable.append(
                    Unfillable("sector", sector, "nothing held in the sector and no candidate to buy")
                )
            else:
                derived.assign(pick, rest)

    if target.asset_class:
        # Classes targeted, held, or of a security a symbol or sector target buys (an ETF sector in a
        # target that gives ETFs no weight is a conflict to report, not to ignore).
        classes = [key for key in target.asset_class if key != CASH]
        classes += [p.asset_class for p in (*holdings, *derived.securities.values())]
        for asset_class in dict.fromkeys(classes):
            weight = target.asset_class.get(asset_class, _ZERO)
            taken = derived.assigned_in(asset_class=asset_class)
            rest = _rest(derived, "asset_class", asset_class, weight, taken)
            group = [p for p in holdings if p.asset_class == asset_class and p.symbol not in derived.weights]
            if group:
                _split(derived, group, rest)
            elif rest > _TOLERANCE:
                pick = next(
                    (
                        c
                        for candidates in offered.values()
                        for c in candidates
                        if c.asset_class == asset_class
                        and c.sector not in target.sector
                        and c.symbol not in derived.weights
                        and c.symbol not in held
                    ),
                    None,
                )
                if pick is None:
                    derived.unfillable.append(
                        Unfillable(
                            "asset_class",
                            asset_class,
                            f"{_text(rest)} of the target has no holding and no candidate outside targeted"
                            " sectors: it stays in cash",
                        )
                    )
                else:
                    derived.assign(pick, rest)
    return derived


def _rest(derived: _Derived, part: Part, key: str, weight: Decimal, taken: Decimal) -> Decimal:
    """What is left of a group's target once more specific targets inside it are taken off."""
    rest = weight - taken
    if rest < -_TOLERANCE:
        derived.unfillable.append(
            Unfillable(
                part,
                key,
                f"more specific targets inside it add to {_text(taken)}, over its {_text(weight)}:"
                " they are kept and the rest of it goes to 0",
            )
        )
    return max(rest, _ZERO)


def _split(derived: _Derived, group: Sequence[Position], weight: Decimal) -> None:
    value = sum((p.market_value for p in group), _ZERO)
    for p in group:
        derived.assign(p, weight * p.market_value / value)


def _rows_to_trade(
    before: AllocationReport,
    band: Decimal,
    derived: _Derived,
    book: Mapping[str, Position],
    target: TargetAllocation,
) -> dict[tuple[str, str], str]:
    """The rows to bring back to target, each with the reason its orders will carry.

    First the rows outside their band. Then, while cash would end outside its
    band once the rows chosen so far are back on target (or already is), the
    rows that would then drift the other way are added: cash is the
    complement of everything else, and trading those rows is the least
    trading that brings it back.
    """
    parts: tuple[tuple[Part, list[WeightRow]], ...] = (
        ("asset_class", before.by_asset_class),
        ("sector", before.by_sector),
        ("symbol", before.by_symbol),
    )
    out: dict[tuple[str, str], str] = {}
    for part, rows in parts:
        for row in rows:
            if row.drift is not None and abs(row.drift) > band:
                out[(part, row.key)] = _describe(part, row, band)
    cash_target = target.asset_class.get(CASH, _ZERO) if target.asset_class else None
    total = before.total_value
    if not out or cash_target is None or total <= 0:
        return out
    for _ in range(len(_PARTS) + 1):  # the set only grows; a few rounds reach its fixed point
        projected = _projected_values(book, derived, target, out, total)
        cash_drift = projected[("asset_class", CASH)] / total - cash_target
        if abs(cash_drift) <= band:
            break
        surplus = cash_drift > 0
        why = "to invest surplus cash" if surplus else "to raise cash to its target"
        added = False
        for part, rows in parts:
            for row in rows:
                key = (part, row.key)
                if row.target_weight is None or key in out or key == ("asset_class", CASH):
                    continue
                drift = projected.get(key, _ZERO) / total - row.target_weight
                if (drift < 0) if surplus else (drift > 0):
                    out[key] = f"{_describe(part, row, band)}, traded {why}"
                    added = True
        if not added:
            break
    return out


def _symbols(book: Mapping[str, Position], derived: _Derived) -> list[str]:
    return list(dict.fromkeys((*book, *derived.weights)))


def _projected_values(
    book: Mapping[str, Position],
    derived: _Derived,
    target: TargetAllocation,
    traded_rows: Mapping[tuple[str, str], str],
    total: Decimal,
) -> dict[tuple[str, str], Decimal]:
    """Row values if every symbol under ``traded_rows`` were exactly at its target (cash under ``CASH``)."""
    values: dict[tuple[str, str], Decimal] = {}
    cash = total
    for symbol in _symbols(book, derived):
        security = book.get(symbol) or derived.securities[symbol]
        value = security.market_value
        if symbol in derived.weights and _reason_for(symbol, derived, target, traded_rows) is not None:
            value = derived.weights[symbol] * total
        for key in (("asset_class", security.asset_class), ("sector", security.sector), ("symbol", symbol)):
            values[key] = values.get(key, _ZERO) + value
        cash -= value
    values[("asset_class", CASH)] = cash
    return values


def _reason_for(
    symbol: str, derived: _Derived, target: TargetAllocation, traded_rows: Mapping[tuple[str, str], str]
) -> str | None:
    """The reason of the most specific row above ``symbol`` that is traded, or None to leave it alone."""
    security = derived.securities[symbol]
    above: list[tuple[str, str]] = []
    if symbol in target.symbol:
        above.append(("symbol", symbol))
    if security.sector in target.sector:
        above.append(("sector", security.sector))
    if target.asset_class:
        above.append(("asset_class", security.asset_class))
    return next((traded_rows[row] for row in above if row in traded_rows), None)


def _buys(
    wanted: Sequence[tuple[Position, Decimal, str]], available: Decimal, step: Decimal, minimum: Decimal
) -> list[ProposedOrder]:
    """Buy orders spending at most ``available``, scaled down pro rata when it is short."""
    if available <= 0 or not wanted:
        return []
    want = sum((value for _, value, _ in wanted), _ZERO)
    short = want > available
    note = f"; scaled to {available / want:.1%} by the cash above the cash target" if short else ""
    orders: list[ProposedOrder] = []
    for security, value, reason in sorted(wanted, key=lambda item: item[0].symbol):
        budget = _div_down(value * available, want, _ZERO) if short else value  # multiply first: stays exact
        quantity = _div_down(budget, security.price, step)
        cost = quantity * security.price
        if quantity > 0 and cost >= minimum:
            orders.append(ProposedOrder(security.symbol, "buy", quantity, security.price, reason + note))
    # Flooring keeps the total within ``available``; this only guards against rounding surprises.
    while orders and sum((o.value for o in orders), _ZERO) > available:
        orders.remove(max(orders, key=lambda o: o.value))
    return orders


def _positions_after(
    book: Mapping[str, Position], securities: Mapping[str, Position], orders: Iterable[ProposedOrder]
) -> list[Position]:
    after = dict(book)
    for order in orders:
        current = after.get(order.symbol) or replace(securities[order.symbol], shares=_ZERO)
        change = order.quantity if order.side == "buy" else -order.quantity
        after[order.symbol] = replace(current, shares=current.shares + change)
    return list(after.values())


def _div_down(amount: Decimal, divisor: Decimal, step: Decimal) -> Decimal:
    """``amount / divisor`` rounded down, to a multiple of ``step`` (not rounded further when ``step`` is 0).

    The division itself rounds down too, so a quotient a hair under a whole
    number is never rounded up onto it: no order buys or sells a step too many.
    """
    if amount <= 0:
        return _ZERO
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        ctx.rounding = ROUND_FLOOR
        quotient = amount / divisor
        return quotient if step == 0 else quotient.quantize(step)


def _book(positions: Iterable[Position]) -> dict[str, Position]:
    book: dict[str, Position] = {}
    for p in positions:
        if p.symbol in book:
            raise ValueError(f"{p.symbol} appears twice among the positions: aggregate its lots first")
        book[p.symbol] = p
    return book


def _candidates(candidates: Mapping[str, Sequence[Position]] | None) -> dict[str, list[Position]]:
    checked: dict[str, list[Position]] = {}
    for sector, group in (candidates or {}).items():
        for c in group:
            if c.shares != 0:
                raise ValueError(f"candidate {c.symbol} has {c.shares} shares: candidates are not held")
            if c.price <= 0:
                raise ValueError(f"candidate {c.symbol} needs a positive price")
            if c.sector != sector:
                raise ValueError(
                    f"candidate {c.symbol} is in sector {c.sector!r} but listed under {sector!r}"
                )
        checked[sector] = list(group)
    return checked


def _rows(
    values: Mapping[str, Decimal], targets: Mapping[str, Decimal | None], total: Decimal
) -> list[WeightRow]:
    rows = []
    for key in dict.fromkeys((*values, *targets)):
        value = values.get(key, _ZERO)
        current = value / total if total > 0 else _ZERO
        goal = targets.get(key)
        rows.append(WeightRow(key, value, current, goal, None if goal is None else current - goal))
    rows.sort(key=lambda row: (-row.value, row.key))
    return rows


def _describe(part: Part, row: WeightRow, band: Decimal) -> str:
    assert row.target_weight is not None
    name = part.replace("_", " ")
    return (
        f"{name} {row.key} at {row.current_weight:.2%} vs target {row.target_weight:.2%} (band ±{band:.2%})"
    )


def _weights(part: str, raw: object, normalise: Callable[[str], str]) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidTarget(f"{part} must be an object of key to weight, not {type(raw).__name__}")
    weights: dict[str, Decimal] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidTarget(f"{part} has an empty or non-text key {key!r}")
        name = normalise(key.strip())
        if name in weights:
            raise InvalidTarget(f"{part} {name!r} is given twice")
        weights[name] = _weight(part, name, value)
    return weights


def _weight(part: str, key: str, value: object) -> Decimal:
    where = f"{part} {key!r}"
    if isinstance(value, bool):
        raise InvalidTarget(f"{where}: weight must be a number, not {value!r}")
    if isinstance(value, Decimal):
        weight = value
    elif isinstance(value, int | float):
        weight = Decimal(repr(value))  # through the text: 0.1 is Decimal("0.1"), not the binary fraction
    elif isinstance(value, str):
        try:
            weight = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidTarget(f"{where}: weight {value!r} is not a number") from None
    else:
        raise InvalidTarget(
            f"{where}: weight must be a number or a numeric string, not {type(value).__name__}"
        )
    if not weight.is_finite():
        raise InvalidTarget(f"{where}: weight {value!r} is not a finite number")
    if weight < 0 or weight > 1:
        raise InvalidTarget(f"{where}: weight {_text(weight)} is outside [0, 1]")
    return weight


def _amount(name: str, value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{where}: {name} must be a Decimal, not {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{where}: {name} must be finite, not {amount}")
    return amount


def _text(amount: Decimal) -> str:
    return format(amount, "f")


def _weight_text(weight: Decimal) -> str:
    """Weights leave with six decimals (as everywhere in the API); the arithmetic keeps full precision."""
    return format(weight.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN), "f")


def _same(key: str) -> str:
    return key
