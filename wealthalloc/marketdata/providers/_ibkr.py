"""IBKR live quotes as the first link of the chain, asked only while the gateway is connected.

The broker gateway (``actors/broker_gateway.py``, ``ib_async``) owns the
connection to IB Gateway; this link asks it for a snapshot quote. A gateway
that is disconnected, or a platform trading on the paper broker, has no live
price to give: the link is then *skipped* (:class:`ProviderSkipped`, outcome
``skipped``), not failed, so it neither trips a breaker nor logs a warning,
and the next provider answers at once instead of waiting out a timeout.

Whether the gateway is connected is asked once per ``recheck_s`` rather than
before every quote (it costs a call to the gateway); a quote that fails
because the connection dropped in between forgets the answer, so the next
quote asks again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from wealthalloc.brokers.base import Broker, BrokerUnavailable, Quote
from wealthalloc.marketdata.providers._base import (
    ProviderSkipped,
    ProviderUnavailable,
    QuoteFetch,
    SymbolNotFound,
)

NAME = "ibkr"
Connected = Callable[[], Awaitable[bool]]
"""Whether the gateway's broker is IBKR and has a connection up (asked of the gateway actor)."""


class IbkrQuotes:
    """A :data:`QuoteFetch` over the broker gateway: its snapshot quote while connected, skipped otherwise.

    Parameters
    ----------
    snapshot : callable
        The gateway's quote of a symbol (``BrokerGateway.quote``), source ``ibkr``.
    connected : callable
        Whether the gateway is connected to IB Gateway with the IBKR broker.
    recheck_s : float
        How long an answer of ``connected`` is trusted.
    clock : callable
        Monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        snapshot: QuoteFetch,
        connected: Connected,
        *,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._connected = connected
        self._recheck_s = recheck_s
        self._clock = clock
        self._known: tuple[bool, float] | None = None  # the last answer and when it was had

    async def _is_connected(self) -> bool:
        now = self._clock()
        if self._known is not None and now - self._known[1] < self._recheck_s:
            return self._known[0]
        try:
            up = await self._connected()
        except Exception:  # a gateway that cannot say is not one to wait on
            up = False
        self._known = (up, now)
        return up

    async def __call__(self, symbol: str) -> Quote:
        if not await self._is_connected():
            raise ProviderSkipped(NAME, "the broker gateway is not connected to IBKR")
        try:
            return await self._snapshot(symbol)
        except BrokerUnavailable as exc:  # the connection dropped since it was checked
            self._known = None
            raise ProviderUnavailable(NAME, str(exc)) from exc
        except TimeoutError as exc:
            self._known = None
            raise ProviderUnavailable(NAME, "the snapshot timed out") from exc
        except LookupError as exc:
            raise SymbolNotFound(NAME, str(exc)) from exc


def quote_from_snapshot(raw: Mapping[str, Any]) -> Quote:
    """The IBKR broker's snapshot (the fields of ``Quote`` as a mapping) as a quote from ``ibkr``."""
    return Quote(
        symbol=raw["symbol"],
        bid=raw["bid"],
        ask=raw["ask"],
        last=raw["last"],
        timestamp=raw["timestamp"],
        source=NAME,
    )


def broker_connected(broker: Broker | None) -> bool:
    """Whether ``broker`` is IBKR with a connection up: what the gateway answers for :class:`IbkrQuotes`."""
    return broker is not None and broker.name == NAME and broker.health().status != "down"


def broker_quotes(broker: Broker, *, recheck_s: float = 1.0) -> IbkrQuotes:
    """Live quotes from a broker in this process (the gateway's own, or a test's ``IbkrBroker``)."""

    async def snapshot(symbol: str) -> Quote:
        ask: Any = getattr(broker, "quote", None)
        if ask is None:
            raise BrokerUnavailable(f"the {broker.name} broker has no live quotes")
        return quote_from_snapshot(await ask(symbol))

    async def connected() -> bool:
        return broker_connected(broker)

    return IbkrQuotes(snapshot, connected, recheck_s=recheck_s)
