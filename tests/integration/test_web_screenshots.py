"""Screenshots of each screen (docs/screenshots) and the figures of a first visit, against the real platform.

Slow, so not in the default run: ``WEALTHALLOC_SCREENSHOTS=docs/screenshots pytest -m slow
tests/integration/test_web_screenshots.py -s`` writes the PNGs there (elsewhere they go to a
temporary folder) and prints the time from pressing Sign in to a complete dashboard and the bytes
the first load transfers.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.browser import Session, needs_chromium
from tests.integration.people import PASSWORD, Investor, data, new_person
from tests.integration.test_tax_api import transfer_in

pytestmark = [pytest.mark.integration, pytest.mark.slow, needs_chromium]

WIDTH, HEIGHT = 1280, 800
# Bytes the page fetched: the document and every resource, as transferred and as decoded.
TRANSFERRED = """() => {
  const all = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return {
    requests: all.length,
    transferred: all.reduce((sum, e) => sum + (e.transferSize || 0), 0),
    decoded: all.reduce((sum, e) => sum + (e.decodedBodySize || 0), 0),
  };
}"""
COMPLETE_DASHBOARD = (
    "() => document.querySelector('#net-worth-chart svg, #net-worth-chart p')"
    " && document.querySelector('#allocation svg') && !document.querySelector('[aria-busy]')"
)


def test_each_screen_is_photographed_and_the_first_visit_is_measured(
    browse: Callable[..., Session], http: httpx.Client, database_url: str, tmp_path: Path
) -> None:
    folder = Path(os.environ.get("WEALTHALLOC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    investor = Investor(http, database_url)
    portfolio = investor.funded("60000.00", name="Brokerage")
    pid = portfolio["id"]
    for symbol, quantity in (("AAPL", "40"), ("MSFT", "20"), ("KO", "60"), ("JNJ", "25")):
        data(investor.trade(pid, symbol=symbol, side="buy", quantity=quantity), 201)
    transfer_in(investor, pid, "AMD", "50", "6000.00", "2021-06-01")
    data(investor.post("/api/v1/learn/articles/diversification/complete"))
    limit = {"portfolio_id": pid, "symbol": "KO", "side": "buy", "quantity": "5", "order_type": "limit"}
    data(investor.post("/api/v1/trades", {**limit, "limit_price": "1.00"}, str(uuid.uuid4())), 201)

    session = browse(investor, viewport={"width": WIDTH, "height": HEIGHT})
    page = session.page
    page.goto(session.api_url)
    page.wait_for_selector("#login", state="visible")
    first_load = page.evaluate(TRANSFERRED)
    page.screenshot(path=str(folder / "signin.png"))

    page.fill("#email", investor.email)
    page.fill("#password", PASSWORD)
    started = time.perf_counter()
    page.click("#login button[type=submit]")
    page.wait_for_function(COMPLETE_DASHBOARD, timeout=60_000)
    to_dashboard = time.perf_counter() - started
    signed_in = page.evaluate(TRANSFERRED)
    page.screenshot(path=str(folder / "dashboard.png"))

    for name, route, ready in (
        ("portfolio", f"#/portfolios/{pid}", "#holdings"),
        ("trade", f"#/portfolios/{pid}/trade", "#order-ticket"),
        ("orders", f"#/portfolios/{pid}/orders", "#orders"),
        ("insights", f"#/portfolios/{pid}/insights", "#risk-score"),
        ("harvest", "#/harvest", "article[data-symbol='AMD']"),
        ("tax", "#/tax", "#tax-documents"),
        ("alerts", "#/alerts", "#alert-symbol"),
        ("learn", "#/learn", "#articles li"),
        ("article", "#/learn/risk-measures", "#article h3"),
        ("notifications", "#/notifications", "#notifications li, #no-notifications"),
        ("settings", "#/settings", "#profile-form"),
    ):
        session.open(route, ready)
        session.settle()
        page.screenshot(path=str(folder / f"{name}.png"))

    session.assert_clean()

    advisor = new_person(http, database_url, role="advisor", prefix="adv")
    data(investor.post("/api/v1/advisor/clients", {"advisor_email": advisor.email}), 201)
    as_advisor = browse(advisor, viewport={"width": WIDTH, "height": HEIGHT})
    as_advisor.sign_in()
    for name, route, ready in (
        ("advisor", "#/advisor", "#client-select"),
        ("client", f"#/advisor/{investor.id}/{pid}", "#client-holdings"),
    ):
        as_advisor.open(route, ready)
        as_advisor.settle()
        as_advisor.page.screenshot(path=str(folder / f"{name}.png"))
    as_advisor.assert_clean()

    admin = new_person(http, database_url, role="admin", prefix="ops")
    as_admin = browse(admin, viewport={"width": WIDTH, "height": HEIGHT})
    as_admin.sign_in()
    as_admin.open("#/admin/users", "#users tbody tr")
    as_admin.page.fill("#users-from", investor.email[:-1])
    as_admin.page.click("button:has-text('Show users')")
    as_admin.page.wait_for_selector(f"#users tr[data-email='{investor.email}']", timeout=30_000)
    as_admin.page.screenshot(path=str(folder / "admin-users.png"))
    as_admin.open("#/admin/audit", "#audit tbody tr")
    as_admin.page.click("#audit-verify-run")
    as_admin.page.wait_for_selector("#audit-verify-result .ok", timeout=30_000)
    as_admin.page.screenshot(path=str(folder / "admin-audit.png"))
    as_admin.open("#/admin/health", "#health-checks tbody tr")
    as_admin.settle()
    as_admin.page.screenshot(path=str(folder / "admin-health.png"))
    as_admin.assert_clean()

    shots = sorted(folder.glob("*.png"))
    assert len(shots) >= 18 and all(0 < shot.stat().st_size < 400_000 for shot in shots)
    print(
        f"\nsign in -> complete dashboard: {to_dashboard:.2f} s"
        f"\nfirst load (sign-in page): {first_load['requests']} requests, {first_load['transferred']:,} bytes"
        f" transferred, {first_load['decoded']:,} bytes decoded"
        f"\nthrough the complete dashboard: {signed_in['requests']} requests,"
        f" {signed_in['transferred']:,} bytes transferred"
    )
