"""One IB connection per linked account on a gateway login that manages several accounts: each
reads only its own account's positions and cash, and one account's connection dropping (or its
login being refused) leaves the others reading. The real client libraries run against the fake
gateway; no Ray and no database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import pytest

from tests.integration import test_ibkr_broker as ibkr
from wealthalloc.brokers.base import BrokerUnavailable
from wealthalloc.brokers.ibkr import IbkrBroker

pytestmark = pytest.mark.integration

# The IBKR broker tests' fixtures: each test once per client library, failing on unexpected errors.
library = ibkr.library
library_errors = ibkr.library_errors
FakeIbGateway, LibraryErrors, DROPPED = ibkr.FakeIbGateway, ibkr.LibraryErrors, ibkr.DROPPED
run, settings, wait_until = ibkr.run, ibkr.settings, ibkr.wait_until

FIRST, SECOND, THIRD = "U1110001", "U2220002", "DU3330003"


class Deaf:
    async def execution(self, ticket: Any, execution: Any) -> None:
        raise AssertionError("a linked account places no orders")

    async def status_change(self, ticket: Any, change: Any) -> None:
        raise AssertionError("a linked account places no orders")


async def no_tickets() -> list[Any]:
    return []


@contextlib.asynccontextmanager
async def login_with_three_accounts(library: str) -> AsyncIterator[tuple[Any, dict[str, IbkrBroker]]]:
    fake = FakeIbGateway(account=FIRST)
    await fake.start()
    fake.add_account(SECOND, cash="2500.50")
    fake.add_account(THIRD, cash="0")
    fake.set_cash("1000", account=FIRST)
    fake.set_position("AAPL", "10", "150", account=FIRST)
    fake.set_position("KO", "40", "55.25", account=SECOND)
    fake.set_position("AAPL", "3", "120", account=SECOND)
    brokers = {
        account: IbkrBroker(
            settings(fake.port, ib_account=account, ib_client_id=200 + i, ib_pool_size=1),
            Deaf(),
            no_tickets,
            library=library,
        )
        for i, account in enumerate((FIRST, SECOND, THIRD))
    }
    try:
        for broker in brokers.values():
            await broker.start()
        yield fake, brokers
    finally:
        for broker in brokers.values():
            await broker.close()
        await fake.stop()


def test_each_connection_reads_only_its_own_accounts_positions_and_cash(library: str) -> None:
    async def scenario() -> None:
        async with login_with_three_accounts(library) as (fake, brokers):
            assert fake.connected_accounts == sorted([FIRST, SECOND, THIRD])
            assert await brokers[FIRST].holdings() == ({"AAPL": (D("10"), D("150"))}, D("1000"))
            assert await brokers[SECOND].holdings() == (
                {"AAPL": (D("3"), D("120")), "KO": (D("40"), D("55.25"))},
                D("2500.50"),
            )
            assert await brokers[THIRD].holdings() == ({}, D("0"))

    run(scenario())


def test_a_dropped_account_fails_alone_and_comes_back_when_its_login_is_allowed(
    library: str, library_errors: LibraryErrors
) -> None:
    library_errors.expect(*DROPPED)

    async def scenario() -> None:
        async with login_with_three_accounts(library) as (fake, brokers):
            fake.block_account(SECOND)
            await wait_until(
                lambda: brokers[SECOND].health().status == "down", what="the dropped account down"
            )

            with pytest.raises(BrokerUnavailable):
                await brokers[SECOND].holdings()
            fake.set_position("MSFT", "2", "300", account=FIRST)
            assert (await brokers[FIRST].holdings())[0]["MSFT"] == (D("2"), D("300"))
            assert (await brokers[THIRD].holdings())[1] == D("0")
            assert SECOND not in fake.connected_accounts

            fake.block_account(SECOND, blocked=False)
            await wait_until(
                lambda: brokers[SECOND].health().status == "healthy", timeout=10, what="reconnect"
            )
            assert (await brokers[SECOND].holdings())[0]["KO"] == (D("40"), D("55.25"))

    run(scenario())
