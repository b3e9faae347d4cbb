"""An order between the shard that recorded it and the broker that executes it.

The ``BrokerGateway`` actor holds one ``OrderDispatch`` and adds only what Ray needs (its life,
tick loop, health and tracing). Here live the rules that keep an order from being lost or sent
twice while the gateway can die at any moment: a send in flight is never repeated, a recorded
order the gateway never heard of is swept up and sent, the orders of record are taken back from
the broker after a restart, and the broker's webhooks are applied in each order's own sequence.

Where the news goes is injected (``Sink``): in the platform it is the owning user's shard, in a
test whatever records it. The dispatch holds no Ray handle, so the gateway and the shards import
each other's modules in one direction only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from wealthalloc.brokers import incoming
from wealthalloc.brokers.base import Broker, BrokerSink, BrokerUnavailable, OrderRejected
from wealthalloc.brokers.paper import PaperBroker
from wealthalloc.errors import ServiceError
from wealthalloc.logging import get_logger
from wealthalloc.storage import orders as order_store
from wealthalloc.storage import webhooks as inbox
from wealthalloc.storage.postgres import AsyncPool
from wealthalloc.trading.tickets import StatusChange, Ticket

log = get_logger(__name__)

SWEEP_AFTER_S = 3.0


class Sink(BrokerSink, Protocol):
    """A broker's sink that can also hold an acceptance back to send it with the first fill."""

    def hold_acceptance(self, ticket: Ticket, change: StatusChange) -> None: ...

    async def release_acceptance(self, ticket: Ticket) -> None: ...


async def working_tickets(pool: AsyncPool, broker_name: str) -> Sequence[Ticket]:
    """The orders of record a broker holds: what it must report on after a reconnect."""
    async with pool.connection() as conn:
        orders = await order_store.working_orders(conn, broker_name)
    return [order.ticket() for order in orders]


class OrderDispatch:
    def __init__(self, *, pool: AsyncPool, broker: Broker, broker_name: str, sink: Sink) -> None:
        self._pool = pool
        self._broker = broker
        self._broker_name = broker_name
        self._sink = sink
        self._in_flight: set[Any] = set()
        self._inbox_lock = asyncio.Lock()
        self.counts = {"submitted": 0, "rested": 0, "rejected": 0, "swept": 0, "fills": 0, "incoming": 0}

    # After a restart, and on every tick -----------------------------------------------------------

    async def adopt_working_orders(self) -> None:
        """Take back the orders of record the broker holds, and settle what happened while away."""
        tickets = await working_tickets(self._pool, self._broker_name)
        found = await self._broker.reconcile(tickets)
        by_id = {t.order_id: t for t in tickets}
        for execution in found.executions:
            if execution.order_id in by_id:
                await self._sink.execution(by_id[execution.order_id], execution)
        for change in found.status_changes:
            if change.order_id in by_id:
                await self._sink.status_change(by_id[change.order_id], change)
        log.info("gateway_adopted_orders", orders=len(tickets), executions=len(found.executions))

    async def tick(self) -> None:
        await self.sweep_pending()
        await self.process_incoming()
        if isinstance(self._broker, PaperBroker):
            self.counts["fills"] += await self._broker.tick()

    async def sweep_pending(self) -> None:
        """Send orders recorded while the gateway was away or the hand-off failed; on paper, also take
        the orders a shard placed at the venue whose hand-off to this book never arrived."""
        paper = self._broker if isinstance(self._broker, PaperBroker) else None
        async with self._pool.connection() as conn:
            age = SWEEP_AFTER_S
            pending = await order_store.pending_orders(conn, broker=self._broker_name, older_than_s=age)
            working = await order_store.working_orders(conn, "paper", older_than_s=age) if paper else []
        if paper is not None and working:
            self.counts["swept"] += paper.adopt([o.ticket() for o in working if o.id not in self._in_flight])
        for order in pending:
            if order.id in self._in_flight:
                continue
            self.counts["swept"] += 1
            await self.submit(order.ticket())

    async def process_incoming(self) -> int:
        """Apply the broker's webhooks received and not yet handled; the number handled.

        Each message goes to the owning shard like a fill seen on the session (by ``fill_id``, so
        once), then its receipt is marked with the outcome. A shard that is away leaves the
        receipt for the next tick; a message the shard refuses is marked with the refusal.
        """
        handled = 0
        async with self._inbox_lock, self._pool.connection() as conn, conn.transaction():
            waiting: set[Any] = set()  # orders with a message left for later: their next ones wait too
            for receipt in await inbox.unprocessed_receipts(conn, incoming.SOURCE):
                order_id = receipt["payload"].get("order_id")
                if order_id in waiting:
                    continue
                outcome = await self._apply_message(receipt["payload"])
                if outcome is None:
                    waiting.add(order_id)  # its shard is away: try again next tick, in order
                    continue
                await inbox.mark_processed(conn, incoming.SOURCE, receipt["delivery_id"], outcome)
                handled += 1
        self.counts["incoming"] += handled
        return handled

    async def _apply_message(self, document: Mapping[str, Any]) -> str | None:
        try:
            message = incoming.parse(document)
        except incoming.MalformedMessage as exc:
            return f"refused: {exc}"
        ticket = await self._fresh(message.order_id)
        if ticket is None:
            log.warning("incoming_for_unknown_order", order_id=str(message.order_id), message=message.id)
            return "refused: no such order"
        try:
            if isinstance(message, incoming.ExecutionMessage):
                await self._sink.execution(ticket, message.news())
            else:
                await self._sink.status_change(ticket, message.news())
        except ServiceError as exc:
            return f"refused: {exc.code}: {exc}"
        except Exception as exc:
            log.warning("incoming_not_applied", message=message.id, error=repr(exc))
            return None
        return "applied"

    # A shard's order calls ------------------------------------------------------------------------

    async def submit(self, ticket: Ticket) -> None:
        """Send an order and record that the broker has it; a paper order gets its first chance to fill."""
        if ticket.order_id in self._in_flight:
            return
        self._in_flight.add(ticket.order_id)
        try:
            try:
                broker_order_id = await self._broker.place(ticket)
            except OrderRejected as exc:
                self.counts["rejected"] += 1
                await self._sink.status_change(
                    ticket, StatusChange(ticket.order_id, "rejected", None, exc.reason)
                )
                return
            except BrokerUnavailable as exc:
                log.warning("order_not_sent", order_id=str(ticket.order_id), error=str(exc))
                return  # stays pending; the sweep tries again
            self.counts["submitted"] += 1
            accepted = StatusChange(ticket.order_id, "submitted", broker_order_id)
            if isinstance(self._broker, PaperBroker):
                # A marketable paper order fills now: its acceptance rides with the first fill
                # (one shard call, one transaction); a resting one is told of it on its own.
                self._sink.hold_acceptance(ticket, accepted)
                try:
                    self.counts["fills"] += await self._broker.step(ticket.order_id)
                finally:
                    await self._sink.release_acceptance(ticket)
            else:
                await self._sink.status_change(ticket, accepted)
        finally:
            self._in_flight.discard(ticket.order_id)

    async def rest(self, ticket: Ticket) -> None:
        """Take an order a shard placed at the embedded paper venue, and filled there as far as the
        market allowed, into the paper book: it is stepped from the next tick on."""
        if not isinstance(self._broker, PaperBroker):
            raise BrokerUnavailable(f"the {self._broker_name} broker does not take paper orders")
        try:
            await self._broker.place(ticket)
        except OrderRejected as exc:  # the market went away between the shard's quote and now
            self.counts["rejected"] += 1
            change = StatusChange(ticket.order_id, "rejected", None, exc.reason)
            await self._sink.status_change(ticket, change)
            return
        self.counts["rested"] += 1

    async def cancel(self, ticket: Ticket) -> None:
        while ticket.order_id in self._in_flight:  # let a send in progress finish first
            await asyncio.sleep(0.01)
        if ticket.broker_order_id is None:
            fresh = await self._fresh(ticket.order_id)
            if fresh is None or fresh.broker_order_id is None:
                # Never reached a broker: cancelling is ours alone.
                await self._sink.status_change(
                    ticket, StatusChange(ticket.order_id, "cancelled", None, "cancelled by user")
                )
                return
            ticket = fresh
        await self._broker.cancel(ticket)

    async def _fresh(self, order_id: Any) -> Ticket | None:
        async with self._pool.connection() as conn:
            order = await order_store.order(conn, order_id)
        return None if order is None else order.ticket()
