"""What every broker speaks: tickets in, executions and status changes out.

The platform's order of record lives in PostgreSQL; a broker only ever sees a
``Ticket`` (our order id travels with it, as IB's ``orderRef``) and answers
through the ``BrokerSink`` it was built with. An ``Execution`` carries a
``fill_id`` that is the same every time the broker reports the same execution
(IB's execId, the paper broker's order id and step), which is what lets the
shard apply a fill exactly once however often it hears of it: after a
reconnect, a restart of the gateway, or a reconciliation.

Errors say whether the order may have reached the venue: ``BrokerUnavailable``
means it provably did not (safe to retry or leave pending), ``OrderRejected``
means the venue said no. Anything else is an unknown outcome and is settled
by reconciliation, never by resending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from wealthalloc.trading.tickets import Execution, StatusChange, Ticket


@dataclass(frozen=True)
class Quote:
    """Top of book for a symbol; ``stale`` when it is the last cached quote after a provider failed."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp: datetime
    source: str
    stale: bool = False


@dataclass(frozen=True)
class BrokerHealth:
    status: Literal["healthy", "degraded", "down"]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reconciliation:
    """What the broker knows after a reconnect, to compare with the order book of record."""

    executions: Sequence[Execution] = ()
    status_changes: Sequence[StatusChange] = ()
    positions: dict[str, Decimal] = field(default_factory=dict)


class BrokerError(Exception):
    pass


class BrokerUnavailable(BrokerError):
    """The order provably did not reach the venue (not connected, breaker open)."""


class OrderRejected(BrokerError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerSink(Protocol):
    """Where a broker sends what happens to orders; the gateway routes it to the owning shard."""

    async def execution(self, ticket: Ticket, execution: Execution) -> None: ...

    async def status_change(self, ticket: Ticket, change: StatusChange) -> None: ...


class Broker(Protocol):
    name: str

    async def start(self) -> None:
        """Connect (or be ready); a broker that cannot connect starts anyway and reports ``down``."""
        ...

    async def close(self) -> None: ...

    async def place(self, ticket: Ticket) -> str:
        """Send the order; the broker's order id. Raises BrokerUnavailable or OrderRejected."""
        ...

    async def cancel(self, ticket: Ticket) -> None: ...

    async def reconcile(self, open_tickets: Sequence[Ticket]) -> Reconciliation:
        """Executions and final states of these orders that the sink may not have heard of."""
        ...

    def health(self) -> BrokerHealth: ...
