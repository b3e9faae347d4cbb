"""Executing a harvest in the shard that owns the user: sell the loss lots, buy the replacement, once.

``POST /tax-harvesting/{id}/execute`` follows the rebalance pattern of the
order desk. Under the request's Idempotency-Key, in one transaction, the
opportunity is checked again against the book as it is now (still a loss
above the thresholds, no purchase that would make the sale a wash sale), the
plan is fixed (the lots to sell by specific identification, the replacement
shares to buy), the ``tax_harvests`` row becomes ``executed`` with its
``wash_sale_window_end``, and its event is written. From that commit on, a
buy of the harvested security in any of the user's portfolios is refused
until the window ends (:func:`wealthalloc.portfolios.wash_sales.blocking_harvest`).

Then the two orders are placed through :meth:`OrderDesk.place` under the
derived keys ``{key}/0`` (the sale) and ``{key}/1`` (the replacement), origin
``harvest``: a repeat of the request, or a retry after the shard died, finds
the stored plan and the same two orders. A refused order is reported, not
raised, as a rebalance does; the buy is not placed when the sale was refused.
When the sale's or the replacement's quote is stale, the whole harvest is
refused with 409 ``QUOTE_STALE`` and nothing is written.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from wealthalloc.domain.harvest import Opportunity
from wealthalloc.domain.money import money
from wealthalloc.domain.quote_freshness import PlannedOrder
from wealthalloc.domain.wash_sale import WASH_SALE_DAYS
from wealthalloc.errors import ServiceError
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.portfolios import wash_sales
from wealthalloc.portfolios.service import BookService, Mutation, jsonable, not_found
from wealthalloc.storage import books as store
from wealthalloc.storage import tax as tax_store
from wealthalloc.storage.outbox import add_event
from wealthalloc.tax.harvesting import TOPIC, HarvestPlanner, describe, harvest_values, load_taxpayer
from wealthalloc.trading import rules
from wealthalloc.trading.desk import OrderDesk, Part, derived_key, market_order

# What the replacement budget leaves for the sale's spread and slippage below today's close.
SALE_HAIRCUT = Decimal("0.01")


class HarvestDesk:
    """Carries out harvesting opportunities through the order desk of the same shard.

    Parameters
    ----------
    book : BookService
        The shard's books (locks, the idempotency path, the market).
    desk : OrderDesk
        Places the orders, with every pre-trade check an order from the API gets.
    planner : HarvestPlanner
        Re-checks the opportunity; replacements are not searched here (the user chose one).
    commission : CommissionModel
        Of the broker, to size the replacement purchase.
    collar : Decimal
        Price protection of market buys: the cash a buy reserves is priced this far above the close.
    """

    def __init__(
        self,
        book: BookService,
        desk: OrderDesk,
        planner: HarvestPlanner,
        *,
        commission: rules.CommissionModel,
        collar: Decimal,
    ) -> None:
        self._book = book
        self._desk = desk
        self._planner = planner
        self._commission = commission
        self._collar = collar

    async def execute(
        self, m: Mutation, harvest_id: uuid.UUID, replacement_symbol: str
    ) -> tuple[int, dict[str, Any]]:
        """Sell the opportunity's lots and buy ``replacement_symbol``, once per Idempotency-Key."""
        market = self._book.market
        today = market.today()
        replacement = replacement_symbol.strip().upper()
        async with self._book.pool.connection() as conn:
            row = await tax_store.harvest(conn, harvest_id)
        if row is None or row["user_id"] != m.user_id:
            raise not_found("harvest opportunity")
        if not market.known(replacement):
            raise ServiceError(
                400, "UNKNOWN_SYMBOL", f"No security {replacement} is known.", {"symbol": replacement}
            )
        if market.info(replacement).asset_class == "index":
            raise ServiceError(
                400,
                "INVALID_REPLACEMENT",
                f"{replacement} is an index and cannot be bought.",
                {"replacement_symbol": replacement},
            )

        planned: list[bool] = []  # stays empty when the key's earlier answer is replayed
        seen = await self._desk.plan_quotes((row["symbol"], replacement))

        async def work(conn: store.Conn, portfolio: dict[str, Any]) -> tuple[int, Any]:
            planned.append(True)
            plan = await self._plan(conn, m, portfolio, harvest_id, replacement, today)
            # A stale quote under the sale or the replacement refuses the harvest, and the rollback
            # leaves the opportunity open: no record, no window, no order.
            orders = [PlannedOrder(plan[side]["symbol"]) for side in ("sell", "buy") if plan[side]]
            self._desk.refuse_stale_plan(orders, seen)
            return 201, plan

        def parts(plan: Any) -> list[Part]:
            """The sale, then its replacement buy, which waits for the sale to be placed."""
            if plan["sell"] is None:
                return []
            sale = [Part(derived_key(m, 0), _order_spec(plan["sell"]))]
            if plan["buy"] is None:
                return sale
            return [*sale, Part(derived_key(m, 1), _order_spec(plan["buy"]), after=0)]

        status, plan, outcomes = await self._desk.place_many(m, row["portfolio_id"], work, parts, "harvest")
        orders: dict[str, Any] = {"sell": None, "buy": None}
        refused: list[dict[str, Any]] = []
        for outcome in outcomes:
            side, symbol = outcome.part.spec["side"], outcome.part.spec["symbol"]
            if outcome.order is not None:
                orders[side] = outcome.order
            elif outcome.error is not None:
                refused.append({"side": side, "symbol": symbol, "error": outcome.error.as_dict()})
        async with self._book.pool.connection() as conn, conn.transaction():
            await tax_store.attach_orders(
                conn,
                harvest_id,
                sell_order_id=uuid.UUID(orders["sell"]["id"]) if orders["sell"] else None,
                buy_order_id=uuid.UUID(orders["buy"]["id"]) if orders["buy"] else None,
            )
            record = await tax_store.harvest(conn, harvest_id)
        assert record is not None
        if planned:
            ops_metrics.harvest_executed(record["estimated_tax_savings"])
        return status, jsonable(
            {
                "harvest": describe(record, today),
                "orders": orders,
                "refused": refused,
                "wash_sale_window_end": plan["wash_sale_window_end"],
            }
        )

    async def _plan(
        self,
        conn: store.Conn,
        m: Mutation,
        portfolio: dict[str, Any],
        harvest_id: uuid.UUID,
        replacement: str,
        today: date,
    ) -> dict[str, Any]:
        """Check the opportunity against the book as it is now, fix the orders and open the window."""
        current = await tax_store.harvest(conn, harvest_id, for_update=True)
        assert current is not None
        if current["status"] != "identified":
            raise ServiceError(
                409,
                "HARVEST_NOT_OPEN",
                f"This opportunity is {current['status']}; GET /api/v1/tax-harvesting lists current ones.",
                {"status": current["status"]},
            )
        symbol: str = current["symbol"]
        groups = await tax_store.identity_groups(conn)
        if groups.identical(symbol, replacement):
            raise ServiceError(
                400,
                "SUBSTANTIALLY_IDENTICAL",
                f"{replacement} is substantially identical to {symbol}: buying it would disallow the loss.",
                {"symbol": symbol, "replacement_symbol": replacement},
            )
        wash_sales.refuse_blocked(
            replacement, await wash_sales.blocking_harvest(conn, m.user_id, replacement, today)
        )
        taxpayer = await load_taxpayer(conn, m.user_id, today)
        assert taxpayer is not None
        found = [
            item
            for item in self._planner.opportunities(taxpayer, today, replacements=False)
            if item.account_id == str(portfolio["id"]) and item.symbol == symbol
        ]
        if not found:
            raise ServiceError(
                409,
                "HARVEST_NOT_AVAILABLE",
                f"{symbol} no longer shows a loss worth harvesting in this portfolio.",
                {"symbol": symbol},
            )
        opportunity = found[0]
        if opportunity.blockers:
            raise ServiceError(
                409,
                "WASH_SALE_RISK",
                f"Selling {symbol} now would be a wash sale: clear the purchases listed first.",
                {"blockers": [blocker.detail for blocker in opportunity.blockers]},
            )
        power = await self._book.power_of(conn, m.user_id, portfolio)
        cash = max(power.for_buys, Decimal(0))
        quantity = self._replacement_quantity(opportunity, replacement, cash, today)
        window_end = today + timedelta(days=WASH_SALE_DAYS)
        values = harvest_values(opportunity, today)
        values["details"]["replacements"] = (current["details"] or {}).get("replacements", [])
        await tax_store.mark_executed(
            conn,
            harvest_id,
            execution_key=m.idempotency_key or "",
            replacement_symbol=replacement,
            wash_sale_window_end=window_end,
            values=values,
        )
        await add_event(
            conn,
            topic=TOPIC,
            event_type="tax_harvests.executed",
            user_id=m.user_id,
            aggregate_id=harvest_id,
            payload={
                "harvest_id": harvest_id,
                "portfolio_id": portfolio["id"],
                "symbol": symbol,
                "replacement_symbol": replacement,
                "loss_amount": opportunity.loss,
                "estimated_tax_savings": opportunity.estimated_tax_savings,
                "wash_sale_window_end": window_end,
                "lot_ids": opportunity.lot_ids,
                "by": m.actor_id,
            },
        )
        sell = {
            "symbol": symbol,
            "side": "sell",
            "quantity": opportunity.shares,
            "lot_ids": opportunity.lot_ids,
        }
        buy = {"symbol": replacement, "side": "buy", "quantity": quantity} if quantity > 0 else None
        return jsonable(  # type: ignore[no-any-return]
            {"harvest_id": harvest_id, "sell": sell, "buy": buy, "wash_sale_window_end": window_end}
        )

    def _replacement_quantity(
        self, opportunity: Opportunity, replacement: str, cash: Decimal, today: date
    ) -> Decimal:
        """Whole shares of the replacement worth what is sold at today's close (the exposure kept),
        no more than the cash after the sale can reserve under price protection."""
        close = self._book.market.close(replacement, today)
        wanted = (opportunity.market_value / close).to_integral_value(rounding=ROUND_FLOOR)
        proceeds = money(opportunity.market_value * (1 - SALE_HAIRCUT)) - self._commission(
            opportunity.shares, opportunity.price
        )
        cap = (close * (1 + self._collar)).quantize(Decimal("0.0001"))
        budget = cash + proceeds
        quantity = min(wanted, (budget / cap).to_integral_value(rounding=ROUND_FLOOR))
        while quantity > 0 and money(quantity * cap) + self._commission(quantity, cap) > budget:
            quantity -= 1
        return max(quantity, Decimal(0))


def _order_spec(planned: dict[str, Any]) -> dict[str, Any]:
    """An order of the stored plan as :meth:`OrderDesk.place_many` takes it (a sale names its lots)."""
    spec = market_order(planned["symbol"], planned["side"], planned["quantity"])
    if planned.get("lot_ids"):
        spec["lot_method"] = "specific"
        spec["lot_ids"] = [uuid.UUID(i) for i in planned["lot_ids"]]
    return spec
