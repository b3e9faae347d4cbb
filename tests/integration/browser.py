"""One person's page in Chromium against the real platform, and what the page reported.

The browser tests share this so each checks the same things the same way: no script error, no
content the Content-Security-Policy blocked, and no refused request the test did not cause.
"""

from __future__ import annotations

import shutil
from importlib import resources
from typing import Any

import pytest

from tests.integration.people import PASSWORD, Investor

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium package (apt-get install chromium)"
)

# Chromium reports each non-2xx answer as a console error; the tests that expect one say so.
NETWORK_ANSWER = "Failed to load resource: the server responded with a status of"

# A phone's viewport, and how far the page scrolls sideways (0 or less: it does not).
PHONE = {"viewport": {"width": 390, "height": 844}}
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


# axe-core, as the axe-playwright-python package (a dev dependency) ships it: never fetched at run time.
AXE_SCRIPT = "axe_playwright_python/axe.min.js"
# WCAG 2.0, 2.1 and 2.2 A and AA, and Deque's best practices (landmarks, one main, heading order).
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
AXE_RUN = """async (tags) => {
  const only = { type: "tag", values: tags };
  const results = await axe.run(document, { runOnly: only, resultTypes: ["violations"] });
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary.replace(/\\s+/g, " ")),
  }));
}"""


def axe_script() -> str:
    package, name = AXE_SCRIPT.split("/")
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


class Session:
    """One person's page, with what the console and the page reported."""

    def __init__(self, browser: Any, api_url: str, investor: Investor, **context: Any) -> None:
        self.api_url = api_url
        self.investor = investor
        self.context = browser.new_context(extra_http_headers={"X-Forwarded-For": investor.ip}, **context)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.refused: list[str] = []
        self.page.on("response", lambda r: r.status >= 400 and self.refused.append(f"{r.status} {r.url}"))
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def submit_sign_in(self) -> Any:
        """The sign-in form filled and sent, without waiting for what comes next."""
        page = self.page
        page.goto(self.api_url)
        page.wait_for_selector("#login", state="visible")
        page.fill("#email", self.investor.email)
        page.fill("#password", PASSWORD)
        page.click("#login button[type=submit]")
        return page

    def sign_in(self) -> Any:
        page = self.submit_sign_in()
        page.wait_for_selector("#net-worth-chart", state="visible", timeout=30_000)
        return page

    def open(self, hash_route: str, ready: str) -> None:
        self.page.evaluate("(route) => { location.hash = route; }", hash_route)
        self.page.wait_for_selector(ready, timeout=30_000)

    def settle(self) -> None:
        self.page.wait_for_function("() => !document.querySelector('[aria-busy]')", timeout=30_000)

    def accessibility(self) -> list[str]:
        """axe-core's violations on the page as it is now, one line per rule and element."""
        if not self.page.evaluate("() => typeof axe !== 'undefined'"):
            self.page.evaluate(axe_script())
        found = self.page.evaluate(AXE_RUN, AXE_RULES)
        return [f"{v['id']} ({v['impact']}) {v['help']} -- {node}" for v in found for node in v["nodes"]]

    def overflow(self) -> int:
        return int(self.page.evaluate(OVERFLOW))

    def assert_clean(self, *refused: str) -> None:
        """No script error, no blocked content, and no refused request but those the test caused
        (``refused``: parts of their URLs) and a young portfolio's 400 PERFORMANCE_UNAVAILABLE."""
        assert not self.errors, self.errors
        blocked = [line for line in self.console if "Content Security Policy" in line]
        assert not blocked, blocked
        others = [line for line in self.console if not line.startswith(NETWORK_ANSWER)]
        assert not others, others
        young = [r for r in self.refused if r.startswith("400 ") and "/performance?" in r]
        unexpected = [r for r in self.refused if r not in young and not any(part in r for part in refused)]
        assert not unexpected, unexpected

    def close(self) -> None:
        self.context.close()
