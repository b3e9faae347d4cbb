"""Event payload schemas: every event the code writes has a versioned model, checked when it is written."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from wealthalloc.events import schemas
from wealthalloc.events.schemas import (
    EventPayload,
    InvalidPayload,
    UnknownEventType,
    event_types,
    latest_version,
    register,
    schema_for,
    validate_payload,
)

PACKAGE = Path(__file__).resolve().parents[2] / "wealthalloc"
PORTFOLIO = uuid.uuid4()
ORDER = uuid.uuid4()

# One payload per event type, in the form the writers build them (UUIDs and Decimals, not strings).
SAMPLES: dict[str, dict[str, Any]] = {
    "portfolio.created": {"portfolio_id": PORTFOLIO, "name": "Main", "by": uuid.uuid4()},
    "portfolio.updated": {"portfolio_id": PORTFOLIO, "changed": ["name", "target_allocation"], "version": 3},
    "portfolio.deleted": {"portfolio_id": PORTFOLIO, "by": uuid.uuid4()},
    "portfolio.cash_moved": {
        "portfolio_id": PORTFOLIO,
        "movement_id": uuid.uuid4(),
        "amount": Decimal("-42.0000"),
        "balance": Decimal("958.0000"),
    },
    "portfolio.lot_transferred_in": {
        "portfolio_id": PORTFOLIO,
        "lot_id": uuid.uuid4(),
        "symbol": "AAPL",
        "shares": Decimal("10.500000"),
    },
    "trades.order_placed": {
        "order_id": ORDER,
        "portfolio_id": PORTFOLIO,
        "symbol": "MSFT",
        "side": "buy",
        "quantity": Decimal("5"),
        "order_type": "limit",
        "price": Decimal("310.000000"),
        "reserved_cash": Decimal("1551.0000"),
        "by": uuid.uuid4(),
    },
    "trades.executed": {
        "order_id": ORDER,
        "trade_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "fill_id": "paper-fill-1",
        "symbol": "MSFT",
        "side": "buy",
        "quantity": Decimal("5"),
        "price": Decimal("312.120000"),
        "commission": Decimal("1.0000"),
        "cash_balance": Decimal("8438.4000"),
        "order_status": "filled",
    },
    "trades.order_cancelled": {
        "order_id": ORDER,
        "portfolio_id": PORTFOLIO,
        "symbol": "MSFT",
        "filled_quantity": Decimal("2.000000"),
        "reason": "cancelled by the client",
    },
    "trades.order_rejected": {
        "order_id": ORDER,
        "portfolio_id": PORTFOLIO,
        "symbol": "MSFT",
        "filled_quantity": Decimal("0"),
        "reason": "outside the price collar",
    },
    "trades.order_expired": {
        "order_id": ORDER,
        "portfolio_id": PORTFOLIO,
        "symbol": "MSFT",
        "side": "sell",
        "quantity": Decimal("5"),
        "filled_quantity": Decimal("0"),
        "reason": None,
    },
    "tax_harvests.identified": {
        "harvest_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "symbol": "INTC",
        "loss_amount": Decimal("1234.5600"),
        "term": "short",
        "estimated_tax_savings": Decimal("333.3300"),
        "replacement_symbol": "AMD",
        "lot_ids": [uuid.uuid4(), uuid.uuid4()],
    },
    "tax_harvests.executed": {
        "harvest_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "symbol": "INTC",
        "replacement_symbol": "AMD",
        "loss_amount": Decimal("1234.5600"),
        "estimated_tax_savings": Decimal("333.3300"),
        "wash_sale_window_end": "2022-12-28",
        "lot_ids": [uuid.uuid4()],
        "by": uuid.uuid4(),
    },
    "recommendations.generated": {
        "recommendation_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "kind": "anomaly",
        "symbol": "AAPL",
        "confidence": Decimal("0.9300"),
        "model_version": "lstm-ae-7",
    },
    "prices.updated": {"symbols": ["AAPL", "MSFT"], "as_of": "2022-12-28", "prices": {"AAPL": "126.04"}},
    "auth.registration_existing_account": {"email": "owner@example.com", "ip": "203.0.113.7"},
    "household.invitation_sent": {
        "invitation_id": uuid.uuid4(),
        "inviter_id": uuid.uuid4(),
        "invitee_email": "spouse@example.com",
        "expires_at": "2026-03-16T12:00:00+00:00",
    },
    "household.joined": {
        "household_id": uuid.uuid4(),
        "invitation_id": uuid.uuid4(),
        "members": [uuid.uuid4()],
    },
    "household.left": {"household_id": uuid.uuid4(), "left_by": uuid.uuid4(), "members": [uuid.uuid4()]},
    "portfolio.lot_confirmed": {
        "portfolio_id": PORTFOLIO,
        "lot_ids": [uuid.uuid4()],
        "by": uuid.uuid4(),
        "reason": "Transfer statement from the old broker checked",
    },
    "linked_account.linked": {
        "linked_account_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "provider": "ibkr",
        "account_number_masked": "****4567",
    },
    "linked_account.unlinked": {
        "linked_account_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "provider": "csv",
        "account_number_masked": "****9-01",
    },
    "linked_account.synced": {
        "linked_account_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "provider": "ibkr",
        "account_number_masked": "****4567",
        "differences": 1,
        "resolved": 0,
        "transfers_in": [uuid.uuid4()],
        "confirmed": [],
    },
    "linked_account.sync_failed": {
        "linked_account_id": uuid.uuid4(),
        "portfolio_id": PORTFOLIO,
        "provider": "ibkr",
        "account_number_masked": "****4567",
        "reason": "no connection to the gateway",
    },
    "price_alert.triggered": {
        "alert_id": uuid.uuid4(),
        "symbol": "AAPL",
        "direction": "above",
        "level": Decimal("130.00"),
        "price": Decimal("131.20"),
        "as_of": "2022-12-28",
        "note": None,
    },
    "auth.new_sign_in": {"session_id": uuid.uuid4(), "ip": "203.0.113.7", "device": "Firefox on Linux"},
    "auth.mfa_enabled": {"sessions_ended": 2, "ip": "203.0.113.7"},
    "auth.mfa_disabled": {"sessions_ended": 0, "ip": "203.0.113.7"},
    "auth.password_changed": {"sessions_ended": 1, "ip": "203.0.113.7"},
    "auth.api_key_created": {"api_key_id": uuid.uuid4(), "name": "nightly export", "scopes": ["read"]},
    "notification.created": {
        "id": uuid.uuid4(),
        "kind": "trade_fill",
        "title": "Bought 10 AAPL at $150.25",
        "body": "10 shares of AAPL bought at $150.25 for $1,502.50.",
        "created_at": "2026-12-05T09:12:00Z",
        "read_at": None,
        "link": f"#/portfolios/{PORTFOLIO}/orders",
        "data": {"order_id": str(ORDER), "symbol": "AAPL"},
    },
}


def _event_types_written_by_the_code() -> tuple[set[str], set[str]]:
    """Every ``event_type="..."`` in the package (what ``add_event`` callers write today), and the
    constant prefixes of those built with an f-string (``f"trades.order_{status}"``)."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        literal |= set(re.findall(r"event_type=\"([a-z0-9_.]+)\"", text))
        prefixes |= set(re.findall(r"event_type=f\"([a-z0-9_.]+)\{", text))
    return literal, prefixes


def test_every_event_type_the_code_writes_has_a_payload_model() -> None:
    literal, prefixes = _event_types_written_by_the_code()

    assert {"portfolio.created", "portfolio.cash_moved"} <= literal  # the scan finds the writers
    assert literal <= event_types(), f"no payload model for {sorted(literal - event_types())}"
    for prefix in prefixes:
        assert any(t.startswith(prefix) for t in event_types()), f"no payload model for {prefix}*"


def test_every_way_an_order_ends_has_a_payload_model() -> None:
    assert {"trades.order_cancelled", "trades.order_rejected", "trades.order_expired"} <= event_types()


def test_the_announced_event_types_are_registered_at_version_one() -> None:
    assert set(SAMPLES) == event_types()
    for event_type in SAMPLES:
        assert latest_version(event_type) == 1
        assert issubclass(schema_for(event_type, 1), EventPayload)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_a_payload_as_the_writers_build_it_validates_into_the_form_add_event_has_always_stored(
    event_type: str,
) -> None:
    payload = SAMPLES[event_type]

    checked = validate_payload(event_type, 1, payload)

    # The same JSON document as json.dumps(payload, default=str): decimals and ids as strings, nothing added.
    assert checked == json.loads(json.dumps(payload, default=str))


def test_decimals_keep_their_digits() -> None:
    checked = validate_payload("trades.executed", 1, SAMPLES["trades.executed"])

    assert checked["price"] == "312.120000" and checked["commission"] == "1.0000"


@pytest.mark.parametrize(
    ("event_type", "change", "field"),
    [
        ("portfolio.cash_moved", {"amount": "a lot"}, "amount"),
        ("portfolio.cash_moved", {"movement_id": None}, "movement_id"),
        ("portfolio.cash_moved", {"balance": Decimal("-1")}, "balance"),
        ("portfolio.created", {"portfolio_id": "not-a-uuid"}, "portfolio_id"),
        ("portfolio.lot_transferred_in", {"shares": Decimal("0")}, "shares"),
        ("trades.executed", {"side": "hold"}, "side"),
        ("trades.executed", {"quantity": Decimal("-5")}, "quantity"),
        ("trades.executed", {"price": None}, "price"),
        ("trades.executed", {"fill_id": ""}, "fill_id"),
        ("trades.order_placed", {"order_type": "iceberg"}, "order_type"),
        ("trades.order_cancelled", {"filled_quantity": Decimal("-1")}, "filled_quantity"),
        ("trades.order_rejected", {"order_id": None}, "order_id"),
        ("tax_harvests.identified", {"term": "forever"}, "term"),
        ("recommendations.generated", {"confidence": Decimal("1.5")}, "confidence"),
        ("prices.updated", {"symbols": []}, "symbols"),
    ],
)
def test_a_payload_that_does_not_match_its_model_is_refused_naming_the_field(
    event_type: str, change: dict[str, Any], field: str
) -> None:
    payload = {**SAMPLES[event_type], **change}

    with pytest.raises(InvalidPayload, match=field) as refused:
        validate_payload(event_type, 1, payload)
    assert refused.value.event_type == event_type and refused.value.errors


def test_a_missing_required_field_is_refused() -> None:
    payload = dict(SAMPLES["trades.executed"])
    del payload["fill_id"]

    with pytest.raises(InvalidPayload, match="fill_id"):
        validate_payload("trades.executed", 1, payload)


def test_fields_a_model_does_not_name_are_kept_so_writers_can_add_fields() -> None:
    payload = {**SAMPLES["portfolio.deleted"], "reason": "closed", "at": Decimal("1.5")}

    assert validate_payload("portfolio.deleted", 1, payload)["reason"] == "closed"


def test_an_unknown_type_or_version_is_an_error_when_strict_and_passes_as_is_otherwise() -> None:
    with pytest.raises(UnknownEventType, match="portfolio.renamed"):
        validate_payload("portfolio.renamed", 1, {"x": 1})
    with pytest.raises(UnknownEventType, match="version 2"):
        validate_payload("portfolio.created", 2, SAMPLES["portfolio.created"])
    with pytest.raises(UnknownEventType):
        schema_for("nothing.here")
    with pytest.raises(UnknownEventType):
        latest_version("nothing.here")

    assert validate_payload("portfolio.renamed", 1, {"x": 1}, strict=False) == {"x": 1}


def test_a_new_version_is_a_new_model_and_the_old_one_still_validates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schemas, "_REGISTRY", dict(schemas._REGISTRY))

    @register("portfolio.created", version=2)
    class PortfolioCreatedV2(EventPayload):
        portfolio_id: uuid.UUID
        title: str

    assert latest_version("portfolio.created") == 2
    assert validate_payload("portfolio.created", 1, SAMPLES["portfolio.created"])
    with pytest.raises(InvalidPayload, match="title"):
        validate_payload("portfolio.created", 2, SAMPLES["portfolio.created"])
    with pytest.raises(ValueError, match="already has a payload model"):
        register("portfolio.created", version=2)(PortfolioCreatedV2)
