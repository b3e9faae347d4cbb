"""Which events a person is told about, and in what words.

:func:`draft_for` turns one outbox event (its type, payload, id and time) into
a :class:`Draft` of a notification, or None when the event is not news to a
person (an order they placed themselves, a recommendation they dismissed).
Titles are short enough for a bell menu and an e-mail subject; bodies say the
figures as people read them (``$1,234.50``, ``10 shares``), and links are the
web app's own routes.

Each draft names its source: normally the event's id, so one event makes one
notification however often a consumer reads it. A recommendation is announced
again each time it is regenerated with new figures; its source is the
recommendation itself, so the person hears of it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from wealthalloc.notifications.preferences import (
    CASH_MOVEMENT,
    HARVEST_OPPORTUNITY,
    ORDER_REJECTED,
    PRICE_ALERT,
    RECOMMENDATION,
    SECURITY,
    TRADE_FILL,
)

MAX_TITLE = 200
MAX_BODY = 2000
MAX_QUOTED = 200  # a person's own free text (a note, a key's name) quoted back to them
SOURCE_NAMESPACE = uuid.UUID("5b0f3c1e-7d7a-4c55-9d3e-6a2f4e1b9c21")

Payload = Mapping[str, Any]


@dataclass(frozen=True)
class Draft:
    """A notification before it is stored: what it says and which event (or thing) it came from."""

    kind: str
    title: str
    body: str
    link: str | None
    source_id: uuid.UUID
    data: Mapping[str, Any] = field(default_factory=dict)


# Numbers as people read them -------------------------------------------------------------------------


def money(amount: Decimal | str | int, *, currency: str = "USD") -> str:
    """``$1,234.50``; a negative amount ``-$1,234.50``; cents rounded half-even."""
    value = _decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    symbol = "$" if currency == "USD" else f"{currency} "
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.2f}"


def price(amount: Decimal | str | int, *, currency: str = "USD") -> str:
    """A share price: two decimals, or up to four for a price under a dollar (``$0.1234``)."""
    value = _decimal(amount)
    if abs(value) >= 1 or value == value.quantize(Decimal("0.01")):
        return money(value, currency=currency)
    value = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{'-' if value < 0 else ''}{symbol}{abs(value)}"


def shares(quantity: Decimal | str | int) -> str:
    """``10``, ``2.5``, ``1,000``: no trailing zeros, no exponent."""
    value = _decimal(quantity).normalize()
    whole, _, fraction = f"{abs(value):f}".partition(".")
    text = f"{int(whole):,}" + (f".{fraction}" if fraction else "")
    return f"-{text}" if value < 0 else text


def percent(fraction: Decimal | str | float) -> str:
    """``0.72`` as ``72%``."""
    value = (_decimal(fraction) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_EVEN)
    return f"{value}%"


def _decimal(value: Any) -> Decimal:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def _quoted(text: Any) -> str:
    """A person's own text, on one line and bounded, to quote back to them."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_QUOTED else flat[: MAX_QUOTED - 1] + "…"


def _when(value: Any) -> str:
    """``2026-12-05 09:12 UTC`` from an aware datetime or its ISO text."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _bounded(title: str, body: str) -> tuple[str, str]:
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY - 1] + "…"
    return title, body


def stable_source(what: str, ident: Any) -> uuid.UUID:
    """The source id of something announced by several events (one notification for all of them)."""
    return uuid.uuid5(SOURCE_NAMESPACE, f"{what}:{ident}")


# One wording per event type -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    id: uuid.UUID
    occurred_at: datetime
    payload: Payload


def _orders_link(p: Payload) -> str | None:
    return f"#/portfolios/{p['portfolio_id']}/orders" if p.get("portfolio_id") else None


def _trade_fill(e: _Event) -> Draft:
    p = e.payload
    verb = "Bought" if p["side"] == "buy" else "Sold"
    quantity, unit = _decimal(p["quantity"]), _decimal(p["price"])
    title = f"{verb} {shares(quantity)} {p['symbol']} at {price(unit)}"
    body = (
        f"{shares(quantity)} {_noun(quantity)} of {p['symbol']} {verb.lower()} at {price(unit)}"
        f" for {money(quantity * unit)}"
    )
    commission = _decimal(p.get("commission") or 0)
    body += f", commission {money(commission)}." if commission else "."
    if p.get("order_status") == "partially_filled":
        body += " Part of the order is still open."
    data = {key: p.get(key) for key in ("order_id", "portfolio_id", "symbol", "side", "quantity", "price")}
    return Draft(TRADE_FILL, *_bounded(title, body), _orders_link(p), e.id, data)


def _noun(quantity: Decimal) -> str:
    return "share" if quantity == 1 else "shares"


def _order_rejected(e: _Event) -> Draft:
    p = e.payload
    order = (
        f"{p['side']} {shares(p['quantity'])} {p['symbol']}" if p.get("side") and p.get("quantity") else ""
    )
    title = f"Order rejected: {order}" if order else f"Order rejected: {p['symbol']}"
    body = f"Your order to {order}" if order else f"Your order for {p['symbol']}"
    body += f" was rejected: {_quoted(p['reason']).rstrip('.')}." if p.get("reason") else " was rejected."
    filled = _decimal(p.get("filled_quantity") or 0)
    if filled > 0:
        body += f" {shares(filled)} {_noun(filled)} had filled before; those stand."
    data = {key: p.get(key) for key in ("order_id", "portfolio_id", "symbol", "side", "quantity", "reason")}
    return Draft(ORDER_REJECTED, *_bounded(title, body), _orders_link(p), e.id, data)


def _price_alert(e: _Event) -> Draft:
    p = e.payload
    moved = "rose" if p["direction"] == "above" else "fell"
    title = f"{p['symbol']} {moved} to {price(p['price'])}"
    body = (
        f"Your alert for {p['symbol']} {p['direction']} {price(p['level'])} fired: the price was"
        f" {price(p['price'])} as of {str(p['as_of'])[:10]}."
    )
    if p.get("note"):
        body += f" Your note: {_quoted(p['note'])}"
    data = {key: p.get(key) for key in ("alert_id", "symbol", "direction", "level", "price", "as_of")}
    return Draft(PRICE_ALERT, *_bounded(title, body), "#/alerts", e.id, data)


def _harvest(e: _Event) -> Draft:
    p = e.payload
    title = f"Tax-loss harvest available: {p['symbol']}"
    body = (
        f"Selling {p['symbol']} would realise a {money(p['loss_amount'])} loss and could save about"
        f" {money(p['estimated_tax_savings'])} in tax."
    )
    if p.get("replacement_symbol"):
        body += f" {p['replacement_symbol']} could take its place in the portfolio meanwhile."
    data = {
        key: p.get(key)
        for key in ("harvest_id", "portfolio_id", "symbol", "loss_amount", "estimated_tax_savings")
    }
    return Draft(HARVEST_OPPORTUNITY, *_bounded(title, body), "#/harvest", e.id, data)


_RECOMMENDATION_TITLES: Mapping[str, str] = {
    "buy": "Recommendation: buy {symbol}",
    "sell": "Recommendation: sell {symbol}",
    "rebalance": "Recommendation: rebalance your portfolio",
    "reduce_risk": "Recommendation: reduce risk in {symbol}",
    "anomaly": "Unusual price moves in {symbol}",
}


def _recommendation(e: _Event) -> Draft | None:
    p = e.payload
    if p.get("status") not in (None, "open"):
        return None  # accepted, dismissed or expired: the person knows, or it is no longer news
    symbol = p.get("symbol") or "a holding"
    title = _RECOMMENDATION_TITLES.get(str(p["kind"]), "New recommendation").format(symbol=symbol)
    rationale = _quoted(p["rationale"]) if p.get("rationale") else "A new recommendation is ready."
    body = rationale.rstrip(".") + f". Confidence {percent(p['confidence'])}."
    link = f"#/portfolios/{p['portfolio_id']}/insights" if p.get("portfolio_id") else "#/dashboard"
    data = {key: p.get(key) for key in ("recommendation_id", "portfolio_id", "kind", "symbol", "confidence")}
    source = stable_source("recommendation", p["recommendation_id"])
    return Draft(RECOMMENDATION, *_bounded(title, body), link, source, data)


def _cash_moved(e: _Event) -> Draft:
    p = e.payload
    amount = _decimal(p["amount"])
    title = f"Deposit of {money(amount)}" if amount >= 0 else f"Withdrawal of {money(-amount)}"
    body = f"{title} recorded. The portfolio's cash balance is now {money(p['balance'])}."
    data = {key: p.get(key) for key in ("portfolio_id", "movement_id", "amount", "balance")}
    return Draft(CASH_MOVEMENT, *_bounded(title, body), f"#/portfolios/{p['portfolio_id']}", e.id, data)


NOT_YOU = "If this was not you, change your password now and turn on two-factor authentication."


def _security(title: str, body: Callable[[_Event], str]) -> Callable[[_Event], Draft]:
    def draft(e: _Event) -> Draft:
        data = {"event": title, "at": e.occurred_at.isoformat()}
        return Draft(SECURITY, *_bounded(title, body(e)), "#/settings", e.id, data)

    return draft


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def describe_device(user_agent: str) -> str:
    """``Firefox on Linux`` from a browser's User-Agent; a program's own (``curl/8.5``) as it is."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return _quoted(user_agent)[:80]


def _sign_in_body(e: _Event) -> str:
    p = e.payload
    device = f" ({describe_device(str(p['device']))})" if p.get("device") else ""
    return f"Someone signed in to your account from {p.get('ip') or 'an unknown address'}{device} at" + (
        f" {_when(e.occurred_at)}, a device or address not seen lately. {NOT_YOU}"
    )


def _api_key_body(e: _Event) -> str:
    p = e.payload
    scopes = ", ".join(str(s) for s in p.get("scopes") or []) or "no scopes"
    return (
        f"An API key named “{_quoted(p.get('name') or '')}” ({scopes}) was created at {_when(e.occurred_at)}."
        " If you did not create it, revoke it in Settings and change your password."
    )


_WORDINGS: Mapping[str, Callable[[_Event], Draft | None]] = {
    "trades.executed": _trade_fill,
    "trades.order_rejected": _order_rejected,
    "price_alert.triggered": _price_alert,
    "tax_harvests.identified": _harvest,
    "recommendations.generated": _recommendation,
    "portfolio.cash_moved": _cash_moved,
    "auth.new_sign_in": _security("New sign-in to your account", _sign_in_body),
    "auth.mfa_enabled": _security(
        "Two-factor authentication turned on",
        lambda e: (
            f"Two-factor authentication was turned on at {_when(e.occurred_at)}; your other"
            f" sessions were signed out. {NOT_YOU}"
        ),
    ),
    "auth.mfa_disabled": _security(
        "Two-factor authentication turned off",
        lambda e: (
            f"Two-factor authentication was turned off at {_when(e.occurred_at)}; your other"
            f" sessions were signed out. {NOT_YOU}"
        ),
    ),
    "auth.password_changed": _security(
        "Your password was changed",
        lambda e: (
            f"The password of your account was changed at {_when(e.occurred_at)}; your other"
            " sessions were signed out. If this was not you, reset your password and contact support."
        ),
    ),
    "auth.api_key_created": _security("New API key created", _api_key_body),
    "auth.registration_existing_account": _security(
        "Someone tried to register with your address",
        lambda e: (
            f"Someone tried to create an account with your e-mail address from"
            f" {e.payload.get('ip') or 'an unknown address'} at {_when(e.occurred_at)}. You already have"
            " an account, so nothing was created. If this was you, sign in instead."
        ),
    ),
}

NOTIFYING_EVENT_TYPES = frozenset(_WORDINGS)


def draft_for(
    event_type: str, payload: Payload, *, event_id: uuid.UUID, occurred_at: datetime
) -> Draft | None:
    """The notification an event makes, or None when the event is not news to its person."""
    wording = _WORDINGS.get(event_type)
    if wording is None:
        return None
    return wording(_Event(event_id, occurred_at, payload))
