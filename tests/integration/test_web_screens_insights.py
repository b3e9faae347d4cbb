"""A portfolio's insights in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

The page shows the API's risk figures (VaR, CVaR, beta, concentration), each holding's anomaly
score with the model version, and the recommendations with their evidence and confidence; the
investor accepts one (its orders fill) and dismisses another with a reason. A part that fails says
so while the others still show.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, data
from tests.integration.test_recommendations_api import concentrated, listed, one

pytestmark = [pytest.mark.integration, needs_chromium]


def percent(fraction: str) -> str:
    return f"{Decimal(fraction) * 100:.2f} %"


def usd(amount: str) -> str:
    return f"${Decimal(amount):,.2f}"


def test_risk_anomalies_and_recommendations_are_the_api_s_and_one_is_accepted_another_dismissed(
    session: Session,
) -> None:
    investor = session.investor
    pid = concentrated(investor)
    risk = data(investor.get(f"/api/v1/portfolios/{pid}/risk"))
    anomalies = data(investor.get(f"/api/v1/portfolios/{pid}/anomalies"))
    recs = listed(investor, pid)
    trim, rebalance = one(recs, "reduce_risk", "AAPL"), one(recs, "rebalance")

    page = session.sign_in()
    page.select_option("#portfolio-select", pid)
    page.click("#nav-insights")
    page.wait_for_selector("#risk-score", timeout=60_000)
    session.settle()
    assert page.get_attribute("#nav-insights", "aria-current") == "page"
    assert page.text_content("#risk-score") == f"{Decimal(risk['risk_score']):.2f} / 100"
    assert (
        page.text_content("#risk-var")
        == f"{percent(risk['var_historical'])} · {usd(risk['var_historical_amount'])}"
    )
    assert (
        page.text_content("#risk-cvar")
        == f"{percent(risk['cvar_historical'])} · {usd(risk['cvar_historical_amount'])}"
    )
    assert page.text_content("#risk-beta") == f"{Decimal(risk['beta']):.2f}"
    assert page.text_content("#risk-hhi") == f"{Decimal(risk['hhi']):.2f}"
    assert "Technology" in page.get_attribute("#risk svg", "aria-label")

    model = page.text_content("#anomaly-model")
    assert (
        f"Model {anomalies['model_version']}" in model and f"{anomalies['anomalies']} of 3 holdings" in model
    )
    shown = page.eval_on_selector_all("#anomaly-table tbody tr", "rows => rows.map(r => r.dataset.symbol)")
    assert sorted(shown) == sorted(h["symbol"] for h in anomalies["holdings"]) == ["AAPL", "JNJ", "KO"]
    for holding in anomalies["holdings"]:
        verdict = page.text_content(f"#anomaly-table tr[data-symbol='{holding['symbol']}'] td:nth-child(2)")
        assert verdict == ("Unusual" if holding["is_anomaly"] else "Normal")

    card = f"article[data-recommendation='{trim['id']}']"
    assert trim["rationale"] in page.text_content(card)
    assert f"confidence {percent(trim['confidence'])}" in page.text_content(f"{card} .status")
    page.click(f"{card} summary:has-text('Evidence')")
    assert page.is_visible(f"{card} details.evidence dt:has-text('weight after')")
    assert page.locator("article.recommendation").count() == len(recs)

    # Dismissing needs a reason; with one, it is recorded and nothing is traded.
    other = f"article[data-recommendation='{rebalance['id']}']"
    page.click(f"{other} button:has-text('Dismiss')")
    page.wait_for_selector(f"{other} [role=alert]:has-text('Say why')")
    assert data(investor.get(f"/api/v1/recommendations/{rebalance['id']}"))["status"] == "open"
    page.fill(f"{other} input[name=reason]", "I rebalance once a year.")
    page.click(f"{other} button:has-text('Dismiss')")
    page.wait_for_selector("#status:has-text('Recommendation dismissed.')", timeout=30_000)
    dismissed = data(investor.get(f"/api/v1/recommendations/{rebalance['id']}"))
    assert (dismissed["status"], dismissed["dismiss_reason"]) == ("dismissed", "I rebalance once a year.")
    assert data(investor.get("/api/v1/trades")) == []

    page.click(f"{card} button:has-text('Accept')")
    page.wait_for_selector("#status:has-text('Recommendation accepted')", timeout=60_000)
    assert "accepted" in page.text_content(f"{card} .status")
    assert page.locator(f"{card} button:has-text('Accept')").count() == 0
    [order] = data(investor.get("/api/v1/trades", params={"portfolio_id": pid}))
    assert (order["symbol"], order["side"], order["status"]) == ("AAPL", "sell", "filled")
    assert Decimal(order["quantity"]) == Decimal(trim["orders"][0]["quantity"])
    session.assert_clean()


def test_a_failing_risk_answer_shows_its_message_while_the_other_parts_still_show(session: Session) -> None:
    pid = concentrated(session.investor)
    page = session.sign_in()
    failure = {"error": {"code": "INTERNAL_ERROR", "message": "Risk is down for a moment.", "details": {}}}
    page.route(
        f"**/api/v1/portfolios/{pid}/risk",
        lambda route: route.fulfill(status=500, content_type="application/json", body=json.dumps(failure)),
    )
    session.open(f"#/portfolios/{pid}/insights", "#anomaly-table")
    session.settle()
    message = page.text_content("#risk [role=alert]")
    assert "Risk is down for a moment." in message and "INTERNAL_ERROR" in message
    assert page.locator("#risk-score").count() == 0
    assert page.locator("article.recommendation").count() >= 1
    session.assert_clean("500 ")


def test_the_insights_screen_fits_a_phone(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    investor = Investor(http, database_url)
    pid = concentrated(investor)
    phone = browse(investor, **PHONE)
    page = phone.sign_in()
    phone.open(f"#/portfolios/{pid}/insights", "#risk-score")
    phone.settle()
    page.click("article.recommendation summary:has-text('Evidence')")
    assert phone.overflow() <= 0
    phone.assert_clean()


def test_a_slow_risk_answer_for_one_portfolio_never_shows_under_another(session: Session) -> None:
    investor = session.investor
    slow = concentrated(investor, name="Slow")
    other = investor.funded("1000.00", name="Cash only")
    page = session.sign_in()
    held: list[Any] = []
    page.route(f"**/api/v1/portfolios/{slow}/risk", lambda route: held.append(route))
    page.evaluate("(route) => { location.hash = route; }", f"#/portfolios/{slow}/insights")
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for the slow portfolio's risk"

    session.open(f"#/portfolios/{other['id']}/insights", "#risk-score")
    session.settle()
    with contextlib.suppress(Exception):  # the page may have given up on the slow request already
        held[0].continue_()
    page.wait_for_timeout(1500)
    assert page.text_content("#view h2") == "Insights · Cash only"
    assert page.text_content("#risk-score") == "0.00 / 100" and page.locator("#risk-score").count() == 1
    assert page.locator("#anomaly-table").count() == 0 and page.locator("article.recommendation").count() == 0
    session.assert_clean()
