-- 0009 recommendations a user can act on: one open row per (portfolio, kind, symbol), what became of
-- it (accepted with its orders, dismissed with the reason, expired by a later run), and each
-- portfolio's last run.
--
-- as_of:          the market day the recommendation was computed for (its orders are priced then).
-- resolved_at/by: when and by whom it was accepted or dismissed.
-- dismiss_reason: why the user dismissed it, in their words.
-- accept_key:     the Idempotency-Key that accepted it; its orders were placed under the derived keys
--                 in order_keys ("{key}/0", "{key}/1", ...), which name them uniquely in orders
--                 (orders_user_idempotency_key), so the status and the orders are recorded together.
ALTER TABLE ai_recommendations
    ADD COLUMN as_of          DATE,
    ADD COLUMN resolved_at    TIMESTAMPTZ,
    ADD COLUMN resolved_by    UUID REFERENCES users (id),
    ADD COLUMN dismiss_reason TEXT CHECK (char_length(dismiss_reason) BETWEEN 1 AND 500),
    ADD COLUMN accept_key     TEXT CHECK (char_length(accept_key) BETWEEN 1 AND 255),
    ADD COLUMN order_keys     JSONB NOT NULL DEFAULT '[]';

-- 'expired': a later run no longer finds the recommendation (the book or the market moved on). The
-- column's CHECK was created unnamed: PostgreSQL calls it ai_recommendations_status_check,
-- CockroachDB check_status.
ALTER TABLE ai_recommendations DROP CONSTRAINT IF EXISTS ai_recommendations_status_check;
ALTER TABLE ai_recommendations DROP CONSTRAINT IF EXISTS check_status;
ALTER TABLE ai_recommendations ADD CONSTRAINT ai_recommendations_status_check
    CHECK (status IN ('open', 'accepted', 'dismissed', 'expired'));
ALTER TABLE ai_recommendations ADD CONSTRAINT ai_recommendations_dismissed_why
    CHECK (status <> 'dismissed' OR dismiss_reason IS NOT NULL);
ALTER TABLE ai_recommendations ADD CONSTRAINT ai_recommendations_accepted_how
    CHECK (status <> 'accepted' OR accept_key IS NOT NULL);

-- A regeneration replaces the open recommendation of the same kind and symbol instead of adding one.
CREATE UNIQUE INDEX ai_recommendations_open_key ON ai_recommendations (portfolio_id, kind, (coalesce(symbol, '')))
    WHERE status = 'open';
-- Recently dismissed or accepted ones are not offered again (Settings.recommendations_snooze_days).
CREATE INDEX idx_recommendations_portfolio_resolved ON ai_recommendations (portfolio_id, resolved_at)
    WHERE resolved_at IS NOT NULL;

-- Orders placed by accepting a recommendation say so.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_origin_check;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS check_origin;
ALTER TABLE orders ADD CONSTRAINT orders_origin_check
    CHECK (origin IN ('api', 'rebalance', 'harvest', 'recommendation'));

-- Each portfolio's last run: the book and risk tolerance it saw (fingerprint), the market day and when.
-- Listing recommendations runs again only when the fingerprint changed or the run is older than
-- Settings.recommendations_max_age_seconds; the row is also the lock that serializes two runs.
CREATE TABLE recommendation_runs (
    portfolio_id    UUID PRIMARY KEY REFERENCES portfolios (id),
    user_id         UUID NOT NULL REFERENCES users (id),
    fingerprint     TEXT NOT NULL DEFAULT '',
    as_of           DATE,
    recommendations INT NOT NULL DEFAULT 0 CHECK (recommendations >= 0),
    anomaly_checked BOOLEAN NOT NULL DEFAULT false,
    generated_at    TIMESTAMPTZ
);
CREATE INDEX idx_recommendation_runs_user ON recommendation_runs (user_id);
