-- 0012 settlement: the trading day each fill traded on. A sale's proceeds settle the next trading
-- day (T+1); until then they may buy but not be withdrawn, so the book reads the recent sell fills
-- by this day. Fills recorded before this migration take their order's day (or their own date).
ALTER TABLE fills ADD COLUMN market_date DATE;

UPDATE fills f SET market_date = coalesce(o.market_date, f.executed_at::date)
FROM orders o WHERE o.id = f.order_id;
