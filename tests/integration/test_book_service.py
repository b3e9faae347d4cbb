"""The book service a PortfolioShard runs, without Ray: bounded memory and the stored totals."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import psycopg.rows
import pytest

from tests.rows import investor_with_portfolio
from wealthalloc.config import Settings
from wealthalloc.marketdata import MarketClock, PriceHistory, SecurityReference
from wealthalloc.portfolios.market import Market
from wealthalloc.portfolios.service import BookService
from wealthalloc.storage.postgres import async_pool


def _users_with_portfolios(database_url: str, n: int) -> list[uuid.UUID]:
    ids = []
    with psycopg.connect(database_url) as conn:
        for _ in range(n):
            user_id, portfolio_id = investor_with_portfolio(conn, "book", cash=100)
            conn.execute(
                "INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis, adjusted_basis,"
                " acquired_at, holding_period_start, source)"
                " VALUES (%s, 'KO', 10, 10, 400, 400, '2020-01-02', '2020-01-02', 'transfer_in')",
                (portfolio_id,),
            )
            ids.append(user_id)
    return ids


def _service(database_url: str, data_dir: Path, **kwargs: float) -> tuple[BookService, object]:
    settings = Settings(database_url=database_url, data_dir=data_dir)
    prices = PriceHistory(settings.prices_dir)
    market = Market(prices, MarketClock(prices.trading_days()), SecurityReference())
    pool = async_pool(settings, name="test-books")
    return BookService(pool=pool, redis=None, market=market, **kwargs), pool  # type: ignore[arg-type]


def test_books_beyond_the_limit_and_idle_books_leave_memory(database_url: str, data_dir: Path) -> None:
    users = _users_with_portfolios(database_url, 5)

    async def scenario() -> tuple[int, int, int]:
        service, pool = _service(database_url, data_dir, max_books=3, idle_seconds=0.5)
        await pool.open()  # type: ignore[attr-defined]
        try:
            for user in users:
                await service.snapshot(user)
            bounded = service.books_in_memory
            time.sleep(0.6)
            await service.snapshot(users[0])  # touching one book sweeps the idle ones
            after_idle = service.books_in_memory
            again = await service.snapshot(users[4])  # an evicted book comes back from PostgreSQL
            return bounded, after_idle, len(again["holdings"])
        finally:
            await pool.close()  # type: ignore[attr-defined]

    bounded, after_idle, holdings = asyncio.run(scenario())
    assert bounded == 3
    assert after_idle == 1
    assert holdings == 1


def test_a_valued_read_keeps_the_portfolio_rows_totals_in_step(database_url: str, data_dir: Path) -> None:
    [user] = _users_with_portfolios(database_url, 1)

    async def scenario() -> dict[str, object]:
        service, pool = _service(database_url, data_dir)
        await pool.open()  # type: ignore[attr-defined]
        try:
            return await service.snapshot(user)
        finally:
            await pool.close()  # type: ignore[attr-defined]

    snapshot = asyncio.run(scenario())
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT total_value, total_gain_loss, risk_score FROM portfolios WHERE user_id = %s", (user,)
        ).fetchone()
    assert stored == (
        Decimal(str(snapshot["total_value"])),
        Decimal(str(snapshot["total_gain_loss"])),
        Decimal(str(snapshot["risk_score"])),
    )
    assert Decimal(str(snapshot["total_value"])) > 100


def test_a_change_never_leaves_a_cached_snapshot_behind_however_reads_and_changes_interleave(
    database_url: str, data_dir: Path, redis_url: str
) -> None:
    """A change drops the portfolio's cached snapshot; the shard skips the DEL only while it knows
    the snapshot is not cached (it dropped it and has not cached it since)."""
    import redis.asyncio as aioredis

    from wealthalloc.portfolios.service import Mutation, snapshot_key

    [user] = _users_with_portfolios(database_url, 1)

    async def scenario() -> list[tuple[str, bool, str | None]]:
        settings = Settings(database_url=database_url, data_dir=data_dir)
        prices = PriceHistory(settings.prices_dir)
        market = Market(prices, MarketClock(prices.trading_days()), SecurityReference())
        pool = async_pool(settings, name="test-books")
        client = aioredis.Redis.from_url(redis_url)
        service = BookService(pool=pool, redis=client, market=market, commit_group=8)
        await pool.open()
        seen: list[tuple[str, bool, str | None]] = []
        try:
            portfolio_id = uuid.UUID(str((await service.portfolios(user))[0]["id"]))
            key = snapshot_key(user, portfolio_id)

            async def deposit(amount: str) -> None:
                m = Mutation(user, user, str(uuid.uuid4()), "POST", "/cash", {"amount": amount})
                await service.move_cash(m, portfolio_id, Decimal(amount), None)

            async def look(step: str) -> None:
                cached = await client.get(key)
                cash = json.loads(cached)["cash_balance"] if cached else None
                seen.append((step, cached is not None, cash))

            await service.snapshot(user, portfolio_id)
            await look("read")
            await deposit("10.00")
            await look("deposit after a read")
            await deposit("5.00")
            await look("deposit after a deposit")
            await service.snapshot(user, portfolio_id)
            await look("read")
            await deposit("1.00")
            await look("deposit after a read")
            await service.snapshot(user, portfolio_id)
            await look("read")
            return seen
        finally:
            await pool.close()
            await client.aclose()

    assert asyncio.run(scenario()) == [
        ("read", True, "100.0000"),
        ("deposit after a read", False, None),
        ("deposit after a deposit", False, None),
        ("read", True, "115.0000"),
        ("deposit after a read", False, None),
        ("read", True, "116.0000"),
    ]


def test_a_change_to_one_portfolio_reads_again_only_that_portfolio_and_the_commitments(
    database_url: str, data_dir: Path
) -> None:
    """A deposit into one portfolio leaves the user's other portfolios as they were read: the next
    read finds the deposit, and the other portfolio's lots are the ones already in memory."""
    from wealthalloc.portfolios.service import Mutation

    [user] = _users_with_portfolios(database_url, 1)
    with psycopg.connect(database_url) as conn:
        main = conn.execute("SELECT id FROM portfolios WHERE user_id = %s", (user,)).fetchone()
        other = conn.execute(
            "INSERT INTO portfolios (user_id, name, cash_balance) VALUES (%s, 'Other', 50) RETURNING id",
            (user,),
        ).fetchone()
        assert main is not None and other is not None
        conn.execute(
            "INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis, adjusted_basis,"
            " acquired_at, holding_period_start, source)"
            " VALUES (%s, 'PEP', 5, 5, 500, 500, '2020-01-02', '2020-01-02', 'transfer_in')",
            (other[0],),
        )
    main_id, other_id = uuid.UUID(str(main[0])), uuid.UUID(str(other[0]))

    async def scenario() -> tuple[object, object, set[uuid.UUID], bool, set[uuid.UUID], dict[str, object]]:
        service, pool = _service(database_url, data_dir)
        await pool.open()  # type: ignore[attr-defined]
        try:
            await service.snapshot(user, other_id)
            book = service._books[user]
            others_lots = book.lots[other_id]
            m = Mutation(user, user, str(uuid.uuid4()), "POST", "/cash", {"amount": "25.00"})
            await service.move_cash(m, main_id, Decimal("25.00"), None)
            stale = set(book.stale)
            after = await service.snapshot(user, main_id)
            return (
                book,
                service._books[user],
                stale,
                book.lots[other_id] is others_lots,
                set(book.stale),
                {**after, "listed": [p["id"] for p in await service.portfolios(user)]},
            )
        finally:
            await pool.close()  # type: ignore[attr-defined]

    before, now, stale, same_lots, stale_after, snapshot = asyncio.run(scenario())
    assert now is before  # the book stayed in memory
    assert stale == {main_id}
    assert Decimal(str(snapshot["cash_balance"])) == Decimal("125.00")
    assert len(snapshot["holdings"]) == 1  # type: ignore[arg-type]
    assert same_lots and stale_after == set()
    assert snapshot["listed"] == [str(main_id), str(other_id)]  # the list keeps its order


def test_deposits_asked_for_together_write_their_movements_in_one_statement_and_answer_them_as_stored(
    database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deposit's movement is made, not read back: in a group commit the group's movements go in one
    statement, and each answer shows its movement exactly as the row holds it."""
    from wealthalloc.portfolios.service import Mutation
    from wealthalloc.storage import held_writes

    users = _users_with_portfolios(database_url, 6)
    movements_written: list[int] = []
    execute = held_writes._execute

    async def counted(conn: object, many: object, rows: list[tuple[object, ...]]) -> None:
        if isinstance(many, held_writes.Insert) and many.table == "cash_movements":
            movements_written.append(len(rows))
        await execute(conn, many, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(held_writes, "_execute", counted)

    async def scenario() -> list[dict[str, object]]:
        service, pool = _service(database_url, data_dir, commit_group=64)
        await pool.open()  # type: ignore[attr-defined]
        try:

            async def deposit(i: int, user: uuid.UUID) -> dict[str, object]:
                portfolio_id = uuid.UUID(str((await service.portfolios(user))[0]["id"]))
                amount = Decimal(f"{i + 1}.25")
                m = Mutation(user, user, f"deposit-{i}", "POST", "/cash", {"amount": str(amount)})
                _, body = await service.move_cash(m, portfolio_id, amount, f"deposit {i}")
                return body["movement"]  # type: ignore[no-any-return]

            return list(await asyncio.gather(*(deposit(i, user) for i, user in enumerate(users))))
        finally:
            await pool.close()  # type: ignore[attr-defined]

    answered = asyncio.run(scenario())

    assert sum(movements_written) == 6
    assert max(movements_written) > 1, "the deposits of a group share one statement"
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        for i, movement in enumerate(answered):
            row = conn.execute(
                "SELECT m.id, m.amount, m.kind, m.description, m.balance_after, m.created_at, p.cash_balance"
                " FROM cash_movements m JOIN portfolios p ON p.id = m.portfolio_id WHERE m.id = %s",
                (uuid.UUID(str(movement["id"])),),
            ).fetchone()
            assert row is not None
            assert str(row["amount"]) == movement["amount"] == f"{i + 1}.2500"
            assert str(row["balance_after"]) == movement["balance_after"] == str(row["cash_balance"])
            assert row["created_at"].isoformat() == movement["created_at"]
            assert (row["kind"], row["description"]) == ("deposit", f"deposit {i}")
