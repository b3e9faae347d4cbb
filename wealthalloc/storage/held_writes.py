"""Rows a transaction writes, held and written together: one statement a table.

A batch of fifty orders makes fifty orders, fills and lots, a hundred events, fifty trades and
fifty cash movements, recomputes holdings rows and sets its portfolio's cash fifty times. One
``INSERT ... SELECT * FROM unnest(...)`` of fifty rows costs PostgreSQL (and the shard's driver) far
less than fifty INSERTs, and the rows are the same; a value set many times (the cash) is written
once, the last. Writers of such rows (the orders, fills and lots of the order desk, the outbox's
events, a fill's trade, cash movement and cash, the holdings) give their row to :func:`write`: it
goes to the connection's open block, or outside a block is written at once by the same statement
(an :class:`Insert` as one row of values). So each table has one statement for one row or many.

Since rows refer to each other, they are written stage by stage (:class:`Stage`): a row before the
rows that refer to it (the orders, then their fills, then the lots the fills opened, then everything
else), and a statement that reads what the others wrote (the holdings' recompute) last. Within a
stage, rows go in the order they were added (an identity column such as the events' ``sequence``
numbers them in that order).

A block that raises writes none of its rows (what they described is rolled back with it), and a
block inside another hands its rows to the outer one when it ends; the outermost writes them all
when it ends. A held row is not in its table until then, so a statement of the block that reads or
refers to a held table (a sale reads the lots a buy before it opened; a wash sale refers to its
replacement lot) first calls :func:`flush`, which writes what is held now and lets the block go on
holding. The storage functions that read or change orders, fills and lots do so themselves; outside
a block, or with nothing held, it costs nothing. And a held row that breaks a constraint fails the
whole block when it is written, not the call that held it: hold only rows whose values the checks
before them already guarantee.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]


@dataclass(frozen=True)
class Insert:
    """An INSERT a block can hold: ``table`` and its columns, each with its type.

    A block holding many rows writes them as ``unnest`` of one array a column, sent in PostgreSQL's
    binary format (``%b``): the driver dumps fifty rows of events about five times faster than as
    text. One row (an order placed alone) is written as plain values, since the driver takes about
    twice as long to dump a one-element array as the value in it."""

    table: str
    columns: tuple[tuple[str, str], ...]  # (name, type)

    @classmethod
    def of(cls, table: str, columns: str) -> Insert:
        """``columns`` as ``"id uuid, symbol text, ..."``."""
        pairs = (column.split() for column in columns.split(","))
        return cls(table, tuple((name, kind) for name, kind in pairs))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def sql(self, rows: int) -> str:
        into = f"INSERT INTO {self.table} ({', '.join(self.names)})"
        if rows == 1:
            return f"{into} VALUES ({', '.join(f'%s::{kind}' for _, kind in self.columns)})"
        return f"{into} SELECT * FROM unnest({', '.join(f'%b::{kind}[]' for _, kind in self.columns)})"


Statement = str | Insert  # a str takes one array a column, for one row or many


class Stage(IntEnum):
    """When a held statement runs as its block is written: after the rows its own rows refer to."""

    ORDERS = 0
    FILLS = 1  # a fill refers to its order
    LOTS = 2  # a buy's lot to the fill that opened it
    ROWS = 3  # the rest: trades, cash movements, events, a portfolio's cash
    RECOMPUTE = 4  # statements that read the rows written before them (holdings from lots)


@dataclass
class Holder:
    """The rows a block holds for its connection, by stage and by the statement that writes many of them."""

    conn: Conn
    outer: Holder | None = None  # the block around this one on the same connection
    rows: dict[tuple[Stage, Statement], dict[object, tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, many: Statement, row: tuple[Any, ...], *, replacing: object = None, stage: Stage) -> None:
        """``many`` is an :class:`Insert`, or takes one array a column (``unnest(%b::uuid[], ...)``);
        ``row`` is one value a column.

        With ``replacing``, the row replaces the one held earlier under the same key: a value set
        many times in the block (a portfolio's cash after each fill) is written once, the last.
        """
        self.rows.setdefault((stage, many), {})[object() if replacing is None else replacing] = row

    def hand_to(self, outer: Holder) -> None:
        for statement, rows in self.rows.items():
            outer.rows.setdefault(statement, {}).update(rows)

    async def write(self) -> None:
        """Write what is held, stage by stage, and hold nothing."""
        held, self.rows = self.rows, {}
        for stage, many in sorted(held, key=lambda statement: statement[0]):  # stable: added order within
            await _execute(self.conn, many, list(held[stage, many].values()))


async def _execute(conn: Conn, many: Statement, rows: list[tuple[Any, ...]]) -> None:
    if isinstance(many, Insert) and len(rows) == 1:
        await conn.execute(many.sql(1), rows[0])
        return
    columns = zip(*rows, strict=True)
    await conn.execute(many if isinstance(many, str) else many.sql(len(rows)), [list(c) for c in columns])


_HOLDER: ContextVar[Holder | None] = ContextVar("wealthalloc_held_writes", default=None)


def _holder(conn: Conn) -> Holder | None:
    """The open block holding ``conn``'s rows, if any; another connection's rows are not held."""
    held = _HOLDER.get()
    return held if held is not None and held.conn is conn else None


async def write(
    conn: Conn, many: Statement, row: tuple[Any, ...], *, replacing: object = None, stage: Stage = Stage.ROWS
) -> None:
    """Hand ``row`` to ``conn``'s open block (:meth:`Holder.add`), or write it now with ``many``."""
    held = _holder(conn)
    if held is not None:
        held.add(many, row, replacing=replacing, stage=stage)
    else:
        await _execute(conn, many, [row])


async def flush(conn: Conn) -> None:
    """Write what ``conn``'s open blocks hold now, before a statement that reads or refers to it.

    The outer blocks' rows go first: they were added before the inner block's.
    """
    blocks: list[Holder] = []
    held = _holder(conn)
    while held is not None:
        blocks.insert(0, held)
        held = held.outer
    for block in blocks:
        if block.rows:
            await block.write()


@asynccontextmanager
async def writes_together(conn: Conn) -> AsyncIterator[None]:
    """Hold the rows ``conn`` gets inside the block and write them when it ends (see the module)."""
    outer = _holder(conn)
    held = Holder(conn, outer)
    token = _HOLDER.set(held)
    try:
        yield
    finally:
        _HOLDER.reset(token)
    if outer is not None:
        held.hand_to(outer)
    else:
        await held.write()
