"""The schema: numbered migrations applied once each, and the invariants the database itself enforces.

Runs against the real PostgreSQL of conftest.py: ``empty_database_url`` for the
migration runner, the session's migrated ``database_url`` for the constraints. Each
constraint test works inside a transaction that is rolled back, so nothing leaks
into the shared database.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wealthalloc.storage import migrate as migrate_module
from wealthalloc.storage.migrate import (
    MigrationError,
    MigrationReport,
    ensure_database,
    load_migrations,
    migrate,
    pending,
)

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]

EXPECTED_TABLES = {
    "users", "advisor_clients", "portfolios", "holdings", "lots", "orders", "fills", "trades",
    "cash_movements", "realized_lots", "ai_recommendations", "tax_harvests", "wash_sale_groups",
    "external_accounts", "educational_videos", "events", "audit_log", "api_keys", "refresh_tokens",
    "idempotency_keys", "schema_migrations", "schema_migrations_lock",
}  # fmt: skip
SEED_DOCUMENT_INDEXES = {
    "idx_holdings_portfolio_id", "idx_holdings_symbol", "idx_trades_portfolio_date",
    "idx_recommendations_user_status",
}  # fmt: skip


def _all_names() -> list[str]:
    return [m.name for m in load_migrations()]


# --- the runner ----------------------------------------------------------------------------


def test_migration_files_are_numbered_from_0001_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]

    assert versions == list(range(1, len(versions) + 1))
    assert _all_names()[0] == "0001_core.sql"


def test_an_empty_database_has_every_file_pending(empty_database_url: str) -> None:
    assert pending(empty_database_url) == _all_names()


def test_migrate_applies_every_file_in_order_and_a_second_run_applies_nothing(
    empty_database_url: str,
) -> None:
    first = migrate(empty_database_url)
    second = migrate(empty_database_url)

    assert first == MigrationReport(applied=_all_names(), already_applied=0)
    assert second == MigrationReport(applied=[], already_applied=len(_all_names()))
    assert pending(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [(v, n, c) for v, n, c in rows] == [(m.version, m.name, m.checksum) for m in load_migrations()]


def test_concurrent_migrations_apply_each_file_exactly_once(empty_database_url: str) -> None:
    workers = 4
    barrier = threading.Barrier(workers)
    reports: list[MigrationReport] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            report = migrate(empty_database_url)
        except BaseException as exc:  # collected and asserted below
            with lock:
                failures.append(exc)
            return
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    applied = [name for report in reports for name in report.applied]
    assert sorted(applied) == _all_names()  # every file once, by one worker or another
    assert sum(r.already_applied for r in reports) == (workers - 1) * len(_all_names())
    with psycopg.connect(empty_database_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(_all_names()),)


def test_an_applied_migration_whose_checksum_changed_is_refused(empty_database_url: str) -> None:
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 1", ("0" * 64,))

    with pytest.raises(MigrationError, match="0001_core.sql was changed after it was applied"):
        migrate(empty_database_url)
    with pytest.raises(MigrationError, match="0001_core.sql"):
        pending(empty_database_url)


def test_an_edited_migration_file_is_refused(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(empty_database_url)
    original = load_migrations()
    edited = [replace(original[0], sql=original[0].sql + "\n-- edited", checksum="f" * 64), *original[1:]]
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: edited)

    with pytest.raises(MigrationError, match="restore the file"):
        migrate(empty_database_url)


def test_a_failing_migration_leaves_nothing_behind(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = load_migrations()
    broken = replace(
        original[0],
        version=len(original) + 1,
        name=f"{len(original) + 1:04d}_broken.sql",
        sql="CREATE TABLE half_done (id INT); SELECT no_such_function();",
        checksum="b" * 64,
    )
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: [*original, broken])

    with pytest.raises(MigrationError, match="_broken.sql failed"):
        migrate(empty_database_url)

    with psycopg.connect(empty_database_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        half_done = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert versions == [m.version for m in original]  # the good files stay applied
    assert half_done == (None,)  # the broken file's first statement was rolled back with it


def test_ensure_database_creates_a_missing_database_once(empty_database_url: str) -> None:
    params = conninfo_to_dict(empty_database_url)
    name = f"wealthalloc_ensure_{uuid.uuid4().hex[:10]}"
    url = make_conninfo("", **{**params, "dbname": name})
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        with psycopg.connect(make_conninfo("", **{**params, "dbname": "postgres"}), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_ensure_database_leaves_an_existing_database_alone(empty_database_url: str) -> None:
    assert ensure_database(empty_database_url) is False


# --- the schema ----------------------------------------------------------------------------


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    """A connection inside a transaction that is rolled back after the test."""
    with psycopg.connect(database_url) as connection:
        try:
            yield connection
        finally:
            connection.rollback()


def _user(conn: Conn, email: str | None = None) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
        (email or f"user-{uuid.uuid4().hex[:8]}@example.com",),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _portfolio(conn: Conn, user_id: uuid.UUID, *, name: str = "Main", is_default: bool = False) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO portfolios (user_id, name, is_default) VALUES (%s, %s, %s) RETURNING id",
        (user_id, name, is_default),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _order(
    conn: Conn, portfolio_id: uuid.UUID, user_id: uuid.UUID, key: str, quantity: str = "10"
) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO orders (portfolio_id, user_id, idempotency_key, request_hash, symbol, side,"
        " quantity) VALUES (%s, %s, %s, 'h', 'AAPL', 'buy', %s) RETURNING id",
        (portfolio_id, user_id, key, Decimal(quantity)),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _lot(conn: Conn, portfolio_id: uuid.UUID, *, shares: str, original_shares: str) -> None:
    conn.execute(
        "INSERT INTO lots (portfolio_id, symbol, shares, original_shares, cost_basis, adjusted_basis,"
        " acquired_at, holding_period_start) VALUES (%s, 'AAPL', %s, %s, 100, 100, %s, %s)",
        (portfolio_id, Decimal(shares), Decimal(original_shares), "2022-01-03", "2022-01-03"),
    )


def _cash(conn: Conn, portfolio_id: uuid.UUID, *, amount: str, kind: str, balance_after: str) -> None:
    conn.execute(
        "INSERT INTO cash_movements (portfolio_id, amount, kind, balance_after) VALUES (%s, %s, %s, %s)",
        (portfolio_id, Decimal(amount), kind, Decimal(balance_after)),
    )


def test_every_table_of_the_design_exists(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()

    assert EXPECTED_TABLES <= {name for (name,) in rows}


def test_the_seed_documents_indexes_exist(conn: Conn) -> None:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()").fetchall()

    assert SEED_DOCUMENT_INDEXES <= {name for (name,) in rows}


def test_educational_videos_are_seeded_and_wash_sale_groups_start_empty(conn: Conn) -> None:
    videos = conn.execute("SELECT count(*) FROM educational_videos").fetchone()
    groups = conn.execute("SELECT count(*) FROM wash_sale_groups").fetchone()

    assert videos is not None and videos[0] >= 5
    assert groups == (0,)


def test_money_and_quantities_are_exact_numerics(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT table_name, column_name, numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND (table_name, column_name) IN"
        " (('portfolios', 'cash_balance'), ('holdings', 'shares'), ('holdings', 'average_cost'),"
        "  ('orders', 'quantity'), ('fills', 'price'), ('lots', 'cost_basis'))"
    ).fetchall()

    assert {(t, c): (p, s) for t, c, p, s in rows} == {
        ("portfolios", "cash_balance"): (20, 4),
        ("lots", "cost_basis"): (20, 4),
        ("holdings", "shares"): (20, 6),
        ("orders", "quantity"): (20, 6),
        ("holdings", "average_cost"): (20, 6),
        ("fills", "price"): (20, 6),
    }


def test_emails_are_unique_whatever_their_case(conn: Conn) -> None:
    _user(conn, "Someone@Example.com")

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        _user(conn, "someone@example.COM")


def test_negative_shares_are_refused_in_holdings_and_lots(conn: Conn) -> None:
    portfolio_id = _portfolio(conn, _user(conn))

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute(
            "INSERT INTO holdings (portfolio_id, symbol, shares) VALUES (%s, 'AAPL', %s)",
            (portfolio_id, Decimal("-1")),
        )
    with pytest.raises(errors.CheckViolation), conn.transaction():
        _lot(conn, portfolio_id, shares="-1", original_shares="10")


def test_a_lot_cannot_hold_more_than_it_was_opened_with(conn: Conn) -> None:
    portfolio_id = _portfolio(conn, _user(conn))

    _lot(conn, portfolio_id, shares="10", original_shares="10")

    with pytest.raises(errors.CheckViolation), conn.transaction():
        _lot(conn, portfolio_id, shares="11", original_shares="10")


def test_the_cash_balance_cannot_go_negative(conn: Conn) -> None:
    portfolio_id = _portfolio(conn, _user(conn))
    conn.execute("UPDATE portfolios SET cash_balance = 100 WHERE id = %s", (portfolio_id,))

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute(
            "UPDATE portfolios SET cash_balance = cash_balance - 100.01 WHERE id = %s", [portfolio_id]
        )
    with pytest.raises(errors.CheckViolation), conn.transaction():
        _cash(conn, portfolio_id, amount="-200", kind="withdrawal", balance_after="-100")


def test_a_deposit_must_be_positive_and_a_withdrawal_negative(conn: Conn) -> None:
    portfolio_id = _portfolio(conn, _user(conn))

    _cash(conn, portfolio_id, amount="5", kind="deposit", balance_after="5")

    with pytest.raises(errors.CheckViolation), conn.transaction():
        _cash(conn, portfolio_id, amount="-5", kind="deposit", balance_after="0")
    with pytest.raises(errors.CheckViolation), conn.transaction():
        _cash(conn, portfolio_id, amount="5", kind="withdrawal", balance_after="10")


@pytest.mark.parametrize("quantity", ["0", "-5"])
def test_an_order_quantity_must_be_positive(conn: Conn, quantity: str) -> None:
    user_id = _user(conn)
    portfolio_id = _portfolio(conn, user_id)

    with pytest.raises(errors.CheckViolation), conn.transaction():
        _order(conn, portfolio_id, user_id, "k-1", quantity)


def test_enumerations_are_checked(conn: Conn) -> None:
    user_id = _user(conn)
    portfolio_id = _portfolio(conn, user_id)

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute("UPDATE users SET role = 'superuser' WHERE id = %s", (user_id,))
    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute("UPDATE portfolios SET account_type = '401k' WHERE id = %s", (portfolio_id,))
    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute(
            "INSERT INTO orders (portfolio_id, user_id, idempotency_key, request_hash, symbol, side,"
            " quantity) VALUES (%s, %s, 'k', 'h', 'AAPL', 'short', 1)",
            (portfolio_id, user_id),
        )


def test_a_limit_order_needs_a_limit_price(conn: Conn) -> None:
    user_id = _user(conn)
    portfolio_id = _portfolio(conn, user_id)

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute(
            "INSERT INTO orders (portfolio_id, user_id, idempotency_key, request_hash, symbol, side,"
            " quantity, order_type) VALUES (%s, %s, 'k', 'h', 'AAPL', 'buy', 1, 'limit')",
            (portfolio_id, user_id),
        )


def test_the_same_idempotency_key_never_makes_a_second_order(conn: Conn) -> None:
    user_id = _user(conn)
    portfolio_id = _portfolio(conn, user_id)
    _order(conn, portfolio_id, user_id, "retry-me")

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        _order(conn, portfolio_id, user_id, "retry-me")

    other_user = _user(conn)  # keys are per user: another user may use the same string
    _order(conn, _portfolio(conn, other_user), other_user, "retry-me")


def test_a_fill_is_recorded_once(conn: Conn) -> None:
    user_id = _user(conn)
    order_id = _order(conn, _portfolio(conn, user_id), user_id, "k-fill")
    insert = (
        "INSERT INTO fills (order_id, fill_id, quantity, price, executed_at, broker_exec_id)"
        " VALUES (%s, %s, 5, 150.25, now(), %s)"
    )
    conn.execute(insert, (order_id, "fill-0001", "exec-1"))

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute(insert, (order_id, "fill-0001", None))
    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute(insert, (order_id, "fill-0002", "exec-1"))  # same broker execution, new id
    conn.execute(insert, (order_id, "fill-0003", None))
    conn.execute(insert, (order_id, "fill-0004", None))  # many fills may lack a broker execution id


def test_an_order_cannot_be_filled_beyond_its_quantity(conn: Conn) -> None:
    user_id = _user(conn)
    order_id = _order(conn, _portfolio(conn, user_id), user_id, "k-over", "10")

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute("UPDATE orders SET filled_quantity = 10.5 WHERE id = %s", (order_id,))


def test_a_user_has_at_most_one_default_portfolio(conn: Conn) -> None:
    user_id = _user(conn)
    _portfolio(conn, user_id, name="First", is_default=True)

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        _portfolio(conn, user_id, name="Second", is_default=True)
    _portfolio(conn, user_id, name="Third", is_default=False)


def test_a_holding_is_one_row_per_portfolio_and_symbol(conn: Conn) -> None:
    portfolio_id = _portfolio(conn, _user(conn))
    insert = "INSERT INTO holdings (portfolio_id, symbol, shares) VALUES (%s, 'AAPL', %s)"
    conn.execute(insert, (portfolio_id, Decimal(1)))

    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute(insert, (portfolio_id, Decimal(2)))


def test_recommendation_confidence_is_between_0_and_1(conn: Conn) -> None:
    user_id = _user(conn)
    insert = (
        "INSERT INTO ai_recommendations (user_id, kind, rationale, confidence) VALUES (%s, 'buy', 'r', %s)"
    )
    conn.execute(insert, (user_id, Decimal("0.85")))

    with pytest.raises(errors.CheckViolation), conn.transaction():
        conn.execute(insert, (user_id, Decimal("1.01")))


def test_outbox_events_get_increasing_sequence_numbers(conn: Conn) -> None:
    rows = [
        conn.execute(
            "INSERT INTO events (topic, event_type, payload)"
            " VALUES ('portfolio.updates', 'cash.deposited', '{}') RETURNING sequence"
        ).fetchone()
        for _ in range(3)
    ]
    sequences = [row[0] for row in rows if row is not None]

    assert sequences == sorted(sequences) and len(set(sequences)) == 3
