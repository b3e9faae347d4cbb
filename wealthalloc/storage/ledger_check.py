"""Does the system of record add up? The money invariants, checked from PostgreSQL alone.

Run after anything that could have lost or doubled a write (a node killed under load,
a restore, a migration): every state change and its ledger rows commit in one
transaction, so in any snapshot these hold, and a row here is a defect, not a race.

- A portfolio's cash is the sum of its cash movements, and its last movement's
  ``balance_after``.
- Every fill moved cash exactly once (one ``trade`` movement references it), in
  the direction of its side.
- An order's fills add up to its filled quantity, never more than it asked for.
- A holding is the sum of its open lots.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

# Each check is one query returning (portfolio_id, what is wrong) rows; ``%(users)s`` is the set of
# users to check, or NULL for everyone (``%%s`` is format()'s placeholder, escaped for psycopg).
_CHECKS: dict[str, str] = {
    "cash_is_the_sum_of_movements": """
        SELECT p.id, format('cash %%s, movements sum to %%s', p.cash_balance, coalesce(m.total, 0))
        FROM portfolios p
        LEFT JOIN (SELECT portfolio_id, sum(amount) AS total FROM cash_movements GROUP BY portfolio_id) m
               ON m.portfolio_id = p.id
        WHERE (%(users)s::uuid[] IS NULL OR p.user_id = ANY(%(users)s::uuid[]))
          AND p.cash_balance <> coalesce(m.total, 0)""",
    "cash_is_the_last_balance_after": """
        SELECT p.id, format('cash %%s, last movement left %%s', p.cash_balance, last.balance_after)
        FROM portfolios p
        JOIN LATERAL (SELECT balance_after FROM cash_movements c WHERE c.portfolio_id = p.id
                      ORDER BY seq DESC LIMIT 1) last ON true
        WHERE (%(users)s::uuid[] IS NULL OR p.user_id = ANY(%(users)s::uuid[]))
          AND p.cash_balance <> last.balance_after""",
    "each_fill_moves_cash_once": """
        SELECT o.portfolio_id, format('fill %%s of order %%s moved cash %%s time(s)', f.id, o.id, count(c.id))
        FROM fills f
        JOIN orders o ON o.id = f.order_id
        LEFT JOIN cash_movements c ON c.reference_id = f.id AND c.kind = 'trade'
        WHERE (%(users)s::uuid[] IS NULL OR o.user_id = ANY(%(users)s::uuid[]))
        GROUP BY o.portfolio_id, f.id, o.id
        HAVING count(c.id) <> 1""",
    "a_fill_moves_cash_its_sides_way": """
        SELECT o.portfolio_id, format('%%s fill %%s moved cash by %%s', o.side, f.id, c.amount)
        FROM fills f
        JOIN orders o ON o.id = f.order_id
        JOIN cash_movements c ON c.reference_id = f.id AND c.kind = 'trade'
        WHERE (%(users)s::uuid[] IS NULL OR o.user_id = ANY(%(users)s::uuid[]))
          AND ((o.side = 'buy' AND c.amount >= 0) OR (o.side = 'sell' AND c.amount <= 0))""",
    "fills_add_up_to_the_order": """
        SELECT o.portfolio_id,
               format('order %%s (%%s of %%s) has fills for %%s', o.id, o.filled_quantity, o.quantity,
                      coalesce(sum(f.quantity), 0))
        FROM orders o
        LEFT JOIN fills f ON f.order_id = o.id
        WHERE (%(users)s::uuid[] IS NULL OR o.user_id = ANY(%(users)s::uuid[]))
        GROUP BY o.id
        HAVING coalesce(sum(f.quantity), 0) <> o.filled_quantity OR o.filled_quantity > o.quantity""",
    "holdings_are_the_open_lots": """
        SELECT coalesce(h.portfolio_id, l.portfolio_id),
               format('%%s: holding %%s, open lots %%s', coalesce(h.symbol, l.symbol),
                      coalesce(h.shares, 0), coalesce(l.shares, 0))
        FROM (SELECT h.* FROM holdings h JOIN portfolios p ON p.id = h.portfolio_id
              WHERE %(users)s::uuid[] IS NULL OR p.user_id = ANY(%(users)s::uuid[])) h
        FULL JOIN (SELECT l.portfolio_id, l.symbol, sum(l.shares) AS shares
                   FROM lots l JOIN portfolios p ON p.id = l.portfolio_id
                   WHERE l.closed_at IS NULL
                     AND (%(users)s::uuid[] IS NULL OR p.user_id = ANY(%(users)s::uuid[]))
                   GROUP BY l.portfolio_id, l.symbol HAVING sum(l.shares) > 0) l
               ON l.portfolio_id = h.portfolio_id AND l.symbol = h.symbol
        WHERE coalesce(h.shares, 0) <> coalesce(l.shares, 0)""",
}


@dataclass(frozen=True)
class Discrepancy:
    check: str
    portfolio_id: uuid.UUID
    detail: str


@dataclass(frozen=True)
class LedgerReport:
    portfolios: int
    discrepancies: tuple[Discrepancy, ...]

    @property
    def balanced(self) -> bool:
        return not self.discrepancies


def check_ledger(database_url: str, users: Sequence[uuid.UUID] | None = None) -> LedgerReport:
    """Run every check in one REPEATABLE READ snapshot, over ``users`` (everyone when None)."""
    params = {"users": [str(u) for u in users] if users is not None else None}
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            counted = conn.execute(
                "SELECT count(*) FROM portfolios"
                " WHERE %(users)s::uuid[] IS NULL OR user_id = ANY(%(users)s::uuid[])",
                params,
            ).fetchone()
            found = [
                Discrepancy(name, portfolio_id, detail)
                for name, query in _CHECKS.items()
                for portfolio_id, detail in conn.execute(query, params).fetchall()
            ]
    return LedgerReport(portfolios=int(counted[0]) if counted else 0, discrepancies=tuple(found))
