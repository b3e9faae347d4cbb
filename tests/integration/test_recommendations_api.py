"""Recommendations through the API on Serve, the shards and the paper broker.

Real PostgreSQL, Redis and Ray, the bundled prices at the market clock's day and
the session's tiny anomaly model. A portfolio that is mostly Apple is told to
trim it and to rebalance, with the figures that say why; accepting places the
orders (once per key) and they fill; dismissing records why and nothing else.
"""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error

pytestmark = pytest.mark.integration

LOTS = (("AAPL", "400", "20000.00"), ("KO", "50", "2000.00"), ("JNJ", "20", "2000.00"))


@pytest.fixture
def investor(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def concentrated(investor: Investor, name: str = "Concentrated") -> str:
    """Mostly Apple, a little Coca-Cola and Johnson & Johnson (moved in and confirmed), and 20,000 in cash."""
    portfolio = investor.portfolio(name)
    assert investor.deposit(portfolio["id"], "20000.00").status_code == 201
    for symbol, shares, basis in LOTS:
        lot = {"symbol": symbol, "shares": shares, "cost_basis": basis, "acquired_at": "2015-01-02"}
        data(investor.post(f"/api/v1/portfolios/{portfolio['id']}/lots", lot, str(uuid.uuid4())), 201)
    investor.confirm_transfers(portfolio["id"])  # the positions were at a broker: sellable once confirmed
    return str(portfolio["id"])


def listed(investor: Investor, portfolio_id: str, status: str | None = "open") -> list[dict[str, Any]]:
    query = f"/api/v1/recommendations?portfolio_id={portfolio_id}" + (f"&status={status}" if status else "")
    return data(investor.get(query))  # type: ignore[no-any-return]


def one(recs: list[dict[str, Any]], kind: str, symbol: str | None = None) -> dict[str, Any]:
    found = [r for r in recs if r["kind"] == kind and (symbol is None or r["symbol"] == symbol)]
    assert len(found) == 1, [(r["kind"], r["symbol"]) for r in recs]
    return found[0]


def holdings(investor: Investor, portfolio_id: str) -> dict[str, D]:
    snapshot = data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))
    return {h["symbol"]: D(h["shares"]) for h in snapshot["holdings"]}


def events_of(database_url: str, recommendation_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_type, payload FROM events WHERE aggregate_id = %s ORDER BY sequence",
            (recommendation_id,),
        ).fetchall()
    assert all(event_type == "recommendations.generated" for event_type, _ in rows)
    return [payload for _, payload in rows]


# Generating ---------------------------------------------------------------------------------------


def test_a_concentrated_portfolio_is_told_to_trim_and_to_rebalance_with_the_evidence(
    investor: Investor, database_url: str
) -> None:
    portfolio_id = concentrated(investor)

    recs = listed(investor, portfolio_id)

    trim = one(recs, "reduce_risk", "AAPL")
    triggers = trim["evidence"]["triggers"]
    assert D(triggers["max_weight"]["weight"]) > D(triggers["max_weight"]["limit"]) == D("0.25")
    assert D(trim["evidence"]["weight_after"]) <= D("0.25")
    assert D(trim["evidence"]["risk_after"]["volatility"]) < D(trim["evidence"]["risk_before"]["volatility"])
    (sale,) = trim["orders"]
    assert sale["symbol"] == "AAPL" and sale["side"] == "sell" and D(sale["quantity"]) > 0
    assert "AAPL" in trim["rationale"] and trim["status"] == "open"
    assert set(trim["links"]) == {"self", "accept", "dismiss"}

    rebalance = one(recs, "rebalance")
    evidence = rebalance["evidence"]
    assert evidence["method"] == "risk_parity" and evidence["risk_tolerance"] == "moderate"
    assert sum(D(w) for w in evidence["target_weights"].values()) == pytest.approx(D(1), abs=D("0.00001"))
    assert max(D(w) for w in evidence["target_weights"].values()) <= D("0.25")
    assert D(evidence["risk_after"]["cvar_95"]) < D(evidence["risk_before"]["cvar_95"])
    assert evidence["consistency"]["periods_won"] >= 1 and evidence["anomaly_check"]["checked"] is True
    assert rebalance["orders"][0]["side"] == "sell" and {o["side"] for o in rebalance["orders"]} == {
        "sell",
        "buy",
    }

    for rec in recs:
        assert D(0) <= D(rec["confidence"]) <= D(1)
        assert rec["model_version"].startswith("recommender-1")
        (event,) = events_of(database_url, rec["id"])
        assert event["status"] == "open" and event["confidence"] == rec["confidence"]
    board = data(investor.get("/api/v1/dashboard"))
    assert board["open_recommendations"] == len(recs)


def test_reading_again_or_regenerating_replaces_the_open_ones_instead_of_adding_more(
    investor: Investor, database_url: str
) -> None:
    portfolio_id = concentrated(investor)
    first = listed(investor, portfolio_id)

    again = listed(investor, portfolio_id)
    generated = data(investor.post(f"/api/v1/portfolios/{portfolio_id}/recommendations/generate"))

    ids = sorted(r["id"] for r in first)
    assert sorted(r["id"] for r in again) == ids
    assert sorted(r["id"] for r in generated["recommendations"]) == ids
    assert generated["run"]["new"] == 0 and generated["run"]["unchanged"] == len(ids)
    assert len(listed(investor, portfolio_id, status=None)) == len(ids)
    assert all(len(events_of(database_url, i)) == 1 for i in ids)  # nothing changed: no new events


# Accepting ----------------------------------------------------------------------------------------


def test_accepting_places_orders_that_fill_once_per_key_and_then_it_is_no_longer_open(
    investor: Investor, database_url: str
) -> None:
    portfolio_id = concentrated(investor)
    trim = one(listed(investor, portfolio_id), "reduce_risk", "AAPL")
    path = f"/api/v1/recommendations/{trim['id']}/accept"
    key = str(uuid.uuid4())

    accepted = data(investor.post(path, None, key), 201)

    assert accepted["status"] == "accepted" and accepted["refused"] == []
    (order,) = accepted["placed"]
    assert order["status"] == "filled" and order["origin"] == "recommendation"
    assert order["symbol"] == "AAPL" and order["side"] == "sell"
    assert D(order["quantity"]) == D(trim["orders"][0]["quantity"])
    assert accepted["orders"][0]["order"]["id"] == order["id"]
    assert holdings(investor, portfolio_id)["AAPL"] == D(400) - D(order["quantity"])

    again = data(investor.post(path, None, key), 201)
    assert [o["id"] for o in again["placed"]] == [order["id"]]
    assert len(data(investor.get(f"/api/v1/trades?portfolio_id={portfolio_id}"))) == 1

    error(investor.post(path, None, str(uuid.uuid4())), 409, "RECOMMENDATION_NOT_OPEN")
    error(
        investor.post(f"/api/v1/recommendations/{trim['id']}/dismiss", {"reason": "late"}),
        409,
        "RECOMMENDATION_NOT_OPEN",
    )
    shown = data(investor.get(f"/api/v1/recommendations/{trim['id']}"))
    assert shown["status"] == "accepted" and shown["orders"][0]["order"]["status"] == "filled"
    assert "accept" not in shown["links"]
    statuses = [e["status"] for e in events_of(database_url, trim["id"])]
    assert statuses == ["open", "accepted"]
    assert events_of(database_url, trim["id"])[-1]["order_keys"] == [f"{key}/0"]


def test_a_recommendation_sized_on_another_book_is_stale_until_it_is_regenerated(investor: Investor) -> None:
    portfolio_id = concentrated(investor)
    recs = listed(investor, portfolio_id)
    trim, rebalance = one(recs, "reduce_risk", "AAPL"), one(recs, "rebalance")
    data(investor.post(f"/api/v1/recommendations/{trim['id']}/accept", None, str(uuid.uuid4())), 201)

    stale = investor.post(f"/api/v1/recommendations/{rebalance['id']}/accept", None, str(uuid.uuid4()))

    error(stale, 409, "RECOMMENDATION_STALE")
    fresh = listed(investor, portfolio_id)
    assert not [r for r in fresh if r["kind"] == "reduce_risk" and r["symbol"] == "AAPL"]  # done, not again
    renewed = one(fresh, "rebalance")
    assert renewed["id"] == rebalance["id"] and renewed["orders"] != rebalance["orders"]
    accepted = data(
        investor.post(f"/api/v1/recommendations/{renewed['id']}/accept", None, str(uuid.uuid4())), 201
    )
    assert accepted["refused"] == []
    assert [o["status"] for o in accepted["placed"]] == ["filled"] * len(renewed["orders"])
    assert [o["side"] for o in accepted["placed"]][0] == "sell"
    held = holdings(investor, portfolio_id)
    assert set(held) <= set(renewed["evidence"]["target_weights"])  # nothing outside the target is held
    assert len(held) > len(LOTS)


# Dismissing ---------------------------------------------------------------------------------------


def test_dismissing_records_the_reason_and_changes_nothing_else(
    investor: Investor, database_url: str
) -> None:
    portfolio_id = concentrated(investor)
    trim = one(listed(investor, portfolio_id), "reduce_risk", "AAPL")
    before = data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))
    path = f"/api/v1/recommendations/{trim['id']}/dismiss"

    dismissed = data(investor.post(path, {"reason": "  I hold Apple on purpose.  "}))

    assert dismissed["status"] == "dismissed" and dismissed["dismiss_reason"] == "I hold Apple on purpose."
    after = data(investor.get(f"/api/v1/portfolios/{portfolio_id}"))
    assert after["cash_balance"] == before["cash_balance"] and after["holdings"] == before["holdings"]
    assert data(investor.get("/api/v1/trades")) == []
    error(investor.post(path, {"reason": "again"}), 409, "RECOMMENDATION_NOT_OPEN")
    error(
        investor.post(f"/api/v1/recommendations/{trim['id']}/accept", None, str(uuid.uuid4())),
        409,
        "RECOMMENDATION_NOT_OPEN",
    )
    (_, event) = events_of(database_url, trim["id"])
    assert event["status"] == "dismissed" and event["reason"] == "I hold Apple on purpose."
    # Regenerating does not bring back what the user just dismissed.
    generated = data(investor.post(f"/api/v1/portfolios/{portfolio_id}/recommendations/generate"))
    assert not [r for r in generated["recommendations"] if r["kind"] == "reduce_risk"]
    assert generated["run"]["snoozed"] == 1
    assert data(investor.get(f"/api/v1/recommendations/{trim['id']}"))["status"] == "dismissed"


# Who may, and what is refused ---------------------------------------------------------------------


def test_someone_elses_recommendations_are_404(http: httpx.Client, database_url: str) -> None:
    owner, stranger = Investor(http, database_url), Investor(http, database_url)
    portfolio_id = concentrated(owner)
    trim = one(listed(owner, portfolio_id), "reduce_risk", "AAPL")

    error(stranger.get(f"/api/v1/recommendations/{trim['id']}"), 404, "NOT_FOUND")
    error(
        stranger.post(f"/api/v1/recommendations/{trim['id']}/accept", None, str(uuid.uuid4())),
        404,
        "NOT_FOUND",
    )
    error(
        stranger.post(f"/api/v1/recommendations/{trim['id']}/dismiss", {"reason": "mine now"}),
        404,
        "NOT_FOUND",
    )
    error(stranger.get(f"/api/v1/recommendations?portfolio_id={portfolio_id}"), 404, "NOT_FOUND")
    error(stranger.post(f"/api/v1/portfolios/{portfolio_id}/recommendations/generate"), 404, "NOT_FOUND")
    assert data(stranger.get("/api/v1/recommendations")) == []
    assert data(owner.get(f"/api/v1/recommendations/{trim['id']}"))["status"] == "open"


def test_bad_requests_are_refused_in_the_error_envelope(investor: Investor) -> None:
    portfolio_id = concentrated(investor)
    recs = listed(investor, portfolio_id)
    trim = one(recs, "reduce_risk", "AAPL")
    accept, dismiss = (f"/api/v1/recommendations/{trim['id']}/{action}" for action in ("accept", "dismiss"))

    error(investor.post(accept, None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    error(investor.post(accept, {"quantity": "1"}, str(uuid.uuid4())), 400, "VALIDATION_ERROR")
    error(investor.post(dismiss, None), 400, "VALIDATION_ERROR")
    error(investor.post(dismiss, {"reason": "   "}), 400, "VALIDATION_ERROR")
    error(investor.post(dismiss, {"reason": "x" * 501}), 400, "VALIDATION_ERROR")
    error(investor.post(dismiss, {"reason": "no", "also": 1}), 400, "VALIDATION_ERROR")
    malformed = investor.http.post(
        dismiss, content=b'{"reason": ', headers={**investor.headers, "Content-Type": "application/json"}
    )
    error(malformed, 400, "MALFORMED_JSON")
    error(investor.get("/api/v1/recommendations?status=maybe"), 400, "VALIDATION_ERROR")
    error(
        investor.post("/api/v1/recommendations/not-a-uuid/accept", None, str(uuid.uuid4())),
        400,
        "VALIDATION_ERROR",
    )
    error(investor.get(f"/api/v1/recommendations/{uuid.uuid4()}"), 404, "NOT_FOUND")
    # One key, two recommendations: the second is a different request, not a replay.
    key = str(uuid.uuid4())
    data(investor.post(accept, None, key), 201)
    other = one(recs, "rebalance")
    error(
        investor.post(f"/api/v1/recommendations/{other['id']}/accept", None, key),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    # Nothing above changed the recommendation but the one accept.
    assert data(investor.get(f"/api/v1/recommendations/{trim['id']}"))["status"] == "accepted"
