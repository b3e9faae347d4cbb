"""The chaos workload: investors signing in, moving cash, trading and cancelling through the HTTP API.

Each investor is a thread with its own client, and behaves as a client of a money API must: every
write carries an Idempotency-Key and is retried under that same key, on a dropped connection or a
5xx, until an answer comes or the operation's deadline passes. A write is *acknowledged* when the API
answered it with success; only acknowledged writes are what the verdict later holds the platform to.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

PASSWORD = "chaos: correct horse battery staple"
SYMBOLS = ("AAPL", "MSFT", "JNJ", "KO", "XOM")
OPENING_DEPOSIT = Decimal("20000.00")


@dataclass(frozen=True)
class Ack:
    """One write the API acknowledged: what the verdict must find exactly once."""

    kind: str  # deposit, withdrawal, order, cancel, sign_in
    user_id: str
    portfolio_id: str
    key: str  # the Idempotency-Key (deposits, withdrawals, orders) or the session id (sign-ins)
    ref: str  # the order's id (orders, cancels); "" otherwise
    started: float
    answered: float
    attempts: int


@dataclass
class Tally:
    """What the whole workload did, shared by the investors' threads (appends are atomic)."""

    acks: list[Ack] = field(default_factory=list)
    # Answered with a client error that the request deserved (a withdrawal beyond the cash, a sale of
    # shares not held, a cancel of an order already filled): counted, not a failure of the platform.
    refused: list[str] = field(default_factory=list)
    # Never answered before the operation's deadline: the client cannot know, so these are reported.
    unanswered: list[str] = field(default_factory=list)
    reads: int = 0
    # (investor, started, answered) of every answered write that goes through the investor's shard
    # (cash, orders, cancels), for the recovery after each fault: reads and sign-ins do not, so they
    # would hide a shard still restarting.
    answered_at: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def operations(self) -> int:
        return len(self.acks) + len(self.refused) + len(self.unanswered) + self.reads


class Unanswered(Exception):
    """The operation got no answer it could act on before its deadline."""


class Investor:
    """One person of the workload, with a client of their own and a client address of their own."""

    def __init__(
        self,
        api_url: str,
        tally: Tally,
        *,
        seed: int,
        op_timeout_s: float = 120.0,
    ) -> None:
        self.tally = tally
        self.rng = random.Random(seed)
        self.op_timeout_s = op_timeout_s
        self.http = httpx.Client(base_url=api_url, timeout=15)
        n = uuid.UUID(int=self.rng.getrandbits(128)).int
        self.ip = f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"
        # Unique to this run, whatever the seed: registering an address already taken is answered as a
        # success with an id that is not the account's (the API does not tell who has signed up).
        self.email = f"chaos-{uuid.uuid4().hex[:12]}@example.com"
        self.name = self.email
        self.id = ""
        self.portfolio_id = ""
        self.token = ""
        self.prices: dict[str, Decimal] = {}

    def auth_headers(self) -> dict[str, str]:
        return self._headers(None)

    # The protocol of a careful client -----------------------------------------------------------

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.ip}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def send(
        self, method: str, path: str, *, json: Any = None, key: str | None = None
    ) -> tuple[httpx.Response, int]:
        """The answer to one request, retried (with ``key``, when it has one) until it is not a dropped
        connection, a 5xx or a rate limit; the attempts it took."""
        deadline = time.monotonic() + self.op_timeout_s
        pause = 0.25
        attempts = 0
        while time.monotonic() < deadline:
            attempts += 1
            try:
                answer = self.http.request(method, path, json=json, headers=self._headers(key))
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 429:
                time.sleep(min(float(answer.headers.get("Retry-After", "1") or 1), 10))
                continue
            if answer is not None and answer.status_code < 500:
                return answer, attempts
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        raise Unanswered(f"{method} {path}: no answer in {self.op_timeout_s:.0f} s ({attempts} attempts)")

    def _write(
        self, kind: str, method: str, path: str, body: Any, *, ok: int, ref: str = ""
    ) -> dict[str, Any] | None:
        key = str(uuid.uuid4())
        started = time.monotonic()
        try:
            answer, attempts = self.send(method, path, json=body, key=key)
        except Unanswered as exc:
            self.tally.unanswered.append(f"{self.name} {kind}: {exc}")
            return None
        answered = time.monotonic()
        self.tally.answered_at.append((self.name, started, answered))
        if answer.status_code != ok:
            self.tally.refused.append(f"{kind} {answer.status_code} {_code(answer)}")
            return None
        data: dict[str, Any] = answer.json()["data"] if answer.content else {}
        self.tally.acks.append(
            Ack(
                kind,
                self.id,
                self.portfolio_id,
                key,
                ref or str(data.get("id", "")),
                started,
                answered,
                attempts,
            )
        )
        return data

    # Setting up --------------------------------------------------------------------------------

    def join(self) -> None:
        """Register, sign in, open a portfolio and fund it; raises Unanswered when the platform cannot."""
        created, _ = self.send(
            "POST",
            "/api/v1/auth/register",
            json={"email": self.email, "password": PASSWORD, "full_name": "Chaos Investor"},
        )
        if created.status_code != 201:
            raise Unanswered(f"registration answered {created.status_code}: {created.text[:200]}")
        self.sign_in()
        if not self.token:
            raise Unanswered("the first sign-in was refused")
        opened, _ = self.send("POST", "/api/v1/portfolios", json={"name": "Chaos"}, key=str(uuid.uuid4()))
        if opened.status_code not in (200, 201):
            raise Unanswered(f"opening a portfolio answered {opened.status_code}: {opened.text[:200]}")
        self.portfolio_id = opened.json()["data"]["id"]
        for symbol in SYMBOLS:
            quote, _ = self.send("GET", f"/api/v1/quotes/{symbol}")
            if quote.status_code == 200:
                self.prices[symbol] = Decimal(str(quote.json()["data"]["last"]))
        if (
            self._write(
                "deposit",
                "POST",
                f"/api/v1/portfolios/{self.portfolio_id}/cash",
                {"amount": str(OPENING_DEPOSIT)},
                ok=201,
            )
            is None
        ):
            raise Unanswered("the opening deposit was not acknowledged")

    def sign_in(self) -> None:
        started = time.monotonic()
        answer, attempts = self.send(
            "POST", "/api/v1/auth/login", json={"email": self.email, "password": PASSWORD}
        )
        if answer.status_code != 200:
            self.tally.refused.append(f"sign_in {answer.status_code} {_code(answer)}")
            return
        tokens = answer.json()["data"]
        self.token = tokens["access_token"]
        if not self.id:  # the account signed in to, as the API knows it
            me, _ = self.send("GET", "/api/v1/me")
            if me.status_code != 200:
                raise Unanswered(f"/me answered {me.status_code} after signing in")
            self.id = str(me.json()["data"]["id"])
        self.tally.acks.append(
            Ack(
                "sign_in",
                self.id,
                self.portfolio_id,
                _session_id(self.token),
                "",
                started,
                time.monotonic(),
                attempts,
            )
        )

    # The mix -----------------------------------------------------------------------------------

    def step(self) -> None:
        """One operation, chosen at random in the proportions a busy day might have."""
        roll = self.rng.random()
        cash = f"/api/v1/portfolios/{self.portfolio_id}/cash"
        if roll < 0.25:
            self._write(
                "deposit",
                "POST",
                cash,
                {"amount": f"{self.rng.randint(1, 500)}.{self.rng.randint(0, 99):02d}"},
                ok=201,
            )
        elif roll < 0.35:
            self._write("withdrawal", "POST", cash, {"amount": f"-{self.rng.randint(1, 300)}.00"}, ok=201)
        elif roll < 0.50:
            self._order(side="buy")
        elif roll < 0.58:
            self._order(side="sell")
        elif roll < 0.72:
            self._order_then_cancel()
        elif roll < 0.76:
            self.sign_in()
        else:
            self._read()

    def _order(self, *, side: str) -> None:
        symbol = self.rng.choice(SYMBOLS)
        body = {
            "portfolio_id": self.portfolio_id,
            "symbol": symbol,
            "side": side,
            "quantity": "1",
            "order_type": "market",
        }
        self._write("order", "POST", "/api/v1/trades", body, ok=201)

    def _order_then_cancel(self) -> None:
        symbol = self.rng.choice([s for s in SYMBOLS if s in self.prices] or [SYMBOLS[0]])
        limit = (self.prices.get(symbol, Decimal("100")) * Decimal("0.5")).quantize(Decimal("0.01"))
        body = {
            "portfolio_id": self.portfolio_id,
            "symbol": symbol,
            "side": "buy",
            "quantity": "1",
            "order_type": "limit",
            "limit_price": str(limit),
            "time_in_force": "gtc",
        }
        placed = self._write("order", "POST", "/api/v1/trades", body, ok=201)
        if placed is None:
            return
        self._write("cancel", "DELETE", f"/api/v1/trades/{placed['id']}", None, ok=200, ref=str(placed["id"]))

    def _read(self) -> None:
        path = self.rng.choice(
            (
                f"/api/v1/portfolios/{self.portfolio_id}",
                f"/api/v1/portfolios/{self.portfolio_id}/holdings",
                "/api/v1/trades?limit=20",
            )
        )
        try:
            answer, _ = self.send("GET", path)
        except Unanswered as exc:
            self.tally.unanswered.append(f"{self.name} read: {exc}")
            return
        self.tally.reads += 1
        if answer.status_code != 200:
            self.tally.refused.append(f"read {answer.status_code} {_code(answer)}")

    def run(self, stop: threading.Event, *, pace_s: float, max_operations: int) -> None:
        """Operate until ``stop`` is set or ``max_operations`` are done, about one every ``pace_s``
        (under the standard tier's 60 requests a minute)."""
        for _ in range(max_operations):
            if stop.is_set():
                return
            self.step()
            stop.wait(pace_s * (0.5 + self.rng.random()))

    def close(self) -> None:
        self.http.close()


def _code(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:80]


def _session_id(access_token: str) -> str:
    """The token's session id (``sid``), read without checking the signature: the server did that."""
    import base64
    import json

    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims.get("sid", ""))
