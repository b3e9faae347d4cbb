"""``FakeIbGateway``: an IB Gateway on loopback that speaks the TWS API socket protocol.

The real client libraries (``ib_async`` and ``ib_insync``) connect to it as
they would to a gateway, so the broker under test runs its real wire code:
the handshake (``API\\0`` then a length-prefixed ``v<min>..<max>`` range,
answered with the server version and the connection time), ``startApi``,
then length-prefixed messages of NUL-terminated fields both ways.

The server version is 176: inside the range of both libraries (ib_insync
157..176, ib_async 157..178), and the last one where both decode every
message the same way (177 drops ``faProfile`` from orders, which ib_insync
still reads; 178 adds a field to executions).

It answers everything a client asks right after connecting (positions, open
and completed orders, account updates, executions, each with its End
message), contract details, current time, market data snapshots, historical
bars, and orders: ``placeOrder`` gets ``openOrder`` + ``orderStatus``, a fill
sends ``execDetails`` + ``commissionReport`` + ``orderStatus Filled``, and
``cancelOrder`` gets ``orderStatus Cancelled``.

It runs in the test's own event loop (``await start()`` / ``await stop()``,
or ``async with``). Tests steer it with ``set_price``, ``auto_fill``,
``fill``, ``reject_next``, ``delay``, ``drop_connections`` and
``refuse_connections``, and read what it received from ``place_counts``,
``received`` and ``orders``.

One gateway login may manage several accounts, as an advisor's or a family's
does: ``add_account`` lists another one in ``managedAccounts``, each with its
own positions (``set_position(..., account=)``) and cash (``set_cash``).
Positions come back for every account, account updates and summaries per
account. A connection belongs to the account whose updates it asked for
(``reqAccountUpdates``, what a client connecting with ``account=`` does):
``drop_account`` closes that account's sockets and ``block_account`` keeps
closing them, as a login locked at the broker would, while other accounts
stay connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import TracebackType

SERVER_VERSION = 176
ACCOUNT = "DU1234567"

# Message ids, client to gateway.
REQ_MKT_DATA = 1
CANCEL_MKT_DATA = 2
PLACE_ORDER = 3
CANCEL_ORDER = 4
REQ_OPEN_ORDERS = 5
REQ_ACCOUNT_UPDATES = 6
REQ_EXECUTIONS = 7
REQ_IDS = 8
REQ_CONTRACT_DATA = 9
REQ_AUTO_OPEN_ORDERS = 15
REQ_ALL_OPEN_ORDERS = 16
REQ_MANAGED_ACCTS = 17
REQ_HISTORICAL_DATA = 20
REQ_CURRENT_TIME = 49
REQ_POSITIONS = 61
REQ_ACCOUNT_SUMMARY = 62
START_API = 71
REQ_ACCOUNT_UPDATES_MULTI = 76
REQ_COMPLETED_ORDERS = 99

REQUEST_NAMES = {
    REQ_MKT_DATA: "reqMktData",
    CANCEL_MKT_DATA: "cancelMktData",
    PLACE_ORDER: "placeOrder",
    CANCEL_ORDER: "cancelOrder",
    REQ_OPEN_ORDERS: "reqOpenOrders",
    REQ_ACCOUNT_UPDATES: "reqAccountUpdates",
    REQ_EXECUTIONS: "reqExecutions",
    REQ_IDS: "reqIds",
    REQ_CONTRACT_DATA: "reqContractDetails",
    REQ_AUTO_OPEN_ORDERS: "reqAutoOpenOrders",
    REQ_ALL_OPEN_ORDERS: "reqAllOpenOrders",
    REQ_MANAGED_ACCTS: "reqManagedAccts",
    REQ_HISTORICAL_DATA: "reqHistoricalData",
    25: "cancelHistoricalData",
    REQ_CURRENT_TIME: "reqCurrentTime",
    59: "reqMarketDataType",
    REQ_POSITIONS: "reqPositions",
    REQ_ACCOUNT_SUMMARY: "reqAccountSummary",
    63: "cancelAccountSummary",
    64: "cancelPositions",
    START_API: "startApi",
    REQ_ACCOUNT_UPDATES_MULTI: "reqAccountUpdatesMulti",
    77: "cancelAccountUpdatesMulti",
    REQ_COMPLETED_ORDERS: "reqCompletedOrders",
}

# Message ids, gateway to client.
TICK_PRICE = 1
ORDER_STATUS = 3
ERR_MSG = 4
OPEN_ORDER = 5
ACCT_VALUE = 6
PORTFOLIO_VALUE = 7
ACCT_UPDATE_TIME = 8
NEXT_VALID_ID = 9
CONTRACT_DATA = 10
EXECUTION_DATA = 11
MANAGED_ACCTS = 15
HISTORICAL_DATA = 17
TICK_STRING = 46
CURRENT_TIME = 49
CONTRACT_DATA_END = 52
OPEN_ORDER_END = 53
ACCT_DOWNLOAD_END = 54
EXECUTION_DATA_END = 55
TICK_SNAPSHOT_END = 57
COMMISSION_REPORT = 59
POSITION_DATA = 61
POSITION_END = 62
ACCOUNT_SUMMARY = 63
ACCOUNT_SUMMARY_END = 64
ACCOUNT_UPDATE_MULTI = 73
ACCOUNT_UPDATE_MULTI_END = 74
COMPLETED_ORDER = 101
COMPLETED_ORDERS_END = 102

Answers = list[tuple[object, ...]]
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
IB_TIME = "%Y%m%d %H:%M:%S"
TICK = Decimal("0.01")


@dataclass
class FakeAccount:
    """One managed account: positions as symbol -> (quantity, average cost), and cash."""

    positions: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    cash: Decimal = Decimal("100000")


@dataclass
class FakeOrder:
    """An order as the gateway keeps it, keyed by the client id and order id that placed it."""

    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    action: str
    quantity: Decimal
    order_type: str
    lmt_price: Decimal | None
    aux_price: Decimal | None
    tif: str
    account: str
    order_ref: str
    status: str = "Submitted"
    filled: Decimal = Decimal(0)
    avg_fill_price: Decimal = Decimal(0)
    last_fill_price: Decimal = Decimal(0)
    reason: str = ""
    completed_at: datetime | None = None

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass
class FakeExecution:
    exec_id: str
    order: FakeOrder
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    commission: Decimal
    time: datetime


@dataclass
class _Client:
    """One client socket."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client_id: int | None = None
    account: str | None = None
    closed: bool = False
    received: list[list[str]] = field(default_factory=list)
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, *fields: object) -> None:
        if self.closed or self.writer.is_closing():
            return
        payload = "".join(_field(value) + "\0" for value in fields).encode()
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    def close(self) -> None:
        self.closed = True
        self.closed_event.set()
        with contextlib.suppress(Exception):
            self.writer.close()


Handler = Callable[[_Client, list[str], Answers], None]


def _field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return str(value)


def _decimal(text: str) -> Decimal | None:
    return Decimal(text) if text not in ("", "1.7976931348623157E308", "1.7976931348623157e+308") else None


class FakeIbGateway:
    """A TWS API server on 127.0.0.1 for tests; ``port`` is known once started."""

    def __init__(
        self,
        *,
        account: str = ACCOUNT,
        commission_per_share: Decimal = Decimal("0.005"),
        commission_minimum: Decimal = Decimal("1.00"),
        auto_fill: bool = True,
    ) -> None:
        self.account = account
        self.commission_per_share = commission_per_share
        self.commission_minimum = commission_minimum
        self.auto_fill = auto_fill
        self.port = 0
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[tuple[int, int], FakeOrder] = {}
        self.executions: list[FakeExecution] = []
        self.accounts: dict[str, FakeAccount] = {account: FakeAccount()}
        # The first account's positions, as tests of a single-account login know them.
        self.positions = self.accounts[account].positions
        self.blocked_accounts: set[str] = set()
        self.place_counts: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.connections_accepted = 0
        self._server: asyncio.Server | None = None
        self._clients: list[_Client] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_order_id = 1
        self._perm_ids = itertools.count(900_001)
        self._exec_seq = itertools.count(1)
        self._reject_next: tuple[int, str] | None = None
        self._delay = 0.0
        self._refusing = False

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_connections()
        # Closed sockets end their handlers; a cancelled one ends quietly too (see _serve).
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=2)
            for task in stuck:
                task.cancel()
        if server is not None:
            # Newer Pythons wait here for the handlers, which are gone by now.
            await asyncio.wait_for(server.wait_closed(), 2)

    async def __aenter__(self) -> FakeIbGateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    # -- controls --------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """The last price of a symbol, bid a cent below, ask a cent above; unpriced symbols are unknown."""
        self.prices[symbol] = Decimal(str(price))

    def set_position(
        self,
        symbol: str,
        quantity: Decimal | str,
        avg_cost: Decimal | str = "0",
        *,
        account: str | None = None,
    ) -> None:
        """A position of ``account`` (the first one by default); a quantity of 0 closes it."""
        positions = self.accounts[account or self.account].positions
        if Decimal(str(quantity)) == 0:
            positions.pop(symbol, None)
        else:
            positions[symbol] = (Decimal(str(quantity)), Decimal(str(avg_cost)))

    def add_account(self, account: str, *, cash: Decimal | str = "100000") -> FakeAccount:
        """Another account this login manages (listed in ``managedAccounts``)."""
        added = self.accounts.setdefault(account, FakeAccount())
        added.cash = Decimal(str(cash))
        return added

    def set_cash(self, amount: Decimal | str, *, account: str | None = None) -> None:
        self.accounts[account or self.account].cash = Decimal(str(amount))

    def drop_account(self, account: str) -> None:
        """Close the sockets of the clients connected for ``account``; the others stay up."""
        for client in list(self._clients):
            if client.account == account:
                client.close()
                self._clients.remove(client)

    def block_account(self, account: str, blocked: bool = True) -> None:
        """While blocked, a client asking for the account's updates is disconnected (and so cannot
        reconnect for it); the other accounts are served as usual."""
        if blocked:
            self.blocked_accounts.add(account)
            self.drop_account(account)
        else:
            self.blocked_accounts.discard(account)

    @property
    def connected_accounts(self) -> list[str]:
        return sorted({c.account for c in self._clients if c.account is not None and not c.closed})

    def reject_next(self, reason: str, code: int = 201) -> None:
        """The next order placed is rejected with this error code and message."""
        self._reject_next = (code, reason)

    def delay(self, seconds: float) -> None:
        """Wait this long before every answer (what the client sent still takes effect at once)."""
        self._delay = seconds

    def drop_connections(self, client_id: int | None = None) -> None:
        """Close every client socket (or those of one client id), as a restart or a network cut would."""
        for client in list(self._clients):
            if client_id is None or client.client_id == client_id:
                client.close()
                self._clients.remove(client)

    async def refuse_connections(self, refuse: bool) -> None:
        """Stop listening (connects are refused) or listen again on the same port."""
        if refuse == self._refusing:
            return
        self._refusing = refuse
        if refuse:
            # Closing the listening socket is immediate; open connections stay up.
            if self._server is not None:
                self._server.close()
                self._server = None
        else:
            await self._listen()

    def order(self, order_ref: str) -> FakeOrder:
        """The latest order with this orderRef."""
        matches = [o for o in self.orders.values() if o.order_ref == order_ref]
        if not matches:
            raise KeyError(order_ref)
        return matches[-1]

    def fill(
        self, order_ref: str, quantity: Decimal | str | None = None, price: Decimal | str | None = None
    ) -> FakeExecution:
        """Fill (part of) an open order; its client hears of it only if it is connected now."""
        order = self.order(order_ref)
        if order.done:
            raise ValueError(f"order {order_ref} is {order.status}")
        shares = order.remaining if quantity is None else min(Decimal(str(quantity)), order.remaining)
        at = Decimal(str(price)) if price is not None else self._last(order.symbol)
        execution = self._execute(order, shares, at)
        client = self._client(order.client_id)
        if client is not None:
            self._send_execution(client, execution, req_id=-1)
            self._send_order_status(client, order)
        return execution

    @property
    def connected_client_ids(self) -> list[int]:
        return sorted(c.client_id for c in self._clients if c.client_id is not None and not c.closed)

    # -- connection handling ---------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._clients.append(client)
        self.connections_accepted += 1
        try:
            if await self._handshake(client):
                while not client.closed:
                    fields = await self._read(client)
                    if fields is None:
                        break
                    await self._dispatch(client, fields)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Ending quietly: asyncio 3.11 logs an error for a cancelled stream handler.
            pass
        finally:
            client.close()
            if client in self._clients:
                self._clients.remove(client)
            if task is not None:
                self._tasks.discard(task)

    async def _handshake(self, client: _Client) -> bool:
        magic = await client.reader.readexactly(4)
        if magic != b"API\0":
            return False
        (length,) = struct.unpack(">I", await client.reader.readexactly(4))
        text = (await client.reader.readexactly(length)).decode()
        match = re.match(r"v(\d+)\.\.(\d+)", text)
        if match is None or not int(match[1]) <= SERVER_VERSION <= int(match[2]):
            return False
        client.send(SERVER_VERSION, datetime.now(UTC).strftime(IB_TIME) + " UTC")
        return True

    async def _read(self, client: _Client) -> list[str] | None:
        try:
            (length,) = struct.unpack(">I", await client.reader.readexactly(4))
            payload = await client.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
        fields = payload.decode(errors="backslashreplace").split("\0")
        return fields[:-1] if fields and fields[-1] == "" else fields

    async def _dispatch(self, client: _Client, fields: list[str]) -> None:
        msg_id = int(fields[0])
        self.received[REQUEST_NAMES.get(msg_id, f"msg{msg_id}")] += 1
        client.received.append(fields)
        answers: Answers = []
        handler = self._handlers.get(msg_id)
        if handler is not None:
            handler(client, fields, answers)
        if self._delay:
            # A dropped connection ends the wait: nothing is left to answer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.closed_event.wait(), self._delay)
        for message in answers:
            client.send(*message)

    @functools.cached_property
    def _handlers(self) -> dict[int, Handler]:
        return {
            START_API: self._on_start_api,
            REQ_IDS: self._on_req_ids,
            REQ_MANAGED_ACCTS: self._on_managed_accounts,
            REQ_POSITIONS: self._on_positions,
            REQ_OPEN_ORDERS: self._on_open_orders,
            REQ_ALL_OPEN_ORDERS: self._on_open_orders,
            REQ_COMPLETED_ORDERS: self._on_completed_orders,
            REQ_ACCOUNT_UPDATES: self._on_account_updates,
            REQ_ACCOUNT_UPDATES_MULTI: self._on_account_updates_multi,
            REQ_ACCOUNT_SUMMARY: self._on_account_summary,
            REQ_EXECUTIONS: self._on_executions,
            REQ_CURRENT_TIME: self._on_current_time,
            REQ_CONTRACT_DATA: self._on_contract_details,
            REQ_MKT_DATA: self._on_market_data,
            REQ_HISTORICAL_DATA: self._on_historical_data,
            PLACE_ORDER: self._on_place_order,
            CANCEL_ORDER: self._on_cancel_order,
        }

    def _client(self, client_id: int) -> _Client | None:
        for client in self._clients:
            if client.client_id == client_id and not client.closed:
                return client
        return None

    # -- session ---------------------------------------------------------

    def _on_start_api(self, client: _Client, fields: list[str], out: Answers) -> None:
        client.client_id = int(fields[2])
        out.append((MANAGED_ACCTS, 1, self._managed))
        out.append((NEXT_VALID_ID, 1, self._next_order_id))

    def _on_req_ids(self, client: _Client, fields: list[str], out: Answers) -> None:
        out.append((NEXT_VALID_ID, 1, self._next_order_id))

    def _on_managed_accounts(self, client: _Client, fields: list[str], out: Answers) -> None:
        out.append((MANAGED_ACCTS, 1, self._managed))

    @property
    def _managed(self) -> str:
        return ",".join(self.accounts)

    def _on_current_time(self, client: _Client, fields: list[str], out: Answers) -> None:
        out.append((CURRENT_TIME, 1, int(datetime.now(UTC).timestamp())))

    # -- account ---------------------------------------------------------

    def _on_positions(self, client: _Client, fields: list[str], out: Answers) -> None:
        for account, held in self.accounts.items():
            for symbol, (quantity, avg_cost) in sorted(held.positions.items()):
                out.append((POSITION_DATA, 3, account, *self._contract(symbol, ""), quantity, avg_cost))
        out.append((POSITION_END, 1))

    def _on_account_updates(self, client: _Client, fields: list[str], out: Answers) -> None:
        if fields[2] != "1":
            return
        account = fields[3] or self.account
        if account in self.blocked_accounts:
            client.close()
            return
        client.account = account
        held = self.accounts.get(account, FakeAccount({}, Decimal(0)))
        for tag, value in (
            ("NetLiquidation", "100000"),
            ("TotalCashValue", held.cash),
            ("BuyingPower", "400000"),
        ):
            out.append((ACCT_VALUE, 2, tag, value, "USD", account))
        for symbol, (quantity, avg_cost) in sorted(held.positions.items()):
            price = self._last(symbol)
            con_id, _, sec_type, expiry, strike, right, multiplier, _, currency, local, trading = (
                self._contract(symbol, "")
            )
            out.append(
                (
                    PORTFOLIO_VALUE, 8, con_id, symbol, sec_type, expiry, strike, right, multiplier, "NASDAQ",
                    currency, local, trading, quantity, price, quantity * price, avg_cost,
                    quantity * (price - avg_cost), 0, account,
                )
            )  # fmt: skip
        out.append((ACCT_UPDATE_TIME, 1, datetime.now(UTC).strftime("%H:%M")))
        out.append((ACCT_DOWNLOAD_END, 1, account))

    def _on_account_updates_multi(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id, account, model = fields[2], fields[3] or self.account, fields[4]
        cash = self.accounts[account].cash if account in self.accounts else Decimal(0)
        for tag, value in (("NetLiquidation", "100000"), ("TotalCashValue", cash)):
            out.append((ACCOUNT_UPDATE_MULTI, 1, req_id, account, model, tag, value, "USD"))
        out.append((ACCOUNT_UPDATE_MULTI_END, 1, req_id))

    def _on_account_summary(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id = fields[2]
        for account, held in self.accounts.items():
            for tag, value in (("NetLiquidation", "100000"), ("TotalCashValue", held.cash)):
                out.append((ACCOUNT_SUMMARY, 1, req_id, account, tag, value, "USD"))
        out.append((ACCOUNT_SUMMARY_END, 1, req_id))

    # -- orders ----------------------------------------------------------

    def _on_open_orders(self, client: _Client, fields: list[str], out: Answers) -> None:
        every_client = int(fields[0]) == REQ_ALL_OPEN_ORDERS
        for order in self.orders.values():
            if order.done or not (every_client or order.client_id == client.client_id):
                continue
            out.append(self._open_order(order))
            out.append(self._order_status(order))
        out.append((OPEN_ORDER_END, 1))

    def _on_completed_orders(self, client: _Client, fields: list[str], out: Answers) -> None:
        for order in self.orders.values():
            if order.done:
                out.append(self._completed_order(order))
        out.append((COMPLETED_ORDERS_END,))

    def _on_executions(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id, client_filter = int(fields[2]), int(fields[3] or 0)
        for execution in self.executions:
            if client_filter and execution.order.client_id != client_filter:
                continue
            out.append(self._exec_details(execution, req_id))
            out.append(self._commission_report(execution))
        out.append((EXECUTION_DATA_END, 1, req_id))

    def _on_place_order(self, client: _Client, fields: list[str], out: Answers) -> None:
        order_id, symbol, order_ref = int(fields[1]), fields[3], fields[26]
        self.place_counts[order_ref] += 1
        self._next_order_id = max(self._next_order_id, order_id + 1)
        assert client.client_id is not None
        key = (client.client_id, order_id)
        if key in self.orders:
            return  # modifications are not needed by the tests
        order = FakeOrder(
            order_id=order_id,
            client_id=client.client_id,
            perm_id=next(self._perm_ids),
            symbol=symbol,
            action=fields[16],
            quantity=Decimal(fields[17]),
            order_type=fields[18],
            lmt_price=_decimal(fields[19]),
            aux_price=_decimal(fields[20]),
            tif=fields[21] or "DAY",
            account=fields[23] or self.account,
            order_ref=order_ref,
        )
        self.orders[key] = order
        if self._reject_next is not None or symbol not in self.prices:
            code, reason = self._reject_next or (200, "No security definition has been found for the request")
            self._reject_next = None
            order.status, order.reason, order.completed_at = "Inactive", reason, datetime.now(UTC)
            out.append((ERR_MSG, 2, order_id, code, reason, ""))
            return
        out.append(self._open_order(order))
        out.append(self._order_status(order))
        if self.auto_fill and self._marketable(order):
            execution = self._execute(order, order.remaining, self._last(symbol))
            out.append(self._exec_details(execution, -1))
            out.append(self._commission_report(execution))
            out.append(self._order_status(order))

    def _on_cancel_order(self, client: _Client, fields: list[str], out: Answers) -> None:
        assert client.client_id is not None
        order = self.orders.get((client.client_id, int(fields[2])))
        if order is None or order.done:
            out.append(
                (
                    ERR_MSG,
                    2,
                    fields[2],
                    10147,
                    f"OrderId {fields[2]} that needs to be cancelled is not found.",
                    "",
                )
            )
            return
        order.status, order.completed_at = "Cancelled", datetime.now(UTC)
        out.append(self._order_status(order))

    def _marketable(self, order: FakeOrder) -> bool:
        last = self._last(order.symbol)
        buy = order.action == "BUY"
        if order.order_type in ("STP", "STP LMT"):
            assert order.aux_price is not None
            if (buy and last < order.aux_price) or (not buy and last > order.aux_price):
                return False
        if order.order_type in ("LMT", "STP LMT"):
            assert order.lmt_price is not None
            return last <= order.lmt_price if buy else last >= order.lmt_price
        return True

    def _execute(self, order: FakeOrder, shares: Decimal, price: Decimal) -> FakeExecution:
        previous = order.filled * order.avg_fill_price
        order.filled += shares
        order.avg_fill_price = (previous + shares * price) / order.filled
        order.last_fill_price = price
        if order.remaining <= 0:
            order.status, order.completed_at = "Filled", datetime.now(UTC)
        commission = max(self.commission_minimum, (shares * self.commission_per_share).quantize(TICK))
        execution = FakeExecution(
            exec_id=f"{order.perm_id:08x}.{next(self._exec_seq):08x}.01.01",
            order=order,
            shares=shares,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price.quantize(Decimal("0.0001")),
            commission=commission,
            time=datetime.now(UTC).replace(microsecond=0),
        )
        self.executions.append(execution)
        held, cost = self.positions.get(order.symbol, (Decimal(0), Decimal(0)))
        signed = shares if order.action == "BUY" else -shares
        total = held + signed
        new_cost = (
            ((held * cost + signed * price) / total).quantize(Decimal("0.0001")) if total else Decimal(0)
        )
        self.positions[order.symbol] = (total, new_cost)
        return execution

    # -- market data -----------------------------------------------------

    def _on_contract_details(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id, symbol = fields[2], fields[4]
        if symbol not in self.prices:
            out.append((ERR_MSG, 2, req_id, 200, "No security definition has been found for the request", ""))
            return
        con_id = self._con_id(symbol)
        out.append(
            (
                CONTRACT_DATA, req_id, symbol, "STK", "", 0, "", "SMART", "USD", symbol, "NMS", "NMS",
                con_id, "0.01", "", "LMT,MKT,STP,STP LMT", "SMART,NASDAQ,NYSE", 1, 0, f"{symbol} INC",
                "NASDAQ", "", "", "", "", "US/Eastern", "", "", "", "", 0, 1, "", "", "26", "", "COMMON",
                "0.0001", "0.0001", 100,
            )
        )  # fmt: skip
        out.append((CONTRACT_DATA_END, 1, req_id))

    def _on_market_data(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id, symbol, snapshot = fields[2], fields[4], fields[17] == "1"
        if symbol not in self.prices:
            out.append((ERR_MSG, 2, req_id, 200, "No security definition has been found for the request", ""))
            return
        last = self._last(symbol)
        out.append((TICK_PRICE, 6, req_id, 1, last - TICK, 100, 0))
        out.append((TICK_PRICE, 6, req_id, 2, last + TICK, 100, 0))
        out.append((TICK_PRICE, 6, req_id, 4, last, 10, 0))
        out.append((TICK_STRING, 6, req_id, 45, int(datetime.now(UTC).timestamp())))
        if snapshot:
            out.append((TICK_SNAPSHOT_END, 1, req_id))

    def _on_historical_data(self, client: _Client, fields: list[str], out: Answers) -> None:
        req_id, symbol = fields[1], fields[3]
        end_text, bar_size, duration, format_date = fields[15], fields[16], fields[17], fields[20]
        if symbol not in self.prices:
            out.append((ERR_MSG, 2, req_id, 200, "No security definition has been found for the request", ""))
            return
        end = datetime.strptime(end_text[:17], IB_TIME).replace(tzinfo=UTC) if end_text else datetime.now(UTC)
        start = end - _duration(duration)
        bars = list(self._bars(symbol, start, end, bar_size, format_date))
        message: list[object] = [
            HISTORICAL_DATA,
            req_id,
            start.strftime(IB_TIME) + " UTC",
            end.strftime(IB_TIME) + " UTC",
            len(bars),
        ]
        for bar in bars:
            message.extend(bar)
        out.append(tuple(message))

    def _bars(
        self, symbol: str, start: datetime, end: datetime, bar_size: str, format_date: str
    ) -> list[tuple[object, ...]]:
        step = _bar_seconds(bar_size)
        daily = step >= 86_400
        base = self._last(symbol)
        rows: list[tuple[object, ...]] = []
        if daily:
            day = start.date() + timedelta(days=1)
            stamps: list[datetime | date] = []
            while day <= end.date():
                if day.weekday() < 5:
                    stamps.append(day)
                day += timedelta(days=1)
        else:
            stamps = []
            moment = start + timedelta(seconds=step)
            while moment <= end and len(stamps) < 5000:
                stamps.append(moment)
                moment += timedelta(seconds=step)
        for index, stamp in enumerate(stamps):
            close = base + Decimal(index % 7 - 3) * Decimal("0.10")
            open_ = close - Decimal("0.05")
            high, low = max(open_, close) + Decimal("0.20"), min(open_, close) - Decimal("0.20")
            if isinstance(stamp, datetime):
                label = (
                    str(int(stamp.timestamp())) if format_date == "2" else stamp.strftime(IB_TIME) + " UTC"
                )
            else:
                label = stamp.strftime("%Y%m%d")
            rows.append((label, open_, high, low, close, 1000 + 10 * index, close, 25))
        return rows

    # -- message builders ------------------------------------------------

    def _con_id(self, symbol: str) -> int:
        return 10_000 + zlib.crc32(symbol.encode()) % 1_000_000

    def _contract(self, symbol: str, exchange: str = "SMART") -> tuple[object, ...]:
        """conId .. tradingClass as positions, executions and orders carry it (no primary exchange)."""
        return (self._con_id(symbol), symbol, "STK", "", 0, "", "", exchange, "USD", symbol, "NMS")

    def _last(self, symbol: str) -> Decimal:
        return self.prices.get(symbol, Decimal("100"))

    def _order_status(self, order: FakeOrder) -> tuple[object, ...]:
        return (
            ORDER_STATUS, order.order_id, order.status, order.filled, order.remaining, order.avg_fill_price,
            order.perm_id, 0, order.last_fill_price, order.client_id, "", 0,
        )  # fmt: skip

    def _open_order(self, order: FakeOrder) -> tuple[object, ...]:
        return (
            OPEN_ORDER, order.order_id, *self._contract(order.symbol),
            order.action, order.quantity, order.order_type, order.lmt_price, order.aux_price, order.tif, "",
            order.account, "O", 0, order.order_ref, order.client_id, order.perm_id,
            # outsideRth .. faProfile
            0, 0, 0, "", "", "", "", "", "",
            # modelCode .. deltaNeutralAuxPrice
            "", "", "", "", "", 0, "", -1, 0, "", "", "", "", "", "",
            0, 0, 0, "", 0, 0, 0, "", 0, 0, "", 0, "", "",
            # continuousUpdate .. comboLegsDescrip, legs, order legs, smart combo params
            0, 0, "", "", "", "", "", 0, 0, 0,
            # scale, hedge, clearing, delta neutral contract, algo
            "", "", "", "", 0, "", "", 0, 0, "",
            # solicited, whatIf, order state, randomize
            0, 0, order.status, "", "", "", "", "", "", "", "", "", "", "", "", "", "", 0, 0,
            # conditions, adjusted/soft dollar/cash, duration, postToAts, autoCancelParent, peg fields
            0, "", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, 0, 0, "", "", 0, "", "", "", "", "",
        )  # fmt: skip

    def _completed_order(self, order: FakeOrder) -> tuple[object, ...]:
        completed = (order.completed_at or datetime.now(UTC)).strftime(IB_TIME) + " UTC"
        return (
            COMPLETED_ORDER, *self._contract(order.symbol),
            order.action, order.quantity, order.order_type, order.lmt_price, order.aux_price, order.tif, "",
            order.account, "O", 0, order.order_ref, order.perm_id, 0, 0, 0, "", "", "", "", "",
            # modelCode .. deltaNeutralAuxPrice
            "", "", "", "", "", 0, "", -1, "", "", "", "", "", "", 0, 0, "", 0, 0, "", 0, "", "",
            # continuousUpdate .. comboLegsDescrip, legs, order legs, smart combo params
            0, 0, "", "", "", 0, 0, 0,
            # scale, hedge, clearing, delta neutral contract, algo
            "", "", "", "", "", "", 0, 0, "",
            # solicited, status, randomize, conditions
            0, order.status, 0, 0, 0,
            # trailStopPrice .. completedStatus
            "", "", "", 0, 0, "", order.filled, "", 0, "", 0, 0, "", completed, order.reason or order.status,
            "", "", "", "", "",
        )  # fmt: skip

    def _exec_details(self, execution: FakeExecution, req_id: int) -> tuple[object, ...]:
        order = execution.order
        return (
            EXECUTION_DATA, req_id, order.order_id, *self._contract(order.symbol), execution.exec_id,
            execution.time.strftime(IB_TIME) + " UTC", order.account, "ISLAND",
            "BOT" if order.action == "BUY" else "SLD", execution.shares, execution.price, order.perm_id,
            order.client_id, 0, execution.cum_qty, execution.avg_price, order.order_ref, "", "", "", 1,
        )  # fmt: skip

    def _commission_report(self, execution: FakeExecution) -> tuple[object, ...]:
        return (COMMISSION_REPORT, 1, execution.exec_id, execution.commission, "USD", "", "", "")

    def _send_execution(self, client: _Client, execution: FakeExecution, req_id: int) -> None:
        client.send(*self._exec_details(execution, req_id))
        client.send(*self._commission_report(execution))

    def _send_order_status(self, client: _Client, order: FakeOrder) -> None:
        client.send(*self._order_status(order))


def _duration(text: str) -> timedelta:
    amount, unit = text.split()
    days = {"S": 0, "D": 1, "W": 7, "M": 31, "Y": 366}[unit]
    return timedelta(seconds=int(amount)) if unit == "S" else timedelta(days=int(amount) * days)


def _bar_seconds(text: str) -> int:
    amount, unit = text.split()
    unit = unit.rstrip("s")
    seconds = {"sec": 1, "min": 60, "hour": 3600, "day": 86_400, "week": 604_800, "month": 2_678_400}[unit]
    return int(amount) * seconds


__all__ = ["ACCOUNT", "SERVER_VERSION", "FakeExecution", "FakeIbGateway", "FakeOrder"]
