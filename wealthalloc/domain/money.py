"""Precision of money, prices and quantities, and the rounding the platform applies to each.

One precision per kind of number, end to end (database column, domain
rounding, API input and output):

- money (cash balances, cash movements, reservations, commissions, basis,
  proceeds): four decimal places, ``NUMERIC(20,4)``, :data:`MONEY`;
- share quantities: six decimal places, ``NUMERIC(20,6)``, :data:`SHARES`;
- prices a person enters: four places (stored as ``NUMERIC(20,6)``).

Cash a person moves in or out is entered with the same four places the
balance is kept in (:data:`CASH_PLACES`), because fractional fills and
per-share commissions leave sub-cent amounts in a balance: a withdrawal
limited to whole cents could never empty it, and a portfolio that cannot be
emptied cannot be closed. Likewise a sell may name any quantity of up to six
places, so a fractional remainder can always be sold whole.

Rounding is banker's rounding (half-even) everywhere so that rounding errors do
not drift in one direction over many operations.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
MONEY = Decimal("0.0001")
PRICE = Decimal("0.0001")
SHARES = Decimal("0.000001")
WEIGHT = Decimal("0.000001")

MONEY_PLACES = 4
CASH_PLACES = MONEY_PLACES
SHARE_PLACES = 6
MAX_AMOUNT = Decimal("1000000000000")  # 10^12: beyond any real account, well inside NUMERIC(20,4)


class InvalidAmount(ValueError):
    pass


def money(value: Decimal) -> Decimal:
    return value.quantize(MONEY, rounding=ROUND_HALF_EVEN)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def price(value: Decimal) -> Decimal:
    return value.quantize(PRICE, rounding=ROUND_HALF_EVEN)


def weight(value: Decimal) -> Decimal:
    return value.quantize(WEIGHT, rounding=ROUND_HALF_EVEN)


def parse_decimal(text: str, *, places: int, positive: bool = False, allow_negative: bool = False) -> Decimal:
    """A decimal from its string form, refusing floats' artefacts, exponents, NaN and excess places."""
    if not isinstance(text, str):
        raise InvalidAmount('must be a decimal string such as "1250.00", not a number')
    stripped = text.strip()
    if not stripped or any(ch not in "0123456789.-+" for ch in stripped):
        raise InvalidAmount(f"{text!r} is not a decimal number")
    try:
        value = Decimal(stripped)
    except InvalidOperation as exc:
        raise InvalidAmount(f"{text!r} is not a decimal number") from exc
    if not value.is_finite():
        raise InvalidAmount(f"{text!r} is not a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise InvalidAmount(f"{text!r} has more than {places} decimal places")
    if abs(value) > MAX_AMOUNT:
        raise InvalidAmount(f"{text!r} is too large")
    if value == 0:
        raise InvalidAmount("must not be zero")
    if value < 0 and not allow_negative:
        raise InvalidAmount("must be positive")
    if positive and value <= 0:
        raise InvalidAmount("must be positive")
    return value
