-- 0001 core: people, portfolios and everything that moves money or shares.
--
-- House rules for every migration (PostgreSQL 14+ and CockroachDB read the same file):
--   * UUID primary keys with DEFAULT gen_random_uuid(); TIMESTAMPTZ; JSONB; no extensions,
--     no PL/pgSQL, no triggers: invariants are CHECK and UNIQUE constraints the database enforces.
--   * Money NUMERIC(20,4); share quantities NUMERIC(20,6); prices NUMERIC(20,6); rates NUMERIC(6,5).
--   * Enumerations are TEXT with a CHECK (... IN (...)) list, so adding a value is one ALTER, not a type.
--   * Mutable domain rows carry created_date / updated_date (the seed document's names);
--     append-only records carry created_at.
--   * Money records (orders, fills, trades, cash, realized lots) are never cascaded away:
--     their foreign keys are NO ACTION. Deleting users and portfolios is a soft delete (deleted_at).

CREATE TABLE users (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email                 TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320 AND email LIKE '%_@_%'),
    password_hash         TEXT NOT NULL,
    full_name             TEXT,
    role                  TEXT NOT NULL DEFAULT 'investor' CHECK (role IN ('investor', 'advisor', 'admin')),
    tier                  TEXT NOT NULL DEFAULT 'standard' CHECK (tier IN ('standard', 'premium')),
    risk_tolerance        TEXT NOT NULL DEFAULT 'moderate'
                          CHECK (risk_tolerance IN ('conservative', 'moderate', 'aggressive')),
    investment_experience TEXT NOT NULL DEFAULT 'beginner'
                          CHECK (investment_experience IN ('beginner', 'intermediate', 'advanced')),
    -- Tax profile. federal_rate / state_rate are marginal income-tax rates; short_term_rate and
    -- long_term_rate are the combined (federal + state) rates applied to realized gains and to
    -- estimated harvesting savings.
    filing_status         TEXT NOT NULL DEFAULT 'single'
                          CHECK (filing_status IN ('single', 'married_joint', 'married_separate',
                                                   'head_of_household')),
    federal_rate          NUMERIC(6,5) NOT NULL DEFAULT 0.22 CHECK (federal_rate BETWEEN 0 AND 1),
    state_rate            NUMERIC(6,5) NOT NULL DEFAULT 0.05 CHECK (state_rate BETWEEN 0 AND 1),
    short_term_rate       NUMERIC(6,5) NOT NULL DEFAULT 0.27 CHECK (short_term_rate BETWEEN 0 AND 1),
    long_term_rate        NUMERIC(6,5) NOT NULL DEFAULT 0.20 CHECK (long_term_rate BETWEEN 0 AND 1),
    mfa_secret            TEXT,
    mfa_enabled           BOOLEAN NOT NULL DEFAULT false,
    -- The last accepted TOTP time step: a code is accepted only for a later step (no replay).
    mfa_last_counter      BIGINT,
    failed_logins         INT NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until          TIMESTAMPTZ,
    deleted_at            TIMESTAMPTZ,
    created_date          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (NOT mfa_enabled OR mfa_secret IS NOT NULL)
);
-- One account per address whatever its case; deleted accounts keep their address reserved.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Which advisor may read which investor's portfolios. source says how the link came to be.
CREATE TABLE advisor_clients (
    advisor_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_by   UUID REFERENCES users (id),
    source       TEXT NOT NULL CHECK (source IN ('admin', 'client_consent')),
    created_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (advisor_id, client_id),
    CHECK (advisor_id <> client_id)
);
CREATE INDEX idx_advisor_clients_client ON advisor_clients (client_id);

CREATE TABLE portfolios (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             UUID NOT NULL REFERENCES users (id),
    name                TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    account_type        TEXT NOT NULL DEFAULT 'taxable' CHECK (account_type IN ('taxable', 'ira', 'roth_ira')),
    base_currency       TEXT NOT NULL DEFAULT 'USD' CHECK (char_length(base_currency) = 3),
    is_default          BOOLEAN NOT NULL DEFAULT false,
    lot_method          TEXT NOT NULL DEFAULT 'fifo' CHECK (lot_method IN ('fifo', 'hifo', 'specific')),
    cash_balance        NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (cash_balance >= 0),
    -- Cached aggregates: total_value = cash_balance + sum(holdings.market_value);
    -- total_gain_loss = sum(holdings.unrealized_gain_loss) (unrealized only).
    total_value         NUMERIC(20,4) NOT NULL DEFAULT 0,
    total_gain_loss     NUMERIC(20,4) NOT NULL DEFAULT 0,
    risk_score          NUMERIC(5,2) CHECK (risk_score BETWEEN 0 AND 100),
    target_allocation   JSONB NOT NULL DEFAULT '{}',
    last_rebalance_date TIMESTAMPTZ,
    -- Optimistic concurrency: UPDATE ... SET version = version + 1 WHERE id = $1 AND version = $2.
    version             BIGINT NOT NULL DEFAULT 1,
    created_date        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date        TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ
);
CREATE INDEX idx_portfolios_user ON portfolios (user_id) WHERE deleted_at IS NULL;
-- At most one default portfolio per user.
CREATE UNIQUE INDEX portfolios_one_default_per_user ON portfolios (user_id) WHERE is_default AND deleted_at IS NULL;
-- A name is a portfolio's natural key for its owner, which makes "create portfolio" idempotent.
CREATE UNIQUE INDEX portfolios_user_name_key ON portfolios (user_id, name) WHERE deleted_at IS NULL;

-- The seed's positions table: one row per (portfolio, symbol), derived from the open lots.
CREATE TABLE holdings (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id         UUID NOT NULL REFERENCES portfolios (id),
    symbol               TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    shares               NUMERIC(20,6) NOT NULL CHECK (shares >= 0),
    average_cost         NUMERIC(20,6) NOT NULL DEFAULT 0 CHECK (average_cost >= 0),
    current_price        NUMERIC(20,6) CHECK (current_price >= 0),
    market_value         NUMERIC(20,4),
    unrealized_gain_loss NUMERIC(20,4),
    created_date         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT holdings_portfolio_symbol_key UNIQUE (portfolio_id, symbol)
);
CREATE INDEX idx_holdings_portfolio_id ON holdings (portfolio_id);
CREATE INDEX idx_holdings_symbol ON holdings (symbol);

CREATE TABLE orders (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id       UUID NOT NULL REFERENCES portfolios (id),
    user_id            UUID NOT NULL REFERENCES users (id),
    -- The client's Idempotency-Key: the same key never makes a second order (DESIGN.md, Orders).
    idempotency_key    TEXT NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    -- Hash of the request body: the same key with a different body is a client error, not a replay.
    request_hash       TEXT NOT NULL,
    symbol             TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    side               TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity           NUMERIC(20,6) NOT NULL CHECK (quantity > 0),
    order_type         TEXT NOT NULL DEFAULT 'market'
                       CHECK (order_type IN ('market', 'limit', 'stop', 'stop_limit')),
    limit_price        NUMERIC(20,6) CHECK (limit_price > 0),
    stop_price         NUMERIC(20,6) CHECK (stop_price > 0),
    time_in_force      TEXT NOT NULL DEFAULT 'day' CHECK (time_in_force IN ('day', 'gtc')),
    status             TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'submitted', 'partially_filled', 'filled',
                                         'cancelled', 'rejected', 'expired')),
    filled_quantity    NUMERIC(20,6) NOT NULL DEFAULT 0,
    average_fill_price NUMERIC(20,6) CHECK (average_fill_price > 0),
    -- Cash held back for an open buy (estimated cost plus commission), released on fill or cancel.
    reserved_cash      NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (reserved_cash >= 0),
    broker             TEXT NOT NULL DEFAULT 'paper',
    broker_order_id    TEXT,
    reject_reason      TEXT,
    created_date       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_user_idempotency_key UNIQUE (user_id, idempotency_key),
    CHECK (filled_quantity >= 0 AND filled_quantity <= quantity),
    CHECK (order_type NOT IN ('limit', 'stop_limit') OR limit_price IS NOT NULL),
    CHECK (order_type NOT IN ('stop', 'stop_limit') OR stop_price IS NOT NULL),
    CHECK (status <> 'filled' OR filled_quantity = quantity)
);
CREATE INDEX idx_orders_portfolio_created ON orders (portfolio_id, created_date DESC);
CREATE INDEX idx_orders_user_created ON orders (user_id, created_date DESC);
-- Open orders count against buying power and shares available.
CREATE INDEX idx_orders_open ON orders (portfolio_id, symbol)
    WHERE status IN ('pending', 'submitted', 'partially_filled');
-- Reconciliation after a reconnect looks orders up by the broker's id.
CREATE UNIQUE INDEX orders_broker_order_key ON orders (broker, broker_order_id) WHERE broker_order_id IS NOT NULL;

-- Executions. fill_id is the key that makes applying a fill exactly-once: the INSERT of a fill
-- and its effects on lots and cash share one transaction, so a replayed fill fails the UNIQUE.
CREATE TABLE fills (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id       UUID NOT NULL REFERENCES orders (id),
    fill_id        TEXT NOT NULL CHECK (char_length(fill_id) BETWEEN 1 AND 255),
    quantity       NUMERIC(20,6) NOT NULL CHECK (quantity > 0),
    price          NUMERIC(20,6) NOT NULL CHECK (price > 0),
    commission     NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (commission >= 0),
    executed_at    TIMESTAMPTZ NOT NULL,
    broker_exec_id TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT fills_fill_id_key UNIQUE (fill_id)
);
CREATE INDEX idx_fills_order ON fills (order_id, executed_at);
CREATE UNIQUE INDEX fills_broker_exec_key ON fills (broker_exec_id) WHERE broker_exec_id IS NOT NULL;

-- Tax lots. shares, cost_basis and adjusted_basis describe what is still held: a partial sale
-- reduces them and writes the relieved part to realized_lots. original_shares never changes.
-- acquired_at / holding_period_start are trade dates (exchange calendar), not instants.
CREATE TABLE lots (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id         UUID NOT NULL REFERENCES portfolios (id),
    symbol               TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    shares               NUMERIC(20,6) NOT NULL CHECK (shares >= 0),
    original_shares      NUMERIC(20,6) NOT NULL CHECK (original_shares > 0),
    cost_basis           NUMERIC(20,4) NOT NULL CHECK (cost_basis >= 0),
    -- cost_basis plus any wash-sale loss carried in from a replaced lot.
    adjusted_basis       NUMERIC(20,4) NOT NULL CHECK (adjusted_basis >= 0),
    acquired_at          DATE NOT NULL,
    -- Equals acquired_at unless a wash sale carried the replaced lot's holding period over.
    holding_period_start DATE NOT NULL,
    wash_sale_disallowed NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (wash_sale_disallowed >= 0),
    source               TEXT NOT NULL DEFAULT 'buy'
                         CHECK (source IN ('buy', 'transfer_in', 'harvest_replacement')),
    opened_by_fill_id    UUID REFERENCES fills (id),
    closed_at            TIMESTAMPTZ,
    created_date         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (shares <= original_shares),
    CHECK (holding_period_start <= acquired_at)
);
-- Open lots of a position in FIFO order; HIFO sorts the same rows in memory.
CREATE INDEX idx_lots_open ON lots (portfolio_id, symbol, acquired_at) WHERE closed_at IS NULL;
CREATE INDEX idx_lots_portfolio ON lots (portfolio_id);
-- One lot per buy fill, so re-applying a fill cannot open a second lot.
CREATE UNIQUE INDEX lots_opened_by_fill_key ON lots (opened_by_fill_id) WHERE opened_by_fill_id IS NOT NULL;

-- The seed's trade history: one row per executed trade.
CREATE TABLE trades (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id  UUID NOT NULL REFERENCES portfolios (id),
    order_id      UUID REFERENCES orders (id),
    symbol        TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    side          TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    shares        NUMERIC(20,6) NOT NULL CHECK (shares > 0),
    price         NUMERIC(20,6) NOT NULL CHECK (price > 0),
    total_amount  NUMERIC(20,4) NOT NULL,
    commission    NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (commission >= 0),
    status        TEXT NOT NULL DEFAULT 'executed'
                  CHECK (status IN ('pending', 'executed', 'partially_executed', 'cancelled', 'failed')),
    ibkr_order_id TEXT,
    created_date  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_trades_portfolio_date ON trades (portfolio_id, created_date DESC);
CREATE INDEX idx_trades_order ON trades (order_id) WHERE order_id IS NOT NULL;

-- The cash ledger: every change of portfolios.cash_balance, signed, with the balance after it.
CREATE TABLE cash_movements (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id    UUID NOT NULL REFERENCES portfolios (id),
    amount          NUMERIC(20,4) NOT NULL CHECK (amount <> 0),
    kind            TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'trade', 'fee', 'dividend')),
    idempotency_key TEXT,
    -- The fill, order or harvest that caused a movement, when one did.
    reference_id    UUID,
    description     TEXT,
    balance_after   NUMERIC(20,4) NOT NULL CHECK (balance_after >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind NOT IN ('deposit', 'dividend') OR amount > 0),
    CHECK (kind NOT IN ('withdrawal', 'fee') OR amount < 0)
);
CREATE INDEX idx_cash_movements_portfolio ON cash_movements (portfolio_id, created_at DESC);
CREATE UNIQUE INDEX cash_movements_idempotency_key ON cash_movements (portfolio_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Realized sales, one row per (sell fill, lot relieved): the rows of Form 8949.
-- acquired_at is the holding-period start; cost_basis is the adjusted basis of the shares sold;
-- wash_sale_disallowed is the column (g) adjustment (code W), set when a replacement buy lands.
CREATE TABLE realized_lots (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    portfolio_id         UUID NOT NULL REFERENCES portfolios (id),
    lot_id               UUID NOT NULL REFERENCES lots (id),
    fill_id              UUID REFERENCES fills (id),
    symbol               TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    shares               NUMERIC(20,6) NOT NULL CHECK (shares > 0),
    acquired_at          DATE NOT NULL,
    sold_at              DATE NOT NULL,
    proceeds             NUMERIC(20,4) NOT NULL CHECK (proceeds >= 0),
    cost_basis           NUMERIC(20,4) NOT NULL CHECK (cost_basis >= 0),
    wash_sale_disallowed NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (wash_sale_disallowed >= 0),
    gain_loss            NUMERIC(20,4) NOT NULL,
    term                 TEXT NOT NULL CHECK (term IN ('short', 'long')),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (sold_at >= acquired_at)
);
CREATE INDEX idx_realized_lots_portfolio_sold ON realized_lots (portfolio_id, sold_at);
CREATE INDEX idx_realized_lots_symbol_sold ON realized_lots (portfolio_id, symbol, sold_at);
CREATE UNIQUE INDEX realized_lots_fill_lot_key ON realized_lots (fill_id, lot_id) WHERE fill_id IS NOT NULL;
