"""Rows nobody reads back in their transaction, held and written together: one statement a table.

A batch of fifty orders makes a hundred events, fifty trades and fifty cash movements, recomputes
holdings rows and sets its portfolio's cash fifty times. One ``INSERT ... SELECT * FROM unnest(...)``
of fifty rows costs PostgreSQL (and the shard's driver) far less than fifty INSERTs, and the rows
are the same; a value set many times (the cash) is written once, the last. Writers of such rows
(the outbox's events, a fill's trade, cash movement and cash, the holdings) give their row to
:func:`write`: it goes to the connection's open block, or outside a block is written at once by the
same statement, as one-row arrays. So each table has one statement for one row or many.

A block that raises writes none of its rows (what they described is rolled back with it), and a
block inside another hands its rows to the outer one when it ends; the outermost writes them all
when it ends, in the order they were added (an identity column such as the events' ``sequence``
numbers them in that order). Only rows that no statement of the block reads may be held: they are
not in the table until it ends. And a held row that breaks a constraint fails the whole block when
it is written, not the call that held it: hold only rows whose values the checks before them
already guarantee.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]


@dataclass
class Holder:
    """The rows a block holds for its connection, by the statement that writes many of them."""

    conn: Conn
    rows: dict[str, dict[object, tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, many: str, row: tuple[Any, ...], *, replacing: object = None) -> None:
        """``many`` takes one array a column (``unnest(%s::uuid[], ...)``); ``row`` is one value each.

        With ``replacing``, the row replaces the one held earlier under the same key: a value set
        many times in the block (a portfolio's cash after each fill) is written once, the last.
        """
        self.rows.setdefault(many, {})[object() if replacing is None else replacing] = row

    def hand_to(self, outer: Holder) -> None:
        for many, rows in self.rows.items():
            outer.rows.setdefault(many, {}).update(rows)

    async def write(self) -> None:
        for many, rows in self.rows.items():
            columns = zip(*rows.values(), strict=True)
            await self.conn.execute(many, [list(column) for column in columns])


_HOLDER: ContextVar[Holder | None] = ContextVar("wealthalloc_held_writes", default=None)


def _holder(conn: Conn) -> Holder | None:
    """The open block holding ``conn``'s rows, if any; another connection's rows are not held."""
    held = _HOLDER.get()
    return held if held is not None and held.conn is conn else None


async def write(conn: Conn, many: str, row: tuple[Any, ...], *, replacing: object = None) -> None:
    """Hand ``row`` to ``conn``'s open block (:meth:`Holder.add`), or write it now with ``many``."""
    held = _holder(conn)
    if held is not None:
        held.add(many, row, replacing=replacing)
    else:
        await conn.execute(many, [[value] for value in row])


@asynccontextmanager
async def writes_together(conn: Conn) -> AsyncIterator[None]:
    """Hold the rows ``conn`` gets inside the block and write them when it ends (see the module)."""
    outer = _holder(conn)
    held = Holder(conn)
    token = _HOLDER.set(held)
    try:
        yield
    finally:
        _HOLDER.reset(token)
    if outer is not None:
        held.hand_to(outer)
    else:
        await held.write()
