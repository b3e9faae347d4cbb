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

Inside a shard's group commit (:mod:`wealthalloc.storage.group_commit`) the changes of several
users share one transaction, and the rows nothing in a transaction reads back (:data:`LEAF_STAGES`:
events, trades, cash movements, a portfolio's cash, the holdings' recompute, a key's answer) go
further: each change's outermost block writes its orders, fills and lots when it ends, as alone,
and hands its leaf rows to the group (:func:`group_rows`), which writes them for all its changes
just before the ``COMMIT``, one statement a table. A change that fails takes its leaf rows with
it. What a later change reads is never among them: a change reads its own user's book, which no
other change of the group touches (one writer a user), and a spouse's lots, which are not leaf rows.
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


LEAF_STAGES = frozenset({Stage.ROWS, Stage.RECOMPUTE})
"""Rows no statement of a transaction reads back (see the module): a group writes them once for all
its changes."""

_Held = dict[tuple[Stage, Statement], dict[object, tuple[Any, ...]]]


@dataclass
class Holder:
    """The rows a block holds for its connection, by stage and by the statement that writes many of them."""

    conn: Conn
    outer: Holder | None = None  # the block around this one on the same connection
    rows: _Held = field(default_factory=dict)

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

    async def write(self, group: GroupRows | None = None) -> None:
        """Write what is held, stage by stage, and hold nothing; with ``group``, its leaf rows are
        handed to the group instead."""
        held, self.rows = self.rows, {}
        if group is not None:
            held = group.take_leaves(held)
        await _write_all(self.conn, held)


async def _write_all(conn: Conn, held: _Held) -> None:
    for stage, many in sorted(held, key=lambda statement: statement[0]):  # stable: added order within
        await _execute(conn, many, list(held[stage, many].values()))


class GroupRows:
    """The leaf rows of a group's changes (:data:`LEAF_STAGES`), each change's apart until the
    group writes them, so that a change that fails can take its own back."""

    def __init__(self) -> None:
        self._changes: list[_Held] = []

    def begin(self) -> None:
        """The next change of the group starts: the leaf rows handed over from now on are its."""
        self._changes.append({})

    def forget(self) -> None:
        """The current change failed: its leaf rows are not written."""
        if self._changes:
            self._changes[-1] = {}

    def take_leaves(self, held: _Held) -> _Held:
        """Keep ``held``'s leaf rows for the current change; the rest, to be written now."""
        if not self._changes:
            self.begin()
        mine = self._changes[-1]
        now: _Held = {}
        for (stage, many), rows in held.items():
            if stage in LEAF_STAGES:
                mine.setdefault((stage, many), {}).update(rows)
            else:
                now[stage, many] = rows
        return now

    async def write(self, conn: Conn) -> None:
        """Every change's leaf rows, in the changes' order: one statement a table."""
        merged: _Held = {}
        for change in self._changes:
            for statement, rows in change.items():
                merged.setdefault(statement, {}).update(rows)
        self._changes = []
        await _write_all(conn, merged)


async def _execute(conn: Conn, many: Statement, rows: list[tuple[Any, ...]]) -> None:
    if isinstance(many, Insert) and len(rows) == 1:
        await conn.execute(many.sql(1), rows[0])
        return
    columns = zip(*rows, strict=True)
    await conn.execute(many if isinstance(many, str) else many.sql(len(rows)), [list(c) for c in columns])


_HOLDER: ContextVar[Holder | None] = ContextVar("wealthalloc_held_writes", default=None)
# The group a connection's transaction belongs to. By connection, not by context: a group's changes
# run as tasks in their callers' contexts, which the group's own never reaches.
_GROUPS: dict[int, GroupRows] = {}


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
        await held.write(_GROUPS.get(id(conn)))


@asynccontextmanager
async def group_rows(conn: Conn) -> AsyncIterator[GroupRows]:
    """While open, the outermost blocks on ``conn`` hand their leaf rows to the group it yields
    (whose ``begin``/``forget`` its changes' runner calls); they are written when it ends without an
    error, which must be before the transaction's ``COMMIT``. A group on a connection is alone."""
    if id(conn) in _GROUPS:
        raise RuntimeError("this connection already writes for a group")
    group = _GROUPS[id(conn)] = GroupRows()
    try:
        yield group
    finally:
        del _GROUPS[id(conn)]
    await group.write(conn)
