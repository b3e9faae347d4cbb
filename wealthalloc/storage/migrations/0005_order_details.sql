-- What an order needs beyond the seed's columns.
-- lot_method / lot_ids: a sell may name its relief method or its lots (specific identification
--   must be made at the time of the sale), overriding the portfolio's method.
-- price_cap: price protection. A buy never fills above it (limit price, or the reference price plus
--   the collar for market and stop orders), so the cash reserved at placement always covers the fill.
-- market_date: the trading day the order was placed on; a day order expires when the clock passes it.
-- origin: who asked for it (the API, a rebalance, a tax-loss harvest).
ALTER TABLE orders
    ADD COLUMN lot_method   TEXT CHECK (lot_method IN ('fifo', 'hifo', 'specific')),
    ADD COLUMN lot_ids      JSONB,
    ADD COLUMN price_cap    NUMERIC(20,6) CHECK (price_cap > 0),
    ADD COLUMN market_date  DATE,
    ADD COLUMN origin       TEXT NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'rebalance', 'harvest')),
    ADD COLUMN submitted_at TIMESTAMPTZ,
    ADD CONSTRAINT orders_specific_lots CHECK (lot_method IS DISTINCT FROM 'specific' OR lot_ids IS NOT NULL),
    ADD CONSTRAINT orders_lots_on_sells CHECK (side = 'sell' OR (lot_method IS NULL AND lot_ids IS NULL));

-- The gateway looks for orders that never reached a broker (placed while it was away).
CREATE INDEX idx_orders_pending ON orders (created_date) WHERE status = 'pending';
-- Open orders across all users, for the paper broker's tick and for reconciliation.
CREATE INDEX idx_orders_open_all ON orders (broker, created_date)
    WHERE status IN ('submitted', 'partially_filled');
