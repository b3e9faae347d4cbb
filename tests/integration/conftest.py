"""Fixtures of the browser tests: one Chromium per module, and pages that close after each test.

None of them is autouse, so the integration tests that never open a page never start a browser.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.browser import Session
from tests.integration.people import Investor


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def browse(browser: Any, api_url: str) -> Iterator[Callable[..., Session]]:
    """Opens a page for someone (``browse(person, **context options)``); each is closed after the test."""
    opened: list[Session] = []

    def open_for(person: Any, **context: Any) -> Session:
        opened.append(Session(browser, api_url, person, **context))
        return opened[-1]

    try:
        yield open_for
    finally:
        for page in opened:
            page.close()


@pytest.fixture
def session(browse: Callable[..., Session], http: httpx.Client, database_url: str) -> Session:
    """A new investor's page."""
    return browse(Investor(http, database_url))
