-- 0006 price alerts, the daily price mark, and incoming webhooks as an inbox.

-- A user's alert on a symbol crossing a level. It fires once: the evaluator sets triggered_at in
-- the same transaction as the event that tells the user, and only where it is still NULL, so a
-- redelivered price event cannot fire it twice. reference_price is the price when it was set:
-- an "above" alert is set below its level and fires when the price reaches it, and so on.
CREATE TABLE price_alerts (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    symbol          TEXT NOT NULL CHECK (symbol ~ '^[A-Z][A-Z0-9.^-]{0,14}$'),
    direction       TEXT NOT NULL CHECK (direction IN ('above', 'below')),
    level           NUMERIC(20, 6) NOT NULL CHECK (level > 0),
    reference_price NUMERIC(20, 6) NOT NULL CHECK (reference_price > 0),
    note            TEXT CHECK (char_length(note) <= 200),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    triggered_at    TIMESTAMPTZ,
    triggered_price NUMERIC(20, 6),
    triggered_as_of TEXT,
    deleted_at      TIMESTAMPTZ,
    CHECK ((triggered_at IS NULL) = (triggered_price IS NULL))
);
-- The evaluator's question: which live alerts watch these symbols?
CREATE INDEX idx_price_alerts_armed ON price_alerts (symbol) WHERE triggered_at IS NULL AND deleted_at IS NULL;
CREATE INDEX idx_price_alerts_user ON price_alerts (user_id, created_at DESC);

-- One row per trading day whose closes were published as prices.updated: the publisher inserts
-- the mark and the event in one transaction, so a day is announced once however many publishers
-- run or restart.
CREATE TABLE price_marks (
    as_of        DATE PRIMARY KEY,
    symbols      INTEGER NOT NULL CHECK (symbols >= 0),
    published_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Incoming webhooks are kept until handled: the receipt commits first (the sender gets its 202),
-- then whoever handles the source marks it processed, so a crash in between leaves it to retry.
ALTER TABLE incoming_webhook_receipts
    ADD COLUMN processed_at TIMESTAMPTZ,
    ADD COLUMN outcome      TEXT CHECK (char_length(outcome) <= 500);
CREATE INDEX idx_incoming_webhook_receipts_unprocessed
    ON incoming_webhook_receipts (source, received_at) WHERE processed_at IS NULL;
