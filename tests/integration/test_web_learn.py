"""Learn in the browser, against the real platform (PostgreSQL, Redis, Ray Serve).

An investor opens the catalogue, reads an article (its text shown as headings, paragraphs and
lists, never as markup), marks it read, and sees the progress count it; the next article is a
link away; an unknown article says so; the screens fit a phone.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.integration.browser import PHONE, Session, needs_chromium
from tests.integration.people import Investor, data
from wealthalloc.learn import catalogue

pytestmark = [pytest.mark.integration, needs_chromium]


def test_an_article_is_read_marked_read_and_counted_in_the_progress(session: Session) -> None:
    articles = catalogue()
    page = session.sign_in()
    page.click("#nav-learn")
    page.wait_for_selector("#articles li[data-slug]", timeout=30_000)
    assert page.text_content("#learn-progress-text") == f"0 of {len(articles)} articles read"
    shown = page.eval_on_selector_all("#articles li", "items => items.map(i => i.dataset.slug)")
    assert shown == [a.slug for a in articles]
    assert "min read" in page.text_content("#articles li[data-slug='risk-measures']")

    page.click("#articles li[data-slug='tax-loss-harvesting'] a")
    page.wait_for_selector("#article[data-slug='tax-loss-harvesting'] h3", timeout=30_000)
    assert page.text_content("#article h2") == "Tax-loss harvesting and the wash-sale rule"
    assert page.locator("#article ul li").count() >= 3 and "61 days" in page.text_content("#article")
    assert page.get_attribute("#nav-learn", "aria-current") == "page"
    page.click("#article-complete")
    page.wait_for_selector("#article-state:has-text('Read on')", timeout=30_000)
    assert page.is_hidden("#article-complete")
    stored = data(session.investor.get("/api/v1/learn/articles/tax-loss-harvesting"))
    assert stored["completed_at"] is not None

    page.click("a:has-text('Next: ')")
    page.wait_for_selector("#article[data-slug='rebalancing']", timeout=30_000)
    page.click("a:has-text('All articles')")
    page.wait_for_selector("#articles li[data-slug='tax-loss-harvesting'][data-read='true']", timeout=30_000)
    assert page.text_content("#learn-progress-text") == f"1 of {len(articles)} articles read"
    session.assert_clean()


def test_an_unknown_article_says_so(session: Session) -> None:
    page = session.sign_in()
    session.open("#/learn/no-such-article", "#alert:not([hidden])")
    assert "NOT_FOUND" in page.text_content("#alert")
    session.assert_clean("404 ")


def test_the_learn_screens_fit_a_phone(
    browse: Callable[..., Session], http: httpx.Client, database_url: str
) -> None:
    phone = browse(Investor(http, database_url), **PHONE)
    phone.sign_in()
    for route, ready in (("#/learn", "#articles li"), ("#/learn/risk-measures", "#article h3")):
        phone.open(route, ready)
        phone.settle()
        assert phone.overflow() <= 0, route
    phone.assert_clean()
