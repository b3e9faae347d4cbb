-- 0007 tax-loss harvesting: wash sales applied by the trading path, opportunities with stable ids,
-- executed harvests' windows, and the daily scan's bookkeeping.

-- Every wash sale the trading path applied: (part of) the loss booked on one realized row, taken
-- by the replacement shares of one lot. A realized row's wash_sale_disallowed is the sum of its
-- rows here; a lot named as a replacement has absorbed a loss and absorbs no other. A replacement
-- in an IRA or Roth IRA takes no basis: the loss is lost for good (permanent).
CREATE TABLE wash_sales (
    id                       UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                  UUID NOT NULL REFERENCES users (id),
    realized_lot_id          UUID NOT NULL REFERENCES realized_lots (id),
    replacement_lot_id       UUID NOT NULL REFERENCES lots (id),
    replacement_portfolio_id UUID NOT NULL REFERENCES portfolios (id),
    replacement_account_type TEXT NOT NULL CHECK (replacement_account_type IN ('taxable', 'ira', 'roth_ira')),
    symbol                   TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    replacement_symbol       TEXT NOT NULL CHECK (char_length(replacement_symbol) BETWEEN 1 AND 16
                                                  AND replacement_symbol = upper(replacement_symbol)),
    sold_at                  DATE NOT NULL,
    replacement_acquired_at  DATE NOT NULL,
    shares                   NUMERIC(20,6) NOT NULL CHECK (shares > 0),
    disallowed               NUMERIC(20,4) NOT NULL CHECK (disallowed >= 0),
    -- How far back the replacement's holding period moved (0 for an IRA replacement).
    holding_days             INT NOT NULL CHECK (holding_days >= 0),
    permanent                BOOLEAN NOT NULL,
    -- The fill that made the match: the loss sale's, or the replacement buy's.
    fill_id                  UUID REFERENCES fills (id),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (permanent = (replacement_account_type <> 'taxable'))
);
CREATE INDEX idx_wash_sales_realized ON wash_sales (realized_lot_id);
CREATE INDEX idx_wash_sales_replacement ON wash_sales (replacement_lot_id);
CREATE INDEX idx_wash_sales_user_sold ON wash_sales (user_id, sold_at);

-- Opportunities are tax_harvests rows with status 'identified'. A refresh (the daily scan, or a
-- user reading GET /tax-harvesting) updates the open row of a position in place, so its id stays
-- the same while the position remains an opportunity and execute can name it.
-- identified_on: the market day of the last refresh. details: lots, price, blockers and replacement
-- candidates as shown to the user. execution_key: the Idempotency-Key that executed it.
ALTER TABLE tax_harvests
    ADD COLUMN identified_on DATE,
    ADD COLUMN details       JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN execution_key TEXT CHECK (char_length(execution_key) BETWEEN 1 AND 255),
    ADD COLUMN updated_date  TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE UNIQUE INDEX tax_harvests_open_position_key ON tax_harvests (portfolio_id, symbol)
    WHERE status = 'identified';
-- Before every buy: is an executed harvest's window still open for this user and symbol?
CREATE INDEX idx_tax_harvests_user_window ON tax_harvests (user_id, symbol, wash_sale_window_end)
    WHERE status = 'executed';

-- The daily harvest scan: one row per (user, market day) scanned, written in the transaction that
-- refreshes the user's opportunities and writes their events, so a rerun of the same day skips them.
CREATE TABLE harvest_scans (
    user_id       UUID NOT NULL REFERENCES users (id),
    scan_date     DATE NOT NULL,
    opportunities INT NOT NULL DEFAULT 0 CHECK (opportunities >= 0),
    events        INT NOT NULL DEFAULT 0 CHECK (events >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, scan_date)
);
CREATE INDEX idx_harvest_scans_date ON harvest_scans (scan_date);
