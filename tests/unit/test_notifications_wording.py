"""What a notification says for each event a person hears of, with figures as people read them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from wealthalloc.notifications import NOTIFYING_EVENT_TYPES, draft_for, money, price, shares
from wealthalloc.notifications.wording import MAX_TITLE, describe_device

AT = datetime(2026, 12, 5, 9, 12, tzinfo=UTC)
PORTFOLIO = uuid.UUID("11111111-2222-3333-4444-555555555555")
ORDER = uuid.uuid4()


def draft(event_type: str, payload: dict[str, object], event_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
    return draft_for(event_type, payload, event_id=event_id or uuid.uuid4(), occurred_at=AT)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0"), "$0.00"),
        (Decimal("-500"), "-$500.00"),
        (Decimal("1000000.005"), "$1,000,000.00"),  # half-even
        (Decimal("0.015"), "$0.02"),
        ("12.3456", "$12.35"),
    ],
)
def test_money_reads_as_dollars_and_cents(amount: object, text: str) -> None:
    assert money(amount) == text  # type: ignore[arg-type]


def test_a_price_under_a_dollar_keeps_up_to_four_places_and_others_two() -> None:
    assert price(Decimal("312.120000")) == "$312.12"
    assert price(Decimal("0.123400")) == "$0.1234"
    assert price(Decimal("0.50")) == "$0.50"


def test_share_counts_have_no_trailing_zeros_or_exponents() -> None:
    assert shares(Decimal("10.000000")) == "10"
    assert shares(Decimal("2.500000")) == "2.5"
    assert shares(Decimal("1E+3")) == "1,000"
    assert shares(Decimal("0.000001")) == "0.000001"


def test_a_fill_says_what_was_bought_at_what_price_and_what_it_cost() -> None:
    made = draft(
        "trades.executed",
        {
            "order_id": str(ORDER),
            "portfolio_id": str(PORTFOLIO),
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "10.000000",
            "price": "150.250000",
            "commission": "1.0000",
            "fill_id": "f-1",
            "order_status": "filled",
        },
    )

    assert made is not None and made.kind == "trade_fill"
    assert made.title == "Bought 10 AAPL at $150.25"
    assert made.body == "10 shares of AAPL bought at $150.25 for $1,502.50, commission $1.00."
    assert made.link == f"#/portfolios/{PORTFOLIO}/orders"
    assert made.data["order_id"] == str(ORDER)


def test_a_partial_sell_fill_says_the_rest_is_still_open() -> None:
    made = draft(
        "trades.executed",
        {
            "order_id": str(ORDER),
            "portfolio_id": str(PORTFOLIO),
            "symbol": "KO",
            "side": "sell",
            "quantity": "1",
            "price": "60",
            "commission": "0",
            "fill_id": "f-2",
            "order_status": "partially_filled",
        },
    )

    assert made is not None
    assert made.title == "Sold 1 KO at $60.00"
    assert made.body == "1 share of KO sold at $60.00 for $60.00. Part of the order is still open."


def test_one_event_is_one_notification_so_its_source_is_the_event() -> None:
    event_id = uuid.uuid4()
    payload = {
        "portfolio_id": str(PORTFOLIO),
        "movement_id": str(uuid.uuid4()),
        "amount": "10",
        "balance": "10",
    }

    assert draft("portfolio.cash_moved", payload, event_id).source_id == event_id  # type: ignore[union-attr]


def test_a_rejected_order_gives_the_reason_and_what_had_filled() -> None:
    made = draft(
        "trades.order_rejected",
        {
            "order_id": str(ORDER),
            "portfolio_id": str(PORTFOLIO),
            "symbol": "MSFT",
            "side": "buy",
            "quantity": "5",
            "filled_quantity": "2",
            "reason": "Not enough buying power.",
        },
    )

    assert made is not None and made.kind == "order_rejected"
    assert made.title == "Order rejected: buy 5 MSFT"
    assert made.body == (
        "Your order to buy 5 MSFT was rejected: Not enough buying power."
        " 2 shares had filled before; those stand."
    )


def test_a_price_alert_says_where_the_price_went_and_quotes_the_note() -> None:
    made = draft(
        "price_alert.triggered",
        {
            "alert_id": str(uuid.uuid4()),
            "symbol": "AAPL",
            "direction": "below",
            "level": "130.00",
            "price": "129.5",
            "as_of": "2022-12-28",
            "note": "buy  more\nhere",
        },
    )

    assert made is not None and made.kind == "price_alert"
    assert made.title == "AAPL fell to $129.50"
    assert made.body == (
        "Your alert for AAPL below $130.00 fired: the price was $129.50 as of 2022-12-28."
        " Your note: buy more here"
    )
    assert made.link == "#/alerts"


def test_a_harvest_opportunity_gives_the_loss_and_the_saving() -> None:
    made = draft(
        "tax_harvests.identified",
        {
            "harvest_id": str(uuid.uuid4()),
            "portfolio_id": str(PORTFOLIO),
            "symbol": "INTC",
            "loss_amount": "1234.5600",
            "term": "short",
            "estimated_tax_savings": "296.2944",
            "replacement_symbol": "AMD",
        },
    )

    assert made is not None and made.kind == "harvest_opportunity"
    assert made.title == "Tax-loss harvest available: INTC"
    assert "a $1,234.56 loss" in made.body and "about $296.29 in tax" in made.body and "AMD" in made.body


def test_a_recommendation_is_one_notification_however_often_it_is_regenerated() -> None:
    rec = str(uuid.uuid4())
    payload = {
        "recommendation_id": rec,
        "portfolio_id": str(PORTFOLIO),
        "kind": "reduce_risk",
        "symbol": "NVDA",
        "confidence": "0.72",
        "status": "open",
        "rationale": "NVDA is 41% of the portfolio.",
    }

    first, again = draft("recommendations.generated", payload), draft("recommendations.generated", payload)

    assert first is not None and again is not None
    assert first.source_id == again.source_id
    assert first.title == "Recommendation: reduce risk in NVDA"
    assert first.body == "NVDA is 41% of the portfolio. Confidence 72%."
    assert first.link == f"#/portfolios/{PORTFOLIO}/insights"


@pytest.mark.parametrize("status", ["accepted", "dismissed", "expired"])
def test_a_recommendation_the_person_acted_on_or_that_lapsed_is_not_news(status: str) -> None:
    payload = {
        "recommendation_id": str(uuid.uuid4()),
        "kind": "buy",
        "symbol": "KO",
        "confidence": "0.6",
        "status": status,
    }

    assert draft("recommendations.generated", payload) is None


def test_cash_movements_say_deposit_or_withdrawal_and_the_balance() -> None:
    base = {"portfolio_id": str(PORTFOLIO), "movement_id": str(uuid.uuid4())}

    deposit = draft("portfolio.cash_moved", {**base, "amount": "10000", "balance": "10000.0000"})
    withdrawal = draft("portfolio.cash_moved", {**base, "amount": "-250.5", "balance": "9749.5"})

    assert deposit is not None and deposit.title == "Deposit of $10,000.00"
    assert withdrawal is not None and withdrawal.title == "Withdrawal of $250.50"
    assert withdrawal.body.endswith("cash balance is now $9,749.50.")


def test_a_new_sign_in_names_the_address_and_device_and_what_to_do() -> None:
    made = draft(
        "auth.new_sign_in",
        {"ip": "203.0.113.7", "device": "Firefox on Linux", "session_id": str(uuid.uuid4())},
    )

    assert made is not None and made.kind == "security"
    assert made.title == "New sign-in to your account"
    assert "203.0.113.7 (Firefox on Linux) at 2026-12-05 09:12 UTC" in made.body
    assert "change your password" in made.body
    assert made.link == "#/settings"


@pytest.mark.parametrize(
    ("event_type", "title"),
    [
        ("auth.mfa_enabled", "Two-factor authentication turned on"),
        ("auth.mfa_disabled", "Two-factor authentication turned off"),
        ("auth.password_changed", "Your password was changed"),
        ("auth.api_key_created", "New API key created"),
        ("auth.registration_existing_account", "Someone tried to register with your address"),
    ],
)
def test_changes_to_how_a_person_signs_in_are_security_notifications(event_type: str, title: str) -> None:
    made = draft(
        event_type, {"name": "ci", "scopes": ["read"], "email": "a@example.com", "ip": "198.51.100.2"}
    )

    assert made is not None and made.kind == "security" and made.title == title


def test_an_api_key_notice_names_the_key_and_its_scopes_but_never_the_key() -> None:
    made = draft(
        "auth.api_key_created", {"name": "nightly export", "scopes": ["read", "trade"], "prefix": "wak_abc"}
    )

    assert made is not None
    assert "“nightly export” (read, trade)" in made.body
    assert "wak_" not in made.body


@pytest.mark.parametrize(
    "event_type",
    [
        "trades.order_placed",
        "trades.order_cancelled",
        "portfolio.created",
        "prices.updated",
        "notification.created",
    ],
)
def test_what_a_person_did_themselves_or_what_is_not_about_them_is_not_notified(event_type: str) -> None:
    assert event_type not in NOTIFYING_EVENT_TYPES
    assert draft(event_type, {}) is None


def test_long_free_text_is_bounded() -> None:
    made = draft("auth.api_key_created", {"name": "x" * 5000, "scopes": ["read"]})
    fill = draft(
        "trades.order_rejected",
        {"order_id": str(ORDER), "portfolio_id": str(PORTFOLIO), "symbol": "A" * 16, "reason": "r" * 5000},
    )

    assert made is not None and len(made.body) < 600
    assert fill is not None and len(fill.title) <= MAX_TITLE and len(fill.body) < 600


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
            " Version/18.1 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        ("python-httpx/0.28.1", "python-httpx/0.28.1"),
    ],
)
def test_a_sign_in_names_the_device_as_a_person_would(user_agent: str, device: str) -> None:
    assert describe_device(user_agent) == device
