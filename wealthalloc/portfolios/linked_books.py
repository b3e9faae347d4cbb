"""What a linked account's sync and a transfer's confirmation do to a book.

Both change lots, so both run on the shard that owns the user, under the user's lock
(:meth:`BookService.changing`), and commit the lots, the reconciliation items and their
events in one transaction. The rules are :func:`wealthalloc.linked_accounts.reconcile`'s;
here they meet PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from wealthalloc.domain.wash_sale_book import BasisTooSmall
from wealthalloc.errors import ServiceError
from wealthalloc.linked_accounts import (
    BrokerSnapshot,
    HeldPosition,
    PendingLot,
    StatementLot,
    reconcile,
)
from wealthalloc.logging import get_logger
from wealthalloc.portfolios import wash_sales
from wealthalloc.portfolios.service import TOPIC, BookService, Mutation, jsonable, not_found
from wealthalloc.storage import books as store
from wealthalloc.storage import linked_accounts as linked
from wealthalloc.storage import lots
from wealthalloc.storage.outbox import add_event

log = get_logger(__name__)

CONFIRMING_ROLES = frozenset({"advisor", "admin"})


def account_ref(account: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every linked-account event carries: never the number, only its masked form."""
    return {
        "linked_account_id": account["id"],
        "portfolio_id": account["portfolio_id"],
        "provider": account["provider"],
        "account_number_masked": account["account_number_masked"],
    }


class LinkedBooks:
    def __init__(self, book: BookService) -> None:
        self._book = book

    async def apply_snapshot(
        self, user_id: uuid.UUID, account_id: uuid.UUID, snapshot: BrokerSnapshot
    ) -> dict[str, Any]:
        """Reconcile the account's portfolio with the broker's ``snapshot``: items for every difference,
        pending lots for positions only the broker holds, confirmations the broker vouches for."""
        book = self._book
        async with book.changing(user_id):
            async with book.pool.connection() as conn, conn.transaction():
                account = await linked.account(conn, account_id, lock=True)
                if account is None or account["user_id"] != user_id:
                    raise not_found("linked account")
                if account["unlinked_at"] is not None:
                    raise ServiceError(409, "UNLINKED", "This account was unlinked; it no longer syncs.")
                portfolio = await store.portfolio_for_update(conn, user_id, account["portfolio_id"])
                if portfolio is None:
                    raise ServiceError(409, "PORTFOLIO_GONE", "The account's portfolio no longer exists.")
                held = await _held(conn, portfolio["id"])
                result = reconcile(snapshot, held, portfolio["cash_balance"])
                arrived: dict[str, list[uuid.UUID]] = {}
                for position in result.transfers_in:
                    if not book.market.known(position.symbol):
                        continue  # reported as an item; no price to value a lot with
                    for lot in position.arriving_lots():
                        arrived.setdefault(position.symbol, []).extend(
                            await self._arrive(conn, user_id, portfolio, account, position.symbol, lot)
                        )
                    await store.refresh_holdings(conn, portfolio["id"], position.symbol)
                reason = f"held at {account['provider']} account {account['account_number_masked']}"
                confirmed = await lots.confirm_lots(conn, result.confirm, by=None, reason=reason)
                open_items, resolved = await linked.record_differences(
                    conn, account=account, differences=result.differences, lots_by_symbol=arrived
                )
                synced = await linked.record_sync(
                    conn, account_id, status="active", broker_cash=snapshot.cash
                )
                new_lots = [lot_id for ids in arrived.values() for lot_id in ids]
                if new_lots or confirmed:
                    await conn.execute(
                        "UPDATE portfolios SET version = version + 1, updated_date = now() WHERE id = %s",
                        (portfolio["id"],),
                    )
                if confirmed:
                    await add_event(
                        conn,
                        topic=TOPIC,
                        event_type="portfolio.lot_confirmed",
                        user_id=user_id,
                        aggregate_id=portfolio["id"],
                        payload={
                            "portfolio_id": portfolio["id"],
                            "lot_ids": [row["id"] for row in confirmed],
                            "by": None,
                            "reason": reason,
                            "linked_account_id": account_id,
                        },
                    )
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type="linked_account.synced",
                    user_id=user_id,
                    aggregate_id=account_id,
                    payload={
                        **account_ref(account),
                        "differences": open_items,
                        "resolved": resolved,
                        "transfers_in": new_lots,
                        "confirmed": [row["id"] for row in confirmed],
                    },
                )
            await book.drop_snapshot(user_id, portfolio["id"])
        log.info(
            "linked_account_synced",
            linked_account_id=str(account_id),
            differences=open_items,
            transfers_in=len(new_lots),
            confirmed=len(confirmed),
        )
        return cast(
            dict[str, Any],
            jsonable(
                {
                    "account": synced,
                    "differences": open_items,
                    "resolved": resolved,
                    "transfers_in": new_lots,
                    "confirmed": [row["id"] for row in confirmed],
                }
            ),
        )

    async def _arrive(
        self,
        conn: store.Conn,
        user_id: uuid.UUID,
        portfolio: dict[str, Any],
        account: Mapping[str, Any],
        symbol: str,
        lot: StatementLot,
    ) -> list[uuid.UUID]:
        """A pending transfer-in lot: a purchase on its date for the wash-sale rule (the sync's market
        date when the broker does not say), sellable once confirmed."""
        day = lot.acquired_at or self._book.market.today()
        try:
            lot_id = await wash_sales.record_buy(
                conn,
                user_id=user_id,
                portfolio=portfolio,
                symbol=symbol,
                shares=lot.quantity,
                cost=lot.cost_basis,
                day=day,
                source="transfer_in",
                fill_row_id=None,
            )
        except BasisTooSmall:
            log.warning("linked_lot_basis_too_small", linked_account_id=str(account["id"]), symbol=symbol)
            return []
        return await lots.mark_pending(conn, lot_id, linked_account_id=account["id"])

    async def record_failure(self, user_id: uuid.UUID, account_id: uuid.UUID, reason: str) -> dict[str, Any]:
        """A sync that could not reach the broker: the account says why; the book is untouched."""
        async with self._book.pool.connection() as conn, conn.transaction():
            account = await linked.record_sync(conn, account_id, status="error", error=reason)
            if account is None or account["user_id"] != user_id:
                raise not_found("linked account")
            await add_event(
                conn,
                topic=TOPIC,
                event_type="linked_account.sync_failed",
                user_id=user_id,
                aggregate_id=account_id,
                payload={**account_ref(account), "reason": reason[:500]},
            )
        return cast(dict[str, Any], jsonable({"account": account}))

    async def confirm_lot(
        self, m: Mutation, portfolio_id: uuid.UUID, lot_id: uuid.UUID, reason: str
    ) -> tuple[int, Any]:
        """An advisor or admin vouches for a pending transfer (their reason is on the lot and in the
        audit trail); confirming a lot twice answers the lot as it is."""

        book = self._book
        async with book.changing(m.user_id):
            async with book.pool.connection() as conn, conn.transaction():
                row = await store.portfolio_for_update(conn, m.user_id, portfolio_id)
                lot = None if row is None else await linked.pending_lot(conn, portfolio_id, lot_id)
                if lot is None:
                    raise not_found("lot")
                if lot["transfer_status"] is None:
                    raise ServiceError(
                        409, "NOT_PENDING", "This lot was not transferred in; there is nothing to confirm."
                    )
                if lot["transfer_status"] == "pending":
                    await lots.confirm_lots(conn, [lot_id], by=m.actor_id, reason=reason)
                    await conn.execute(
                        "UPDATE portfolios SET version = version + 1, updated_date = now() WHERE id = %s",
                        (portfolio_id,),
                    )
                    await add_event(
                        conn,
                        topic=TOPIC,
                        event_type="portfolio.lot_confirmed",
                        user_id=m.user_id,
                        aggregate_id=portfolio_id,
                        payload={
                            "portfolio_id": portfolio_id,
                            "lot_ids": [lot_id],
                            "by": m.actor_id,
                            "reason": reason,
                        },
                    )
            await book.drop_snapshot(m.user_id, portfolio_id)
        return 200, jsonable(
            {
                "id": lot_id,
                "portfolio_id": portfolio_id,
                "symbol": lot["symbol"],
                "shares": lot["shares"],
                "transfer_status": "confirmed",
            }
        )


async def _held(conn: store.Conn, portfolio_id: uuid.UUID) -> dict[str, HeldPosition]:
    """The portfolio's open lots by symbol: settled shares and pending transfers apart."""
    cur = await conn.execute(
        """SELECT id, symbol, shares, acquired_at, transfer_status FROM lots
           WHERE portfolio_id = %s AND closed_at IS NULL AND shares > 0""",
        (portfolio_id,),
    )
    settled: dict[str, Decimal] = {}
    pending: dict[str, list[PendingLot]] = {}
    for row in await cur.fetchall():
        if row["transfer_status"] == "pending":
            pending.setdefault(row["symbol"], []).append(
                PendingLot(row["id"], row["shares"], row["acquired_at"])
            )
        else:
            settled[row["symbol"]] = settled.get(row["symbol"], Decimal(0)) + row["shares"]
    return {
        symbol: HeldPosition(symbol, settled.get(symbol, Decimal(0)), tuple(pending.get(symbol, ())))
        for symbol in settled.keys() | pending.keys()
    }
