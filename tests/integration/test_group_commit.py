"""Group commit on the real PostgreSQL: changes asked for together share one transaction, each
answered only once it is committed, and one change's failure fails no other."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from wealthalloc.config import Settings
from wealthalloc.errors import ServiceError
from wealthalloc.storage import held_writes
from wealthalloc.storage.group_commit import GroupCommit
from wealthalloc.storage.postgres import async_pool

pytestmark = pytest.mark.integration


def scratch_table(database_url: str, prefix: str, columns: str) -> Iterator[str]:
    """A table of ``columns`` for one test, dropped after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} ({columns})")
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")


@pytest.fixture
def table(database_url: str) -> Iterator[str]:
    columns = "id int PRIMARY KEY, code text UNIQUE DEFERRABLE INITIALLY DEFERRED, tx bigint NOT NULL"
    yield from scratch_table(database_url, "group_commit", columns)


def stored(database_url: str, table: str) -> dict[int, int]:
    """Each committed row's id and the transaction that wrote it."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute(f"SELECT id, tx FROM {table}").fetchall())


def run(database_url: str, body: Any, **options: int) -> Any:
    async def scenario() -> Any:
        pool = async_pool(Settings(database_url=database_url), name="test-group-commit")
        await pool.open()
        try:
            return await body(GroupCommit(pool, **options))
        finally:
            await pool.close()

    return asyncio.run(scenario())


def insert(table: str, row_id: int, code: str | None = None, *, then_fail: bool = False) -> Any:
    async def unit(conn: psycopg.AsyncConnection[Any]) -> int:
        await conn.execute(
            f"INSERT INTO {table} (id, code, tx) VALUES (%s, %s, txid_current())",
            (row_id, code or f"code-{row_id}"),
        )
        if then_fail:
            raise ServiceError(400, "INSUFFICIENT_FUNDS", f"change {row_id} is refused")
        return row_id

    return unit


def test_changes_asked_for_together_commit_in_one_transaction_and_each_gets_its_own_answer(
    database_url: str, table: str
) -> None:
    async def body(commits: GroupCommit) -> list[int]:
        return await asyncio.gather(*(commits.run(insert(table, i)) for i in range(20)))

    answers = run(database_url, body, max_group=64, writers=1)

    assert answers == list(range(20))
    rows = stored(database_url, table)
    assert sorted(rows) == list(range(20))
    assert len(set(rows.values())) == 1, "all twenty queued before the writer began: one transaction"


def test_a_refused_change_is_undone_alone_and_the_others_of_its_group_commit(
    database_url: str, table: str
) -> None:
    async def body(commits: GroupCommit) -> list[Any]:
        units = [insert(table, i, then_fail=(i == 5)) for i in range(10)]
        return await asyncio.gather(*(commits.run(u) for u in units), return_exceptions=True)

    answers = run(database_url, body, max_group=64, writers=1)

    refused = answers[5]
    assert isinstance(refused, ServiceError) and refused.code == "INSUFFICIENT_FUNDS"
    assert [a for i, a in enumerate(answers) if i != 5] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert sorted(stored(database_url, table)) == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_a_change_that_breaks_a_constraint_fails_alone(database_url: str, table: str) -> None:
    async def body(commits: GroupCommit) -> list[Any]:
        units = [insert(table, i) for i in range(6)] + [insert(table, 3)]  # id 3 again
        return await asyncio.gather(*(commits.run(u) for u in units), return_exceptions=True)

    answers = run(database_url, body, max_group=64, writers=1)

    assert answers[:6] == [0, 1, 2, 3, 4, 5]
    assert isinstance(answers[6], psycopg.errors.UniqueViolation)
    assert sorted(stored(database_url, table)) == [0, 1, 2, 3, 4, 5]


def test_a_statement_answered_late_fails_its_own_change_not_the_next_one(
    database_url: str, table: str
) -> None:
    """The transaction is pipelined: an INSERT nobody reads is answered at the next sync. The
    savepoint syncs before it closes, so the broken change is the one that fails, also when it was
    refused anyway before its error came back."""

    async def body(commits: GroupCommit) -> list[Any]:
        units = [insert(table, 0), insert(table, 1), insert(table, 0), insert(table, 2)]
        units += [insert(table, 1, then_fail=True), insert(table, 3)]
        return await asyncio.gather(*(commits.run(u) for u in units), return_exceptions=True)

    answers = run(database_url, body, max_group=64, writers=1)

    assert [answers[i] for i in (0, 1, 3, 5)] == [0, 1, 2, 3]
    assert isinstance(answers[2], psycopg.errors.UniqueViolation)
    assert isinstance(answers[4], psycopg.errors.UniqueViolation | ServiceError)
    assert sorted(stored(database_url, table)) == [0, 1, 2, 3]


def test_when_a_constraint_fails_the_commit_each_change_runs_again_alone_and_the_culprit_fails_alone(
    database_url: str, table: str
) -> None:
    """The deferred unique check runs at COMMIT: nothing of the group is applied then, and each
    change runs again in a transaction of its own."""

    async def body(commits: GroupCommit) -> list[Any]:
        first = await commits.run(insert(table, 100))  # alone, before the others
        clash = [insert(table, i, code="same") for i in (1, 2)] + [insert(table, 3)]
        rest = await asyncio.gather(*(commits.run(u) for u in clash), return_exceptions=True)
        return [first, *rest]

    answers = run(database_url, body, max_group=64, writers=1)

    assert [answers[i] for i in (0, 1, 3)] == [100, 1, 3]
    assert isinstance(answers[2], psycopg.errors.UniqueViolation)
    rows = stored(database_url, table)
    assert sorted(rows) == [1, 3, 100]
    assert rows[1] != rows[3], "each alone"


def test_when_the_commit_fails_otherwise_no_change_of_the_group_is_applied_and_each_caller_hears_it(
    database_url: str, table: str
) -> None:
    """A COMMIT refused for anything but a constraint (here a deferred trigger that raises): every
    change of the group fails with that error, and none is applied; a caller's retry applies it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"""CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.code = 'refused' THEN RAISE EXCEPTION 'refused at commit'; END IF;
                RETURN NULL; END $$"""
        )
        conn.execute(
            f"""CREATE CONSTRAINT TRIGGER {table}_refuse AFTER INSERT ON {table}
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_refuse()"""
        )

    async def body(commits: GroupCommit) -> list[Any]:
        first = await commits.run(insert(table, 100))  # alone, before the others
        group = [insert(table, 1, code="refused"), insert(table, 2), insert(table, 3)]
        rest = await asyncio.gather(*(commits.run(u) for u in group), return_exceptions=True)
        return [first, *rest]

    try:
        answers = run(database_url, body, max_group=64, writers=1)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER {table}_refuse ON {table}")
            conn.execute(f"DROP FUNCTION {table}_refuse()")

    assert answers[0] == 100
    assert all(isinstance(a, psycopg.errors.RaiseException) for a in answers[1:])
    assert sorted(stored(database_url, table)) == [100]


def test_an_answer_comes_only_after_its_change_is_visible_to_everyone(database_url: str, table: str) -> None:
    seen: list[bool] = []

    async def body(commits: GroupCommit) -> None:
        async def change_then_look(i: int) -> None:
            await commits.run(insert(table, i))
            with psycopg.connect(database_url) as other:  # another session, as any reader
                row = other.execute(f"SELECT 1 FROM {table} WHERE id = %s", (i,)).fetchone()
            seen.append(row is not None)

        await asyncio.gather(*(change_then_look(i) for i in range(8)))

    run(database_url, body, max_group=64, writers=2)

    assert seen == [True] * 8


def test_changes_arriving_while_a_group_is_written_form_the_next_group(database_url: str, table: str) -> None:
    async def body(commits: GroupCommit) -> None:
        first = asyncio.ensure_future(commits.run(insert(table, 0)))
        await asyncio.sleep(0)  # the writer has taken the first change alone
        await asyncio.sleep(0)
        await asyncio.gather(first, *(commits.run(insert(table, i)) for i in range(1, 10)))

    run(database_url, body, max_group=64, writers=1)

    rows = stored(database_url, table)
    assert rows[0] not in {rows[i] for i in range(1, 10)}
    assert len({rows[i] for i in range(1, 10)}) == 1


def test_a_group_of_one_commits_each_change_alone(database_url: str, table: str) -> None:
    async def body(commits: GroupCommit) -> list[int]:
        return await asyncio.gather(*(commits.run(insert(table, i)) for i in range(5)))

    run(database_url, body, max_group=1)

    assert len(set(stored(database_url, table).values())) == 5


def test_the_victim_of_a_deadlock_between_two_groups_runs_again_alone_and_both_groups_commit(
    database_url: str, table: str
) -> None:
    """Two shards' groups lock two rows in opposite orders, as spouses' households can."""
    with psycopg.connect(database_url) as conn:
        conn.execute(f"INSERT INTO {table} (id, code, tx) VALUES (1, 'one', 0), (2, 'two', 0)")

    async def scenario() -> list[Any]:
        settings = Settings(database_url=database_url)
        pools = [async_pool(settings, name=f"test-group-commit-{i}") for i in range(2)]
        for pool in pools:
            await pool.open()
        try:
            both_hold = [asyncio.Event(), asyncio.Event()]

            def lock(row: int, mine: int | None = None) -> Any:
                async def unit(conn: psycopg.AsyncConnection[Any]) -> int:
                    if mine is None:  # the group's second change: after both groups hold a row
                        await asyncio.gather(*(e.wait() for e in both_hold))
                    await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", (row,))
                    if mine is not None:
                        both_hold[mine].set()
                    await conn.execute(f"UPDATE {table} SET tx = txid_current() WHERE id = %s", (row,))
                    return row

                return unit

            first, second = (GroupCommit(pool, max_group=8, writers=1) for pool in pools)
            return await asyncio.wait_for(
                asyncio.gather(
                    first.run(lock(1, mine=0)),
                    first.run(lock(2)),
                    second.run(lock(2, mine=1)),
                    second.run(lock(1)),
                    return_exceptions=True,
                ),
                timeout=30,
            )
        finally:
            for pool in pools:
                await pool.close()

    assert asyncio.run(scenario()) == [1, 2, 2, 1]


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


def test_each_change_runs_in_its_own_caller_s_context_whoever_started_the_group(
    database_url: str, table: str
) -> None:
    """Trace spans and log fields of a change belong to its own request, not the first one's."""

    def seen_by(row_id: int) -> Any:
        async def unit(conn: psycopg.AsyncConnection[Any]) -> str:
            await conn.execute(
                f"INSERT INTO {table} (id, code, tx) VALUES (%s, %s, 0)", (row_id, str(row_id))
            )
            return REQUEST.get()

        return unit

    async def body(commits: GroupCommit) -> list[str]:
        async def request(i: int) -> str:
            REQUEST.set(f"request-{i}")
            return await commits.run(seen_by(i))

        return await asyncio.gather(*(request(i) for i in range(6)))

    assert run(database_url, body, max_group=64, writers=1) == [f"request-{i}" for i in range(6)]
    assert len(set(stored(database_url, table).values())) == 1


# Rows a change holds (wealthalloc/storage/held_writes.py) ------------------------------------------


@pytest.fixture
def held_table(database_url: str) -> Iterator[str]:
    """A table whose rows say which transaction wrote them, and when each row was inserted."""
    columns = (
        "id int PRIMARY KEY, tx bigint NOT NULL DEFAULT txid_current(),"
        " at timestamptz NOT NULL DEFAULT clock_timestamp(), stage text NOT NULL"
    )
    yield from scratch_table(database_url, "group_held", columns)


def holding(
    table: str, row_id: int, stage: held_writes.Stage, *, then_fail: bool = False, read_back: bool = False
) -> Any:
    """A change that holds one row of ``stage`` in a block, as the order desk does; ``read_back``
    counts, once the block has ended, the change's own rows that are already in the table."""
    rows = held_writes.Insert.of(table, "id int, stage text")

    async def unit(conn: psycopg.AsyncConnection[Any]) -> int:
        async with held_writes.writes_together(conn):
            await held_writes.write(conn, rows, (row_id, stage.name), stage=stage)
        if read_back:
            cur = await conn.execute(f"SELECT id FROM {table} WHERE id = %s", (row_id,))
            if len(await cur.fetchall()) != 1:
                raise AssertionError(f"row {row_id} not written when its change's block ended")
        if then_fail:
            raise ServiceError(400, "INSUFFICIENT_FUNDS", f"change {row_id} is refused")
        return row_id

    return unit


def test_the_rows_no_change_reads_back_are_written_once_for_the_group_in_the_changes_order(
    database_url: str, held_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, trades, cash movements, cash and holdings (the leaf stages) of every change of a group
    go in one statement a table before the COMMIT; an order, a fill or a lot is written when its
    change's block ends, since a later statement of the same change may read it."""
    written: list[tuple[str, int]] = []
    execute = held_writes._execute

    async def counted(conn: Any, many: Any, rows: list[tuple[Any, ...]]) -> None:
        written.append((rows[0][1], len(rows)))
        await execute(conn, many, rows)

    monkeypatch.setattr(held_writes, "_execute", counted)

    async def body(commits: GroupCommit) -> list[int]:
        leaves = [holding(held_table, i, held_writes.Stage.ROWS) for i in range(8)]
        orders = [holding(held_table, 100 + i, held_writes.Stage.ORDERS, read_back=True) for i in range(3)]
        return await asyncio.gather(*(commits.run(u) for u in leaves + orders))

    answers = run(database_url, body, max_group=64, writers=1)

    assert answers == [*range(8), 100, 101, 102]
    assert written == [("ORDERS", 1), ("ORDERS", 1), ("ORDERS", 1), ("ROWS", 8)]
    assert sorted(stored(database_url, held_table)) == [*range(8), 100, 101, 102]
    with psycopg.connect(database_url) as conn:
        leaf_order = [r[0] for r in conn.execute(f"SELECT id FROM {held_table} WHERE id < 100 ORDER BY at")]
    assert leaf_order == list(range(8)), "in the order the changes ran"


def test_a_change_that_fails_after_its_block_ended_takes_its_held_rows_with_it(
    database_url: str, held_table: str
) -> None:
    async def body(commits: GroupCommit) -> list[Any]:
        units = [holding(held_table, i, held_writes.Stage.ROWS, then_fail=(i in (2, 5))) for i in range(7)]
        units.append(holding(held_table, 100, held_writes.Stage.ORDERS, then_fail=True))
        return await asyncio.gather(*(commits.run(u) for u in units), return_exceptions=True)

    answers = run(database_url, body, max_group=64, writers=1)

    assert [a for a in answers if not isinstance(a, ServiceError)] == [0, 1, 3, 4, 6]
    assert sorted(stored(database_url, held_table)) == [0, 1, 3, 4, 6]


def test_a_change_alone_writes_its_held_rows_when_its_block_ends(database_url: str, held_table: str) -> None:
    async def body(commits: GroupCommit) -> int:
        return await commits.run(holding(held_table, 7, held_writes.Stage.ROWS, read_back=True))

    assert run(database_url, body, max_group=64, writers=1) == 7
    assert sorted(stored(database_url, held_table)) == [7]


def test_a_held_row_refused_when_the_group_writes_it_fails_its_own_change_alone(
    database_url: str, held_table: str
) -> None:
    """Whose row broke the constraint cannot be told from the group's one statement: nothing of the
    group is applied, and each change runs again alone."""

    async def body(commits: GroupCommit) -> list[Any]:
        units = [holding(held_table, i, held_writes.Stage.ROWS) for i in (1, 2, 1, 3)]
        units.append(holding(held_table, 4, held_writes.Stage.ROWS, then_fail=True))
        return await asyncio.gather(*(commits.run(u) for u in units), return_exceptions=True)

    answers = run(database_url, body, max_group=64, writers=1)

    assert [answers[i] for i in (0, 1, 3)] == [1, 2, 3]
    assert isinstance(answers[2], psycopg.errors.UniqueViolation)
    assert isinstance(answers[4], ServiceError), "a change refused in the group is not run again"
    rows = stored(database_url, held_table)
    assert sorted(rows) == [1, 2, 3]
    assert len(set(rows.values())) == 3, "each in a transaction of its own"
