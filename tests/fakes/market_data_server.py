"""``FakeMarketDataServer``: Polygon's and Alpha Vantage's REST APIs on loopback, with recorded answers.

The provider clients under test make real HTTP requests over a real socket
(httpx, connection pooling, timeouts) to this server, pointed at it through
``polygon_base_url`` / ``alpha_vantage_base_url``. It serves both APIs from
one port: Polygon's paths start with ``/v2/``, Alpha Vantage's is ``/query``.

Answers follow the documented formats (the bodies below are shaped after
the providers' documentation and the answers their users have posted):

- Polygon: ``/v2/last/trade/{T}``, ``/v2/aggs/ticker/{T}/prev``,
  ``/v2/aggs/ticker/{T}/range/1/day/{from}/{to}`` (two pages joined by
  ``next_url`` when the range has more than ``page_size`` bars); 401
  ``Unknown API Key``; 403 ``NOT_AUTHORIZED``; 429 with its
  ``You've exceeded the maximum requests per minute`` body; 404.
- Alpha Vantage: ``GLOBAL_QUOTE`` and ``TIME_SERIES_DAILY``, everything HTTP
  200: the ``Note`` (old) and ``Information`` (current) rate-limit bodies,
  ``Error Message`` for an unknown symbol, ``{"Global Quote": {}}``.

Tests steer each provider with :meth:`script`: the next requests to that
provider get the given behaviours in order (``"ok"``, ``"rate_limit"``,
``"rate_limit_information"``, ``"server_error"``, ``"unauthorized"``,
``"forbidden"``, ``"not_found"``, ``"malformed"``, ``"not_json"``,
``"slow:<seconds>"``), then ``"ok"`` again, or :meth:`always` for every
request. :attr:`requests` records what arrived.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
POLYGON = "polygon"
ALPHA_VANTAGE = "alpha_vantage"
POLYGON_KEY = "polygon-test-key"
ALPHA_VANTAGE_KEY = "av-test-key"

LAST_PRICES: dict[str, str] = {"AAPL": "189.9850", "MSFT": "374.5100", "IBM": "162.1300"}
"""The price each fake provider quotes, as decimal text (Polygon sends it as a JSON number)."""

LAST_TRADE_AT = datetime(2024, 1, 5, 20, 59, 59, 123456, tzinfo=UTC)
PREV_DAY = date(2024, 1, 4)

POLYGON_RATE_LIMIT = {
    "status": "ERROR",
    "request_id": "9bcb6dcd6ff4f1c4e0e8a0a5e2a9f7c3",
    "error": "You've exceeded the maximum requests per minute, please wait or upgrade your subscription"
    " to continue. https://polygon.io/pricing",
}
POLYGON_UNKNOWN_KEY = {"status": "ERROR", "request_id": "5e2a9f7c39bcb6dc", "error": "Unknown API Key"}
POLYGON_NOT_AUTHORIZED = {
    "status": "NOT_AUTHORIZED",
    "request_id": "a0a5e2a9f7c39bcb",
    "message": "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
}
AV_NOTE = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and"
    " 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a"
    " higher API call frequency."
}
AV_INFORMATION = {
    "Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day."
    " Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly"
    " remove all daily rate limits."
}
AV_INVALID_KEY = {
    "Information": "the parameter apikey is invalid or missing. Please claim your free API key on"
    " (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
}
AV_ERROR = {
    "Error Message": "Invalid API call. Please retry or visit the documentation"
    " (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
}


def trading_days(since: date, until: date) -> Iterator[date]:
    """Weekdays from ``since`` to ``until``: the fake's calendar (holidays are not its concern)."""
    day = since
    while day <= until:
        if day.weekday() < 5:
            yield day
        day += timedelta(days=1)


def close_for(symbol: str, day: date) -> str:
    """A deterministic close with four decimals, so tests can recompute what was stored."""
    base = int(LAST_PRICES.get(symbol, "100.0000").split(".")[0])
    cents = (day.toordinal() * 7919) % 10000
    return f"{base - 20 + (day.toordinal() % 40)}.{cents:04d}"


def _bar_ms(day: date) -> int:
    # Polygon stamps a daily bar with the start of its window: midnight in New York, in ms.
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)


@dataclass
class Seen:
    """One request as the server received it."""

    provider: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)


class FakeMarketDataServer:
    """Both providers' APIs on ``127.0.0.1:<free port>``; ``with`` starts and stops it."""

    def __init__(self, *, page_size: int = 50) -> None:
        self.page_size = page_size
        self.requests: list[Seen] = []
        self._scripts: dict[str, deque[str]] = {POLYGON: deque(), ALPHA_VANTAGE: deque()}
        self._always: dict[str, str | None] = {POLYGON: None, ALPHA_VANTAGE: None}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-market-data", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeMarketDataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, provider: str, *behaviours: str) -> None:
        """The next requests to ``provider`` get these behaviours, in order."""
        with self._lock:
            self._scripts[provider].extend(behaviours)

    def always(self, provider: str, behaviour: str | None) -> None:
        """Every request to ``provider`` gets ``behaviour`` (None: back to scripts and ``ok``)."""
        with self._lock:
            self._always[provider] = behaviour

    def count(self, provider: str) -> int:
        return sum(1 for seen in self.requests if seen.provider == provider)

    def _next(self, provider: str) -> str:
        with self._lock:
            fixed = self._always[provider]
            if fixed is not None:
                return fixed
            queue = self._scripts[provider]
            return queue.popleft() if queue else "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the second waits for the
            # client's delayed ACK (40 ms on Linux), which no real API edge makes anyone wait.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                provider = ALPHA_VANTAGE if parts.path == "/query" else POLYGON
                with server._lock:
                    server.requests.append(Seen(provider, parts.path, query, dict(self.headers.items())))
                behaviour = server._next(provider)
                if behaviour.startswith("slow:"):
                    time.sleep(float(behaviour.split(":", 1)[1]))
                    behaviour = "ok"
                if provider == POLYGON:
                    status, body, headers = server._polygon(
                        parts.path, query, dict(self.headers.items()), behaviour
                    )
                else:
                    status, body, headers = server._alpha_vantage(query, behaviour)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:  # a client that timed out has hung up: nothing to answer
                    self.send_response(status)
                    self.send_header(
                        "Content-Type", "application/json" if not isinstance(body, bytes) else "text/html"
                    )
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler

    # Polygon -----------------------------------------------------------------------------------

    def _polygon(
        self, path: str, query: dict[str, str], headers: dict[str, str], behaviour: str
    ) -> tuple[int, Any, dict[str, str]]:
        if behaviour == "rate_limit":
            return 429, POLYGON_RATE_LIMIT, {"Retry-After": "1"}
        if behaviour == "server_error":
            return 502, b"<html><body>502 Bad Gateway</body></html>", {}
        if behaviour == "malformed":
            return 200, {"status": "OK", "request_id": "x", "results": {"T": "AAPL", "p": "n/a"}}, {}
        if behaviour == "not_json":
            return 200, b"<html>maintenance</html>", {}
        if behaviour == "forbidden":
            return 403, POLYGON_NOT_AUTHORIZED, {}
        auth = headers.get("Authorization", "")
        if behaviour == "unauthorized" or (
            auth != f"Bearer {POLYGON_KEY}" and query.get("apiKey") != POLYGON_KEY
        ):
            return 401, POLYGON_UNKNOWN_KEY, {}
        match = re.fullmatch(r"/v2/last/trade/([A-Z.\-]+)", path)
        if match:
            return self._polygon_trade(match.group(1), behaviour)
        match = re.fullmatch(r"/v2/aggs/ticker/([A-Z.\-]+)/prev", path)
        if match:
            return self._polygon_prev(match.group(1), behaviour)
        match = re.fullmatch(r"/v2/aggs/ticker/([A-Z.\-]+)/range/1/day/([0-9-]+)/([0-9-]+)", path)
        if match:
            return self._polygon_range(match.group(1), match.group(2), match.group(3), query, behaviour)
        return 404, {"status": "NOT_FOUND", "request_id": "r", "message": "Route not found"}, {}

    def _polygon_trade(self, ticker: str, behaviour: str) -> tuple[int, Any, dict[str, str]]:
        if behaviour == "not_found" or ticker not in LAST_PRICES:
            return 404, {"status": "NOT_FOUND", "request_id": "r", "message": "Data not found."}, {}
        stamp_ns = int(LAST_TRADE_AT.timestamp()) * 1_000_000_000 + LAST_TRADE_AT.microsecond * 1000
        results = {
            "T": ticker,
            "c": [14, 41],
            "i": "71675577320245",
            "p": _raw(LAST_PRICES[ticker]),
            "q": 3135876,
            "s": 100,
            "t": stamp_ns,
            "x": 4,
            "y": stamp_ns - 1_000_000,
            "z": 3,
        }
        return 200, {"request_id": "f05562305bd26ced64b98ed68b3c5d96", "results": results, "status": "OK"}, {}

    def _polygon_prev(self, ticker: str, behaviour: str) -> tuple[int, Any, dict[str, str]]:
        if behaviour == "not_found" or ticker not in LAST_PRICES:
            return 200, {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": True,
                         "status": "OK", "request_id": "r"}, {}  # fmt: skip
        bar = self._polygon_bar(ticker, PREV_DAY, close=LAST_PRICES[ticker])
        body = {"ticker": ticker, "queryCount": 1, "resultsCount": 1, "adjusted": True, "results": [bar],
                "status": "OK", "request_id": "6a7e466379af0a71039d60cc78e72282"}  # fmt: skip
        return 200, body, {}

    def _polygon_range(
        self, ticker: str, since: str, until: str, query: dict[str, str], behaviour: str
    ) -> tuple[int, Any, dict[str, str]]:
        if behaviour == "not_found" or ticker not in LAST_PRICES:
            return 200, {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": True,
                         "status": "OK", "request_id": "r"}, {}  # fmt: skip
        days = list(trading_days(date.fromisoformat(since), date.fromisoformat(until)))
        offset = int(query.get("cursor", "0"))
        page = days[offset : offset + self.page_size]
        body: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": True,
            "results": [self._polygon_bar(ticker, day) for day in page],
            "status": "OK",
            "request_id": "b1d4f7e0c2a3",
            "count": len(page),
        }
        if offset + self.page_size < len(days):
            body["next_url"] = (
                f"{self.url}/v2/aggs/ticker/{ticker}/range/1/day/{since}/{until}"
                f"?cursor={offset + self.page_size}&adjusted=true&sort=asc&limit=50000"
            )
        return 200, body, {}

    @staticmethod
    def _polygon_bar(ticker: str, day: date, *, close: str | None = None) -> dict[str, Any]:
        value = close or close_for(ticker, day)
        return {"T": ticker, "v": 58414460.0, "vw": _raw(value), "o": _raw(value), "c": _raw(value),
                "h": _raw(value), "l": _raw(value), "t": _bar_ms(day), "n": 613431}  # fmt: skip

    # Alpha Vantage -----------------------------------------------------------------------------

    def _alpha_vantage(self, query: dict[str, str], behaviour: str) -> tuple[int, Any, dict[str, str]]:
        if behaviour == "rate_limit":
            return 200, AV_NOTE, {}
        if behaviour == "rate_limit_information":
            return 200, AV_INFORMATION, {}
        if behaviour == "server_error":
            return 503, b"<html><body>503 Service Unavailable</body></html>", {}
        if behaviour == "malformed":
            return 200, {"Global Quote": {"01. symbol": query.get("symbol"), "05. price": "twelve"}}, {}
        if behaviour == "not_json":
            return 200, b"<!DOCTYPE html><html>Cloudflare</html>", {}
        if behaviour == "unauthorized" or query.get("apikey") != ALPHA_VANTAGE_KEY:
            return 200, AV_INVALID_KEY, {}
        symbol = query.get("symbol", "")
        function = query.get("function")
        if function == "GLOBAL_QUOTE":
            if behaviour == "not_found" or symbol not in LAST_PRICES:
                return 200, {"Global Quote": {}}, {}
            price = LAST_PRICES[symbol]
            return 200, {"Global Quote": {
                "01. symbol": symbol, "02. open": price, "03. high": price, "04. low": price,
                "05. price": price, "06. volume": "4019867", "07. latest trading day": PREV_DAY.isoformat(),
                "08. previous close": price, "09. change": "0.0000", "10. change percent": "0.0000%",
            }}, {}  # fmt: skip
        if function == "TIME_SERIES_DAILY":
            if behaviour == "not_found" or symbol not in LAST_PRICES:
                return 200, AV_ERROR, {}
            last = date(2024, 3, 28)
            first = last - timedelta(days=140 if query.get("outputsize") != "full" else 3650)
            series = {
                day.isoformat(): {"1. open": close_for(symbol, day), "2. high": close_for(symbol, day),
                                  "3. low": close_for(symbol, day), "4. close": close_for(symbol, day),
                                  "5. volume": "3302175"}
                for day in sorted(trading_days(first, last), reverse=True)
            }  # fmt: skip
            meta = {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
                    "2. Symbol": symbol, "3. Last Refreshed": last.isoformat(),
                    "4. Output Size": "Compact" if query.get("outputsize") != "full" else "Full size",
                    "5. Time Zone": "US/Eastern"}  # fmt: skip
            return 200, {"Meta Data": meta, "Time Series (Daily)": series}, {}
        return 200, {"Error Message": f"This API function ({function}) does not exist."}, {}


def _raw(text: str) -> float:
    """A price as Polygon sends it: a JSON number. ``json.dumps`` writes a float's shortest text, which
    for these prices is their decimal text, so the client's ``parse_float=Decimal`` gets it exactly."""
    return float(text)
