"""A fill that changed the spouse's lots: the spouse's cached book and snapshots are dropped before it is
acknowledged.

Why this exists. In a joint-filing household a loss sale by A makes B's recent purchase of the same
security its replacement: A's fill rewrites B's lot (basis raised, holding period moved back) in
A's transaction. B's books are cached by B's ``PortfolioShard`` (the book in memory, snapshots
in Redis that the API serves directly), and B's shard may be another actor.

The choice: each user keeps their own shard (routing stays by user, see
:mod:`actors.shard_router`), and consistency comes from two things:

- in PostgreSQL, every fill that matches across a household locks the household's row first
  (:func:`wealthalloc.storage.households.wash_sale_circle`), so A's and B's fills serialize on
  it, and a member leaving waits for them;
- after A's fill commits, and before it is acknowledged, A's shard has B's shard forget B's book
  and drop the snapshots of B's changed portfolios, under B's lock (:func:`forget_locally`): a
  read of B that loaded the book before the commit has finished writing its snapshot by then,
  and is deleted; any read after loads the committed lots.

Routing every member of a household to one shard was the alternative. It needs every API
replica and the broker gateway to agree, on every call, which household a user is in: a lookup
per request, or a cache that for a while routes a member who just joined to two writers. The
eviction here costs one extra call only on the rare fill that changes the spouse's lots.

The eviction runs after the filling user's lock is released, never under it: two spouses'
fills, each evicting the other's book, cannot wait on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection

from wealthalloc.logging import get_logger
from wealthalloc.portfolios.service import BookService
from wealthalloc.storage import households

log = get_logger(__name__)

# Drop ``user_id``'s cached book and the snapshots of ``portfolio_ids`` on the shard that owns the user.
Evict = Callable[[uuid.UUID, frozenset[uuid.UUID]], Awaitable[None]]


async def forget_locally(book: BookService, user_id: uuid.UUID, portfolio_ids: Collection[uuid.UUID]) -> None:
    """On the shard that owns ``user_id``: under the user's lock, forget the book and drop the snapshots."""
    async with book.changing(user_id):
        for portfolio_id in portfolio_ids:
            await book.drop_snapshot(user_id, portfolio_id)


async def forget_spouse_books(
    book: BookService, user_id: uuid.UUID, changed: Collection[uuid.UUID], evict: Evict | None
) -> None:
    """After a fill of ``user_id`` committed: evict the owners of ``changed`` portfolios who are not the
    user (the spouse's, when a wash sale crossed the household). ``evict`` reaches the owner's shard;
    without one (a single shard, tests) the owner's book is forgotten here."""
    if not changed:
        return
    async with book.pool.connection() as conn:
        owners = await households.owners_of(conn, changed)
    others: dict[uuid.UUID, set[uuid.UUID]] = {}
    for portfolio_id, owner in owners.items():
        if owner != user_id:
            others.setdefault(owner, set()).add(portfolio_id)
    for owner, portfolio_ids in sorted(others.items()):
        try:
            if evict is None:
                await forget_locally(book, owner, portfolio_ids)
            else:
                await evict(owner, frozenset(portfolio_ids))
        except Exception as exc:
            # The fill is committed; the snapshot TTL bounds what a failed eviction leaves. Say so loudly.
            log.error("household_book_eviction_failed", user_id=str(owner), error=str(exc))
