"""``IbkrBroker``: orders, fills and market data through an IB Gateway (or TWS).

The broker keeps a small pool of API connections with consecutive client ids.
Orders always go through the first one, because TWS ties an order (its id, its
status messages, a cancel) to the client id that placed it; the others carry
market data so that a burst of quotes never delays an order.

Every connection is supervised the same way: connect, then ask the gateway
for its clock every ``ib_heartbeat_seconds``; a heartbeat that times out or a
socket the gateway closes marks the connection dead, and it is reconnected
after an exponential backoff. Failed connects and heartbeats of the order
connection feed a circuit breaker: while it is open ``place`` fails at once
with ``BrokerUnavailable`` instead of making a user wait for a timeout, and
``health()`` says ``down`` with the reason.

An order is resent only when it provably never left this process (the
connection was down when it was to be written). Once written, a lost
connection makes its outcome unknown: it is never sent again; after the
reconnect the broker looks for its ``orderRef`` (our order id) among the
gateway's open and completed orders, and reconciliation settles the rest.

Reconciliation runs after every reconnect: the gateway's open orders,
completed orders, executions (with their commission reports) and positions
are compared with the platform's open orders, and every execution and final
state of those orders goes to the sink. A fill carries IB's execId in its
``fill_id``, so the shard applies it once however often it hears of it.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from wealthalloc.brokers.base import (
    BrokerHealth,
    BrokerSink,
    BrokerUnavailable,
    OrderRejected,
    Reconciliation,
)
from wealthalloc.brokers.circuit import Backoff, CircuitBreaker
from wealthalloc.brokers.ib_client import load_ib
from wealthalloc.config import Settings
from wealthalloc.domain.money import SHARES, money, price
from wealthalloc.logging import get_logger
from wealthalloc.trading.tickets import Execution, StatusChange, Ticket

log = get_logger(__name__)

OpenTickets = Callable[[], Awaitable[Sequence[Ticket]]]
Role = Literal["orders", "data"]

# IB error codes after which an order is dead at the gateway (it never became live).
ORDER_REJECT_CODES = frozenset(
    {
        103,  # duplicate order id
        104,  # cannot modify a filled order
        110,  # price does not conform to the minimum price variation
        200,  # no security definition
        201,  # order rejected
        203,  # security not available or not allowed for this account
        321,  # error validating the request
        382,  # size exceeds the limit
        383,  # size exceeds the limit
        387,  # unsupported order type for this exchange and security
        388,  # size below the minimum
        434,  # order size cannot be zero
    }
)
ORDER_CANCEL_CODES = frozenset({202})  # cancelled by the gateway, with its reason
ACKNOWLEDGED = frozenset({"PreSubmitted", "Submitted", "ApiPending", "Filled", "PendingCancel"})
CANCELLED = frozenset({"Cancelled", "ApiCancelled"})
INACTIVE = "Inactive"
CENT = Decimal("0.01")
ORDER_TYPES = {"market": "MKT", "limit": "LMT", "stop": "STP", "stop_limit": "STP LMT"}
BAR_SIZES = {
    "1m": "1 min",
    "5m": "5 mins",
    "15m": "15 mins",
    "30m": "30 mins",
    "1h": "1 hour",
    "1d": "1 day",
    "1wk": "1 week",
    "1w": "1 week",
}
TRACKED_TICKETS = 10_000


class _Lost(Exception):
    """The order connection went away after the order was written."""


@dataclass(frozen=True)
class _Delivery:
    """One thing for the sink, in the order it happened."""

    ticket: Ticket
    execution: Execution | None = None
    change: StatusChange | None = None


class _Connection:
    """One client id: connects, keeps a heartbeat, and reconnects with backoff until closed."""

    def __init__(self, broker: IbkrBroker, ib_module: Any, client_id: int, role: Role) -> None:
        self.broker = broker
        self.client_id = client_id
        self.role = role
        self.ib: Any = ib_module.IB()
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self.first_attempt = asyncio.Event()
        self.keyed_requests = asyncio.Lock()
        self.stopping = False
        self.last_error: str | None = None
        self.connects = 0
        self.task: asyncio.Task[None] | None = None
        self.ib.disconnectedEvent += self._on_disconnected

    @property
    def up(self) -> bool:
        return self.ready.is_set() and bool(self.ib.isConnected())

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "role": self.role,
            "up": self.up,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    def _on_disconnected(self) -> None:
        # Synchronous, so no order can be written to a socket already known dead.
        self.ready.clear()
        self.lost.set()
        self.broker._connection_lost(self)

    async def run(self) -> None:
        settings = self.broker.settings
        backoff = Backoff(
            settings.ib_reconnect_initial_seconds, settings.ib_reconnect_max_seconds, jitter=0.2
        )
        while not self.stopping:
            await self.broker._wait_for_trial(self)
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.first_attempt.set()
                self.last_error = _describe(exc)
                self.broker._connect_failed(self, self.last_error)
                await asyncio.sleep(backoff.next())
                continue
            if self.stopping:
                break
            backoff.reset()
            self.connects += 1
            self.last_error = None
            self.ready.set()
            self.first_attempt.set()
            self.broker._connected(self)
            reason, heartbeat_failed = await self._watch()
            self.ready.clear()
            if self.stopping:
                break
            self.last_error = reason
            self.broker._connection_dead(self, reason, heartbeat_failed)
            await asyncio.sleep(backoff.next())

    async def _connect(self) -> None:
        settings = self.broker.settings
        self.lost.clear()
        await self.ib.connectAsync(
            settings.ib_host,
            settings.ib_port,
            clientId=self.client_id,
            timeout=settings.ib_request_timeout_seconds,
            readonly=self.role == "data",
            account=settings.ib_account,
        )

    async def _watch(self) -> tuple[str, bool]:
        """Wait until the connection is dead; why, and whether a heartbeat found it so."""
        settings = self.broker.settings
        while not self.stopping:
            try:
                await asyncio.wait_for(self.lost.wait(), settings.ib_heartbeat_seconds)
                return "connection closed by the gateway", False
            except TimeoutError:
                pass
            try:
                await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), settings.ib_request_timeout_seconds)
            except (TimeoutError, ConnectionError) as exc:
                if self.lost.is_set():
                    return "connection closed by the gateway", False
                self.ib.disconnect()
                return f"heartbeat failed: {_describe(exc)}", True
        return "stopped", False

    async def stop(self) -> None:
        self.stopping = True
        self.lost.set()
        if self.task is not None:
            await _finish(self.task)
        self.ready.clear()
        self.ib.disconnectedEvent -= self._on_disconnected
        self.ib.disconnect()


class IbkrBroker:
    """The ``Broker`` of base.py on Interactive Brokers, plus market data when IBKR is the provider."""

    name = "ibkr"

    def __init__(
        self,
        settings: Settings,
        sink: BrokerSink,
        open_tickets: OpenTickets,
        *,
        library: str | None = None,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._open_tickets = open_tickets
        self._ib = load_ib(library)
        self.library: str = self._ib.__name__
        self._breaker = CircuitBreaker(settings.ib_breaker_failures, settings.ib_reconnect_max_seconds)
        self._connections = [
            _Connection(self, self._ib, settings.ib_client_id + index, "orders" if index == 0 else "data")
            for index in range(settings.ib_pool_size)
        ]
        self._orders = self._connections[0]
        self._orders.ib.commissionReportEvent += self._on_commission_report
        self._orders.ib.orderStatusEvent += self._on_order_status
        self._orders.ib.errorEvent += self._on_error
        self._contracts: dict[str, Any] = {}
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._placing: set[str] = set()
        self._delivered_fills: set[str] = set()
        self._reported: dict[str, str] = {}
        self._deliveries: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivery_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Connect the pool; returns once every connection had its first try, connected or not."""
        if self._started or self._closed:
            return
        self._delivery_task = asyncio.create_task(self._deliver_forever(), name="ibkr-deliveries")
        for conn in self._connections:
            conn.task = asyncio.create_task(conn.run(), name=f"ibkr-connection-{conn.client_id}")
        await asyncio.gather(*(conn.first_attempt.wait() for conn in self._connections))
        self._started = True
        health = self.health()
        log.info(
            "ibkr_started", library=self.library, status=health.status, reason=health.detail.get("reason")
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._connections:
            await conn.stop()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_Lost())  # written, outcome unknown: reconciliation settles it
        await self._drain_deliveries()
        for task in [*self._tasks, self._delivery_task]:
            if task is not None:
                await _finish(task)
        self._notify()
        log.info("ibkr_closed")

    async def _drain_deliveries(self, timeout: float = 2.0) -> None:
        if self._delivery_task is None or self._delivery_task.done():
            return
        try:
            await asyncio.wait_for(self._deliveries.join(), timeout)
        except TimeoutError:
            log.warning("ibkr_deliveries_left", count=self._deliveries.qsize())

    # -- health ------------------------------------------------------------

    def health(self) -> BrokerHealth:
        up = [conn for conn in self._connections if conn.up]
        detail: dict[str, Any] = {
            "broker": self.name,
            "library": self.library,
            "gateway": f"{self.settings.ib_host}:{self.settings.ib_port}",
            "connections": [conn.describe() for conn in self._connections],
            "breaker": self._breaker.describe(),
        }
        if self._closed:
            return BrokerHealth("down", {**detail, "reason": "closed"})
        if self._breaker.state != "closed":
            reason = (
                f"circuit breaker {self._breaker.state} after {self._breaker.failures} consecutive failures"
                f": {self._breaker.last_error}"
            )
            return BrokerHealth("down", {**detail, "reason": reason})
        if not up:
            last = self._orders.last_error or "not connected yet"
            return BrokerHealth("down", {**detail, "reason": f"no connection to the gateway: {last}"})
        if len(up) < len(self._connections):
            down = [conn.client_id for conn in self._connections if not conn.up]
            return BrokerHealth("degraded", {**detail, "reason": f"client ids {down} disconnected"})
        return BrokerHealth("healthy", detail)

    # -- connection events -------------------------------------------------

    async def _wait_for_trial(self, conn: _Connection) -> None:
        """The order connection waits out an open breaker; its reconnect is then the half-open trial."""
        if conn is not self._orders:
            return
        while self._breaker.state == "open":
            await asyncio.sleep(self._breaker.seconds_until_trial())

    def _connected(self, conn: _Connection) -> None:
        log.info("ibkr_connected", client_id=conn.client_id, role=conn.role, connects=conn.connects)
        if conn is self._orders:
            self._breaker.record_success()
            if self._started:
                self._spawn(self._reconcile_and_deliver(), "ibkr-reconcile")
        self._notify()

    def _connect_failed(self, conn: _Connection, error: str) -> None:
        if conn is self._orders:
            self._breaker.record_failure(f"connect failed: {error}")
        log.warning(
            "ibkr_connect_failed",
            client_id=conn.client_id,
            role=conn.role,
            error=error,
            breaker=self._breaker.state,
        )
        self._notify()

    def _connection_lost(self, conn: _Connection) -> None:
        if conn is self._orders:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_Lost())
        self._notify()

    def _connection_dead(self, conn: _Connection, reason: str, heartbeat_failed: bool) -> None:
        if conn is self._orders and heartbeat_failed:
            self._breaker.record_failure(reason)
        log.warning("ibkr_connection_lost", client_id=conn.client_id, role=conn.role, reason=reason)
        self._notify()

    def _notify(self) -> None:
        """Wake everything waiting for a change of connection state."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_orders_ready(self, deadline: float) -> bool:
        """Wait for the order connection until ``deadline`` (loop time); an open breaker ends the wait."""
        loop = asyncio.get_running_loop()
        while not self._orders.up:
            self._refuse_if_unavailable()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return self._orders.up
        return True

    def _refuse_if_unavailable(self) -> None:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        if self._breaker.state != "closed":
            raise BrokerUnavailable(str(self.health().detail["reason"]))

    # -- orders ------------------------------------------------------------

    async def place(self, ticket: Ticket) -> str:
        """Send the order; resent only while it provably never reached the gateway."""
        self._refuse_if_unavailable()
        ref = str(ticket.order_id)
        known = self._trade(ref, include_done=True)
        if known is not None:
            # One order per ticket at the gateway, however often we are asked.
            known_id = str(known.order.orderId or known.order.permId)
            log.info(
                "ibkr_place_known_order", order_ref=ref, order_id=known_id, status=known.orderStatus.status
            )
            return known_id
        order = self._ib_order(ticket)
        self._remember(ticket)
        self._placing.add(ref)
        try:
            return await self._send(ticket, order)
        finally:
            self._placing.discard(ref)

    async def _send(self, ticket: Ticket, order: Any) -> str:
        """Write the order once the connection is up; try again only while nothing was written."""
        ref = str(ticket.order_id)
        timeout = self.settings.ib_request_timeout_seconds
        deadline = asyncio.get_running_loop().time() + timeout
        tries = 0
        for attempt in range(self.settings.ib_order_retries + 1):
            if not await self._wait_orders_ready(deadline):
                break
            tries += 1
            try:
                contract = await self._qualified(ticket.symbol, self._orders)
                trade = self._orders.ib.placeOrder(contract, order)
            except (ConnectionError, TimeoutError) as exc:
                # Raised before the order was written to the socket: it provably did not leave.
                log.info("ibkr_place_not_sent", order_ref=ref, attempt=attempt + 1, error=_describe(exc))
                continue
            log.info("ibkr_order_sent", order_ref=ref, order_id=trade.order.orderId, attempt=attempt + 1)
            return await self._acknowledged(ticket, trade)
        raise BrokerUnavailable(
            f"order {ref} not sent: no usable connection to the gateway within {timeout:g} s ({tries} tries)"
        )

    def _ib_order(self, ticket: Ticket) -> Any:
        """The IB order for a ticket; what IB would refuse anyway is refused here, before sending."""
        quantity = ticket.remaining
        if quantity <= 0:
            raise OrderRejected(f"nothing left to fill of {quantity} shares")
        order_type = ORDER_TYPES[ticket.order_type]
        protected = ticket.side == "buy" and ticket.order_type in ("market", "stop") and ticket.price_cap
        if protected:
            # Price protection: a market (or stop) buy goes out as a marketable limit at its cap (on the
            # cent below), so no fill costs more than the cash the order set aside; above the cap it waits.
            order_type = "LMT" if ticket.order_type == "market" else "STP LMT"
        order = self._ib.Order(
            action="BUY" if ticket.side == "buy" else "SELL",
            totalQuantity=float(quantity),
            orderType=order_type,
            tif="GTC" if ticket.time_in_force == "gtc" else "DAY",
            orderRef=str(ticket.order_id),
            account=self.settings.ib_account,
            transmit=True,
        )
        if ticket.order_type in ("limit", "stop_limit"):
            if ticket.limit_price is None:
                raise OrderRejected(f"a {ticket.order_type} order needs a limit price")
            order.lmtPrice = float(ticket.limit_price)
        if ticket.order_type in ("stop", "stop_limit"):
            if ticket.stop_price is None:
                raise OrderRejected(f"a {ticket.order_type} order needs a stop price")
            order.auxPrice = float(ticket.stop_price)
        if protected and ticket.price_cap is not None:
            order.lmtPrice = float(ticket.price_cap.quantize(CENT, rounding=ROUND_DOWN))
        return order

    async def _acknowledged(self, ticket: Ticket, trade: Any) -> str:
        """Wait for the gateway to accept or reject a written order; its id either way it is not refused."""
        ref = str(ticket.order_id)
        order_id = str(trade.order.orderId)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await asyncio.wait_for(asyncio.shield(future), self.settings.ib_request_timeout_seconds)
        except _Lost:
            return await self._find_after_reconnect(ref, order_id)
        except TimeoutError:
            log.warning("ibkr_order_unacknowledged", order_ref=ref, order_id=order_id)
        finally:
            self._pending.pop(ref, None)
        return order_id

    async def _find_after_reconnect(self, ref: str, order_id: str) -> str:
        """The order was written and the connection died: never resend, look for it once reconnected."""
        log.warning("ibkr_connection_lost_after_send", order_ref=ref, order_id=order_id)
        deadline = asyncio.get_running_loop().time() + self.settings.ib_request_timeout_seconds
        try:
            ready = await self._wait_orders_ready(deadline)
        except BrokerUnavailable:
            ready = False
        found = self._trade(ref, include_done=True) if ready else None
        if found is None:
            log.warning("ibkr_order_outcome_unknown", order_ref=ref, order_id=order_id, reconnected=ready)
        else:
            log.info("ibkr_order_found_after_reconnect", order_ref=ref, status=found.orderStatus.status)
        return order_id

    async def cancel(self, ticket: Ticket) -> None:
        """Ask the gateway to cancel; the outcome arrives at the sink as a status change."""
        self._refuse_if_unavailable()
        if not self._orders.up:
            raise BrokerUnavailable("no connection to the gateway")
        ref = str(ticket.order_id)
        if ref in self._placing:
            # Not written yet, or written and not acknowledged: a cancel now could miss it.
            raise BrokerUnavailable(f"order {ref} is still being sent; cancel it once placed")
        self._remember(ticket)
        trade = self._trade(ref, include_done=True)
        if trade is not None and trade.isDone():
            log.info("ibkr_cancel_done_order", order_ref=ref, status=trade.orderStatus.status)
            return
        if trade is not None and trade.order.orderId > 0:
            self._orders.ib.cancelOrder(trade.order)
        elif ticket.broker_order_id and ticket.broker_order_id.isdigit():
            self._orders.ib.client.cancelOrder(int(ticket.broker_order_id))
        else:
            log.info("ibkr_cancel_unknown_order", order_ref=ref)
            self._enqueue_status(ticket, "cancelled", None, "not at the broker")
            return
        log.info("ibkr_cancel_sent", order_ref=ref)

    def _trade(self, ref: str, *, include_done: bool = False) -> Any | None:
        """The order connection's trade for one of our orders, live ones first."""
        done = None
        for trade in self._orders.ib.trades():
            if trade.order.orderRef != ref:
                continue
            if not trade.isDone():
                return trade
            done = trade
        return done if include_done else None

    def _remember(self, ticket: Ticket) -> None:
        ref = str(ticket.order_id)
        self._tickets[ref] = ticket
        self._tickets.move_to_end(ref)
        while len(self._tickets) > TRACKED_TICKETS:
            self._tickets.popitem(last=False)

    async def _qualified(self, symbol: str, conn: _Connection) -> Any:
        """``Stock(symbol, "SMART", "USD")`` with its conId from the gateway, asked once per symbol."""
        contract = self._contracts.get(symbol)
        if contract is not None:
            return contract
        contract = self._ib.Stock(symbol, "SMART", "USD")
        await asyncio.wait_for(
            conn.ib.qualifyContractsAsync(contract), self.settings.ib_request_timeout_seconds
        )
        if not contract.conId:
            if not conn.up:
                raise ConnectionError("connection lost while qualifying the contract")
            raise OrderRejected(f"unknown symbol {symbol}")
        self._contracts[symbol] = contract
        return contract

    # -- what the gateway says about orders --------------------------------

    def _on_commission_report(self, trade: Any, fill: Any, report: Any) -> None:
        ref = fill.execution.orderRef or trade.order.orderRef
        ticket = self._tickets.get(ref)
        if ticket is None:
            log.info("ibkr_execution_untracked", order_ref=ref, exec_id=fill.execution.execId)
            return
        self._enqueue_execution(ticket, self._execution(ticket, fill, report))

    def _on_order_status(self, trade: Any) -> None:
        ref = trade.order.orderRef
        status = trade.orderStatus.status
        pending = self._pending.get(ref)
        last_error = trade.log[-1].errorCode if trade.log else 0
        if pending is not None and not pending.done() and status in ACKNOWLEDGED:
            pending.set_result(status)
        if status in CANCELLED and not last_error:
            self._final_status(trade, "cancelled", "cancelled at the broker")
        elif status == INACTIVE:
            reason = (trade.log[-1].message if trade.log else "") or "order inactive at the gateway"
            self._final_status(trade, "rejected", reason)

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if req_id <= 0 or (code not in ORDER_REJECT_CODES and code not in ORDER_CANCEL_CODES):
            return
        trade = next(
            (
                t
                for t in self._orders.ib.trades()
                if t.order.orderId == req_id and t.order.clientId == self._orders.client_id
            ),
            None,
        )
        if trade is None:
            return
        if code in ORDER_CANCEL_CODES:
            self._final_status(trade, "cancelled", message)
        else:
            self._final_status(trade, "rejected", f"{message} (IB error {code})")

    def _final_status(self, trade: Any, status: Literal["cancelled", "rejected"], reason: str) -> None:
        """A dead order: the pending ``place`` hears of a rejection, otherwise the sink does."""
        ref = trade.order.orderRef
        pending = self._pending.get(ref)
        if status == "rejected" and pending is not None and not pending.done():
            pending.set_exception(OrderRejected(reason))
            self._reported[ref] = status
            return
        ticket = self._tickets.get(ref)
        if ticket is not None:
            self._enqueue_status(ticket, status, str(trade.order.orderId or "") or None, reason)

    def _execution(self, ticket: Ticket, fill: Any, report: Any) -> Execution:
        execution = fill.execution
        return Execution(
            fill_id=f"ib:{execution.execId}",
            order_id=ticket.order_id,
            quantity=_decimal(execution.shares).quantize(SHARES),
            price=price(_decimal(execution.price)),
            commission=money(_decimal(report.commission)),
            executed_at=_utc(execution.time),
            broker_exec_id=execution.execId,
        )

    # -- delivery to the sink ----------------------------------------------

    def _enqueue_execution(self, ticket: Ticket, execution: Execution) -> None:
        if execution.fill_id in self._delivered_fills:
            return
        self._delivered_fills.add(execution.fill_id)
        self._deliveries.put_nowait(_Delivery(ticket, execution=execution))

    def _enqueue_status(
        self,
        ticket: Ticket,
        status: Literal["cancelled", "rejected", "expired"],
        broker_order_id: str | None,
        reason: str | None,
    ) -> None:
        ref = str(ticket.order_id)
        if self._reported.get(ref) == status:
            return
        self._reported[ref] = status
        change = StatusChange(ticket.order_id, status, broker_order_id or ticket.broker_order_id, reason)
        self._deliveries.put_nowait(_Delivery(ticket, change=change))

    async def _deliver_forever(self) -> None:
        while True:
            delivery = await self._deliveries.get()
            try:
                await self._deliver(delivery)
            finally:
                self._deliveries.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        try:
            if delivery.execution is not None:
                await self._sink.execution(delivery.ticket, delivery.execution)
            elif delivery.change is not None:
                await self._sink.status_change(delivery.ticket, delivery.change)
        except Exception as exc:
            # Undelivered: the next reconciliation offers it again.
            if delivery.execution is not None:
                self._delivered_fills.discard(delivery.execution.fill_id)
            if delivery.change is not None:
                self._reported.pop(str(delivery.ticket.order_id), None)
            log.warning("ibkr_sink_failed", order_id=str(delivery.ticket.order_id), error=_describe(exc))

    # -- reconciliation ----------------------------------------------------

    async def reconcile(self, open_tickets: Sequence[Ticket]) -> Reconciliation:
        """Executions and final states of these orders at the gateway, and its positions."""
        if not self._orders.up:
            raise BrokerUnavailable("no connection to the gateway")
        ib = self._orders.ib
        timeout = self.settings.ib_request_timeout_seconds
        try:
            async with self._orders.keyed_requests:
                open_trades = await asyncio.wait_for(ib.reqAllOpenOrdersAsync(), timeout)
                completed = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), timeout)
                await asyncio.wait_for(ib.reqExecutionsAsync(), timeout)
                positions = await asyncio.wait_for(ib.reqPositionsAsync(), timeout)
        except (TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailable(f"reconciliation interrupted: {_describe(exc)}") from exc
        for ticket in open_tickets:
            self._remember(ticket)
        fills = [fill for fill in ib.fills() if fill.commissionReport.execId]
        trades = [*open_trades, *completed, *ib.trades()]
        executions: list[Execution] = []
        changes: list[StatusChange] = []
        for ticket in open_tickets:
            ref = str(ticket.order_id)
            executions.extend(
                self._execution(ticket, fill, fill.commissionReport)
                for fill in fills
                if fill.execution.orderRef == ref
            )
            change = _final_state(ticket, [t for t in trades if t.order.orderRef == ref])
            if change is not None:
                changes.append(change)
        unique = list({execution.fill_id: execution for execution in executions}.values())
        return Reconciliation(executions=unique, status_changes=changes, positions=self._positions(positions))

    async def _reconcile_and_deliver(self) -> None:
        """After a reconnect: everything the sink may have missed while the connection was down."""
        try:
            tickets = list(await self._open_tickets())
            result = await self.reconcile(tickets)
        except Exception as exc:
            log.warning("ibkr_reconcile_failed", error=_describe(exc))
            return
        by_id = {ticket.order_id: ticket for ticket in tickets}
        for execution in result.executions:
            self._enqueue_execution(by_id[execution.order_id], execution)
        for change in result.status_changes:
            if change.status != "submitted":
                self._enqueue_status(
                    by_id[change.order_id], change.status, change.broker_order_id, change.reason
                )
        log.info(
            "ibkr_reconciled",
            open_orders=len(tickets),
            executions=len(result.executions),
            status_changes=len(result.status_changes),
        )

    def _positions(self, positions: Sequence[Any]) -> dict[str, Decimal]:
        account = self.settings.ib_account
        held: dict[str, Decimal] = {}
        for position in positions:
            if account and position.account != account:
                continue
            symbol = position.contract.symbol
            held[symbol] = held.get(symbol, Decimal(0)) + _decimal(position.position).quantize(SHARES)
        return {symbol: quantity for symbol, quantity in held.items() if quantity != 0}

    # -- market data -------------------------------------------------------

    async def quote(self, symbol: str) -> dict[str, Any]:
        """Top of book from a snapshot, keyed as the fields of ``Quote`` so callers can build one."""
        conn = self._data_connection()
        contract = await self._market_contract(symbol, conn)
        tickers = await self._request(conn.ib.reqTickersAsync(contract))
        ticker = tickers[0]
        bid, ask, last = _tick(ticker.bid), _tick(ticker.ask), _tick(ticker.last)
        if last is None:
            last = _tick(ticker.close) or (
                price((bid + ask) / 2) if bid is not None and ask is not None else None
            )
        if last is None:
            raise LookupError(f"no market data for {symbol}")
        stamp = getattr(ticker, "lastTimestamp", None) or ticker.time or datetime.now(UTC)
        return {
            "symbol": symbol,
            "bid": bid if bid is not None else last,
            "ask": ask if ask is not None else last,
            "last": last,
            "timestamp": _utc(stamp),
            "source": self.name,
        }

    async def bars(self, symbol: str, start: date, end: date, interval: str = "1d") -> list[dict[str, Any]]:
        """Trade bars from ``start`` to ``end`` inclusive; prices as Decimal."""
        bar_size = BAR_SIZES.get(interval)
        if bar_size is None:
            raise ValueError(f"unsupported interval {interval!r}; one of {', '.join(BAR_SIZES)}")
        if end < start:
            raise ValueError("end is before start")
        conn = self._data_connection()
        contract = await self._market_contract(symbol, conn)
        days = (end - start).days + 1
        duration = f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"
        intraday = not bar_size.endswith(("day", "week"))
        bars = await self._request(
            conn.ib.reqHistoricalDataAsync(
                contract,
                endDateTime=datetime.combine(end, time(23, 59, 59), tzinfo=UTC),
                durationStr=duration,
                barSizeSetting=bar_size,
                whatToShow="TRADES",
                useRTH=True,
                formatDate=2 if intraday else 1,
                timeout=self.settings.ib_request_timeout_seconds,
            )
        )
        rows = [_bar(bar) for bar in bars]
        return [row for row in rows if start <= _day(row["date"]) <= end]

    async def positions(self) -> dict[str, Decimal]:
        """Shares held per symbol at the gateway (the configured account, or all of them)."""
        conn = self._orders if self._orders.up else self._data_connection()
        async with conn.keyed_requests:
            held = await self._request(conn.ib.reqPositionsAsync())
        return self._positions(held)

    async def holdings(self) -> tuple[dict[str, tuple[Decimal, Decimal]], Decimal | None]:
        """The configured account's positions as (shares, average cost) per symbol, and its cash
        (``TotalCashValue`` in the base currency, ``None`` when the gateway gives none): what a linked
        account's sync compares with the platform's book."""
        conn = self._orders if self._orders.up else self._data_connection()
        account = self.settings.ib_account
        async with conn.keyed_requests:
            positions = await self._request(conn.ib.reqPositionsAsync())
            await self._request(conn.ib.reqAccountSummaryAsync())
        held: dict[str, tuple[Decimal, Decimal]] = {}
        for position in positions:
            if account and position.account != account:
                continue
            quantity = _decimal(position.position).quantize(SHARES)
            if quantity:
                held[position.contract.symbol] = (quantity, _decimal(position.avgCost))
        cash = next(
            (
                money(Decimal(str(value.value)))
                for value in await conn.ib.accountSummaryAsync(account)
                if value.tag == "TotalCashValue" and value.currency in ("USD", "BASE", "")
            ),
            None,
        )
        return held, cash

    def _data_connection(self) -> _Connection:
        """A market-data connection that is up, else the order connection; none up is BrokerUnavailable."""
        for conn in [*self._connections[1:], self._orders]:
            if conn.up:
                return conn
        raise BrokerUnavailable("no connection to the gateway")

    async def _market_contract(self, symbol: str, conn: _Connection) -> Any:
        try:
            return await self._qualified(symbol, conn)
        except OrderRejected as exc:
            raise LookupError(exc.reason) from exc

    async def _request(self, request: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(request, self.settings.ib_request_timeout_seconds)
        except (TimeoutError, ConnectionError) as exc:
            raise BrokerUnavailable(f"request failed: {_describe(exc)}") from exc

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _finish(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait for its end.

    Cancelled again until it ends: on Python 3.11 ``asyncio.wait_for`` drops a
    cancellation that arrives just as the awaited future completes.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.warning("ibkr_task_failed", task=task.get_name(), error=_describe(error))


def _final_state(ticket: Ticket, trades: Sequence[Any]) -> StatusChange | None:
    """A cancelled or rejected order at the gateway; a filled one is settled by its executions."""
    for trade in trades:
        status = trade.orderStatus.status
        broker_id = str(trade.order.orderId) if trade.order.orderId else ticket.broker_order_id
        if status in CANCELLED:
            errors = [entry for entry in trade.log if entry.errorCode]
            if errors and errors[-1].errorCode in ORDER_REJECT_CODES:
                return StatusChange(ticket.order_id, "rejected", broker_id, errors[-1].message)
            return StatusChange(ticket.order_id, "cancelled", broker_id, "cancelled at the broker")
        if status == INACTIVE:
            return StatusChange(ticket.order_id, "rejected", broker_id, "order inactive at the broker")
    return None


def _bar(bar: Any) -> dict[str, Any]:
    stamp = bar.date
    return {
        "date": _utc(stamp) if isinstance(stamp, datetime) else stamp,
        "open": price(_decimal(bar.open)),
        "high": price(_decimal(bar.high)),
        "low": price(_decimal(bar.low)),
        "close": price(_decimal(bar.close)),
        "volume": int(bar.volume),
    }


def _day(stamp: date | datetime) -> date:
    return stamp.date() if isinstance(stamp, datetime) else stamp


def _decimal(value: float) -> Decimal:
    """A float from the client library as the decimal it was on the wire (its shortest repr)."""
    return Decimal(repr(float(value)))


def _tick(value: float | None) -> Decimal | None:
    """A tick price, or None for IB's markers of no price (nan, -1, 0)."""
    if value is None or math.isnan(value) or value <= 0:
        return None
    return price(_decimal(value))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["IbkrBroker", "OpenTickets"]
