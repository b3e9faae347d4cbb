"""``GET /api/v1/stream``: a WebSocket carrying the signed-in person's events as they happen.

The protocol, in the order a client sees it:

1. The client sends ``{"type": "auth", "token": "<access token>"}`` first (a token in a URL ends up
   in logs), optionally with ``"after": "<last event_id it saw>"`` to resume.
2. The server answers ``{"type": "ready", ...}`` or closes with 4401 (bad, expired or revoked
   token). When resuming it sends what was missed first, then live events; when ``after`` is no
   longer retained it sends ``{"type": "reset"}``: reload what you show, then carry on live.
3. Then ``{"type": "event", "topic", "event_id", "event_type", "occurred_at", "data"}`` for the
   person's own events (an advisor's linked clients' too), each at most once per socket.
   After a change to a portfolio (cash moved, a fill, an edit) the server also sends
   ``{"type": "value", "topic": "portfolio.value", "portfolio_id", "data"}`` with its totals, at
   most once a second per portfolio (a burst of fills ends with one value, the latest). When
   prices are published, each portfolio the socket can see that holds a symbol whose price moved
   gets a fresh value the same way (the prices themselves are not sent).
4. The server sends ``{"type": "ping"}`` every heartbeat; any client message counts as alive
   (``{"type": "pong"}`` is the answer it expects). Two silent heartbeats close with 4408. A client
   may send ``{"type": "ping"}`` and gets a pong. A fresh ``auth`` message replaces the token before
   it expires (the socket closes with 4401 when the token it holds expires).

A socket that falls ``stream_queue_size`` events behind, or cannot take a message within the send
timeout, is closed with 4429; a sign-out or revocation of its session closes it with 4401 within
``stream_auth_check_seconds`` on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from actors.portfolio_shard import PortfolioShard
from serve_apps.api.deps import user_generation
from serve_apps.api.resources import Resources
from wealthalloc.accounts.errors import AccountError
from wealthalloc.events.fanout import (
    HEARTBEAT_TIMEOUT,
    MARKET_EVENT_TYPES,
    PROTOCOL_ERROR,
    SLOW_CONSUMER,
    UNAUTHORIZED,
    Seen,
    Subscription,
    Throttle,
    replay_after,
)
from wealthalloc.events.relay import Event
from wealthalloc.logging import get_logger
from wealthalloc.security.access import Principal, Role
from wealthalloc.security.rate_limits import user_generation_key

log = get_logger(__name__)

router = APIRouter(tags=["stream"])

SEND_TIMEOUT_S = 5.0
MAX_CLIENT_MESSAGE = 16_384
CLIENTS_RECHECK_S = 30.0
VALUE_INTERVAL_S = 1.0
VALUED_TOPICS = frozenset({"portfolio.updates", "trades.executed"})
VALUE_FIELDS = (
    "name",
    "as_of",
    "total_value",
    "invested_value",
    "day_change",
    "total_gain_loss",
    "cash_balance",
    "available_cash",
    "buying_power",
)


class StreamClosed(Exception):
    """Why a socket is being closed: a close code of the protocol and a reason a person can read."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@router.websocket("/api/v1/stream")
async def stream(websocket: WebSocket) -> None:
    res: Resources = websocket.app.state.resources
    await websocket.accept()
    res.metrics.stream_sockets.inc()
    try:
        await _serve(res, websocket)
    except StreamClosed as closed:
        res.metrics.stream_closed.labels(str(closed.code)).inc()
        log.info("stream_closed", code=closed.code, reason=closed.reason)
        with contextlib.suppress(Exception):
            await websocket.close(code=closed.code, reason=closed.reason[:120])
    except WebSocketDisconnect:
        pass
    finally:
        res.metrics.stream_sockets.dec()


async def _serve(res: Resources, websocket: WebSocket) -> None:
    settings = res.settings
    first = await _first_message(websocket, settings.stream_auth_timeout_seconds)
    token, principal, expires_at = await _authenticate(res, first)
    generation = await user_generation(res, principal.user_id)
    users = await _audience(res, principal)
    hub = res.stream_hub()
    sub = hub.subscribe(
        users,
        queue_size=settings.stream_queue_size,
        watch_key=user_generation_key(principal.user_id),
        watch_value=generation,
    )
    try:
        ready = {"type": "ready", "user_id": str(principal.user_id), "users": sorted(map(str, users))}
        await _send(websocket, ready)
        connection = _Connection(res, websocket, sub, principal, token, expires_at, users)
        if first.get("after") is not None:
            await connection.catch_up(first["after"])
        await connection.run()
    finally:
        hub.unsubscribe(sub)


class _Connection:
    """The live part of one socket: events out, heartbeats, the client's messages and its session."""

    def __init__(
        self,
        res: Resources,
        websocket: WebSocket,
        sub: Subscription,
        principal: Principal,
        token: str,
        expires_at: datetime,
        users: frozenset[uuid.UUID],
    ) -> None:
        self.res = res
        self.websocket = websocket
        self.sub = sub
        self.principal = principal
        self.token = token
        self.expires_at = expires_at
        self.users = users
        self.seen = Seen()
        self.values = Throttle(min_interval_s=VALUE_INTERVAL_S)
        self.owners: dict[uuid.UUID, uuid.UUID] = {}
        # The symbols each visible portfolio held at its last valuation; None until a market move
        # first needs them (most sockets never see one, so they cost no read at connect).
        self.holdings: dict[uuid.UUID, frozenset[str]] | None = None
        self.heard_at = time.monotonic()
        self.clients_checked_at = time.monotonic()

    async def run(self) -> None:
        tasks: list[asyncio.Future[Any]] = [
            asyncio.create_task(self._events()),
            asyncio.create_task(self._client()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._session()),
        ]
        closing: asyncio.Future[Any] = self.sub.closing
        try:
            done, _ = await asyncio.wait([*tasks, closing], return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                code, reason = closing.result()
                raise StreamClosed(code, reason)
            for task in done:
                task.result()  # re-raises StreamClosed / WebSocketDisconnect
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def catch_up(self, after: Any) -> None:
        """Send what was published after event ``after`` (a resume), or a reset when it is gone."""
        missed = await _replay(self.res, self.users, after)
        if missed is None:
            await _send(self.websocket, {"type": "reset", "reason": "after_not_retained"})
            return
        self.seen.add(uuid.UUID(str(after)))
        for event in missed:
            await self.deliver(event)

    async def deliver(self, event: Event) -> None:
        """Send ``event`` once; a change to a portfolio then pushes its value (throttled)."""
        if event.user_id is None:
            if event.type in MARKET_EVENT_TYPES:
                await self._revalue(event)
            return
        if not self.seen.add(event.id):
            return
        await _send_event(self.websocket, event)
        portfolio_id = _portfolio_of(event)
        if portfolio_id is not None and event.user_id is not None and event.topic in VALUED_TOPICS:
            self.owners[portfolio_id] = event.user_id
            if self.values.request(portfolio_id):
                await self._send_value(portfolio_id)

    async def _events(self) -> None:
        queue = self.sub.queue
        while True:
            wait_s = self.values.next_due_in()
            try:
                event = await (queue.get() if wait_s is None else asyncio.wait_for(queue.get(), wait_s))
            except TimeoutError:
                pass
            else:
                await self.deliver(event)
            for portfolio_id in self.values.due():
                await self._send_value(portfolio_id)  # type: ignore[arg-type]

    async def _revalue(self, event: Event) -> None:
        """Prices moved: push a value for each visible portfolio holding one of the moved symbols."""
        moved = {str(symbol) for symbol in event.payload.get("symbols") or ()}
        if self.holdings is None:
            self.holdings = await self._visible_holdings()
        for portfolio_id, held in self.holdings.items():
            if held & moved and self.values.request(portfolio_id):
                await self._send_value(portfolio_id)

    async def _visible_holdings(self) -> dict[uuid.UUID, frozenset[str]]:
        holdings: dict[uuid.UUID, frozenset[str]] = {}
        for user_id in self.users:
            try:
                portfolios = await self.res.shards.call(user_id, PortfolioShard.portfolios, user_id)
            except Exception as exc:  # the shard is moving: this user's portfolios wait for a change
                log.info("stream_portfolios_unavailable", user_id=str(user_id), error=str(exc))
                continue
            for portfolio in portfolios:
                portfolio_id = uuid.UUID(str(portfolio["id"]))
                self.owners[portfolio_id] = user_id
                holdings[portfolio_id] = _symbols_of(portfolio)
        return holdings

    async def _send_value(self, portfolio_id: uuid.UUID) -> None:
        owner = self.owners[portfolio_id]
        try:
            snapshot = await self.res.shards.call(owner, PortfolioShard.snapshot, owner, portfolio_id)
        except Exception as exc:  # deleted meanwhile, or the shard is moving: the next change tells
            log.info("stream_value_unavailable", portfolio_id=str(portfolio_id), error=str(exc))
            return
        if self.holdings is not None:
            self.holdings[portfolio_id] = _symbols_of(snapshot)
        data = {key: snapshot.get(key) for key in VALUE_FIELDS}
        await _send(
            self.websocket,
            {"type": "value", "topic": "portfolio.value", "portfolio_id": str(portfolio_id), "data": data},
        )

    async def _client(self) -> None:
        while True:
            text = await self.websocket.receive_text()
            self.heard_at = time.monotonic()
            message = _parse(text)
            kind = message.get("type")
            if kind == "pong":
                continue
            if kind == "ping":
                await _send(self.websocket, {"type": "pong"})
            elif kind == "auth":
                token, principal, expires_at = await _authenticate(self.res, message)
                if principal.user_id != self.principal.user_id:
                    raise StreamClosed(UNAUTHORIZED, "a socket stays with the person who opened it")
                self.token, self.principal, self.expires_at = token, principal, expires_at
                renewed = {"type": "ready", "user_id": str(principal.user_id), "renewed": True}
                await _send(self.websocket, renewed)
            else:
                raise StreamClosed(PROTOCOL_ERROR, f"unknown message type {kind!r}")

    async def _heartbeat(self) -> None:
        interval = self.res.settings.stream_heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.heard_at > 2 * interval:
                raise StreamClosed(HEARTBEAT_TIMEOUT, "no answer to two heartbeats")
            await _send(self.websocket, {"type": "ping"})

    async def _session(self) -> None:
        """Close on a revoked session (the hub wakes us when the user's generation moves) or an
        expired token; follow an advisor's client list as links are made and ended."""
        check_s = self.res.settings.stream_auth_check_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sub.changed.wait(), check_s)
            if datetime.now(UTC) >= self.expires_at:
                raise StreamClosed(UNAUTHORIZED, "token_expired: send a fresh auth message before expiry")
            changed = self.sub.changed.is_set()
            self.sub.changed.clear()
            due = time.monotonic() - self.clients_checked_at >= CLIENTS_RECHECK_S
            if changed or due:
                self.clients_checked_at = time.monotonic()
                try:
                    self.principal = await self.res.accounts.authenticate_bearer(self.token)
                except AccountError as exc:
                    raise StreamClosed(UNAUTHORIZED, str(exc.details.get("reason", "session_ended"))) from exc
                users = await _audience(self.res, self.principal)
                if users != self.users:
                    self.users = users
                    self.res.stream_hub().retarget(self.sub, users)


async def _first_message(websocket: WebSocket, timeout_s: float) -> dict[str, Any]:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), timeout_s)
    except TimeoutError as exc:
        raise StreamClosed(UNAUTHORIZED, "no auth message in time") from exc
    except KeyError as exc:  # a binary frame
        raise StreamClosed(PROTOCOL_ERROR, "messages are JSON text") from exc
    message = _parse(text)
    if message.get("type") != "auth":
        raise StreamClosed(UNAUTHORIZED, 'the first message must be {"type": "auth", "token": ...}')
    return message


def _parse(text: str) -> dict[str, Any]:
    if len(text) > MAX_CLIENT_MESSAGE:
        raise StreamClosed(PROTOCOL_ERROR, "message too large")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise StreamClosed(PROTOCOL_ERROR, "messages are JSON objects") from exc
    if not isinstance(message, dict):
        raise StreamClosed(PROTOCOL_ERROR, "messages are JSON objects")
    return message


async def _authenticate(res: Resources, message: dict[str, Any]) -> tuple[str, Principal, datetime]:
    token = message.get("token")
    if not isinstance(token, str) or not token.strip():
        raise StreamClosed(UNAUTHORIZED, "credentials_missing")
    token = token.strip()
    try:
        claims = res.accounts.verify_bearer(token)
        principal = await res.accounts.authenticate_bearer(token, claims)
    except AccountError as exc:
        raise StreamClosed(UNAUTHORIZED, str(exc.details.get("reason", "unauthorized"))) from exc
    return token, principal, claims.expires_at


async def _audience(res: Resources, principal: Principal) -> frozenset[uuid.UUID]:
    """Whose events this person may see: their own, and an advisor's linked clients'."""
    users = {principal.user_id}
    if principal.role is Role.ADVISOR:
        for link in await res.accounts.advisor_links(principal):
            if link["advisor_id"] == principal.user_id:
                users.add(link["client_id"])
    return frozenset(users)


async def _replay(res: Resources, users: Iterable[uuid.UUID], after: Any) -> list[Event] | None:
    try:
        after_id = uuid.UUID(str(after))
    except ValueError as exc:
        raise StreamClosed(PROTOCOL_ERROR, "after must be an event id") from exc
    assert res.redis is not None
    try:
        return await replay_after(res.redis, users, after_id)
    except Exception as exc:  # Redis away: the client cannot be brought up to date from the streams
        log.warning("stream_replay_failed", error=str(exc))
        return None


def _symbols_of(portfolio: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(h["symbol"]) for h in portfolio.get("holdings") or ())


def _portfolio_of(event: Event) -> uuid.UUID | None:
    raw = event.payload.get("portfolio_id")
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


async def _send_event(websocket: WebSocket, event: Event) -> None:
    await _send(
        websocket,
        {
            "type": "event",
            "topic": event.topic,
            "event_id": str(event.id),
            "event_type": event.type,
            "user_id": str(event.user_id) if event.user_id else None,
            "occurred_at": event.occurred_at.isoformat(),
            "data": dict(event.payload),
        },
    )


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    try:
        await asyncio.wait_for(websocket.send_text(json.dumps(message, default=str)), SEND_TIMEOUT_S)
    except TimeoutError as exc:
        raise StreamClosed(SLOW_CONSUMER, "slow consumer: a message could not be sent in time") from exc
