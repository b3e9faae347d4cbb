-- 0002 intelligence and tax: recommendations, harvesting, linked accounts, learning content.

CREATE TABLE ai_recommendations (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       UUID NOT NULL REFERENCES users (id),
    portfolio_id  UUID REFERENCES portfolios (id),
    kind          TEXT NOT NULL CHECK (kind IN ('buy', 'sell', 'rebalance', 'reduce_risk', 'anomaly')),
    symbol        TEXT CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    rationale     TEXT NOT NULL,
    confidence    NUMERIC(5,4) NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'dismissed')),
    model_version TEXT,
    -- Model-specific figures (reconstruction error, threshold, target weights ...).
    details       JSONB NOT NULL DEFAULT '{}',
    created_date  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_recommendations_user_status ON ai_recommendations (user_id, status);
CREATE INDEX idx_recommendations_portfolio_status ON ai_recommendations (portfolio_id, status)
    WHERE portfolio_id IS NOT NULL;

-- Harvesting opportunities and what became of them. loss_amount is the size of the loss as a
-- positive number; lot_ids is a JSON array of lot id strings.
CREATE TABLE tax_harvests (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               UUID NOT NULL REFERENCES users (id),
    portfolio_id          UUID NOT NULL REFERENCES portfolios (id),
    symbol                TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    lot_ids               JSONB NOT NULL DEFAULT '[]',
    loss_amount           NUMERIC(20,4) NOT NULL CHECK (loss_amount >= 0),
    term                  TEXT NOT NULL CHECK (term IN ('short', 'long', 'mixed')),
    estimated_tax_savings NUMERIC(20,4) NOT NULL DEFAULT 0 CHECK (estimated_tax_savings >= 0),
    replacement_symbol    TEXT CHECK (char_length(replacement_symbol) BETWEEN 1 AND 16
                                      AND replacement_symbol = upper(replacement_symbol)),
    status                TEXT NOT NULL DEFAULT 'identified' CHECK (status IN ('identified', 'executed', 'expired')),
    -- Last day of the 61-day window (sale date + 30) in which buying the symbol back is a wash sale.
    wash_sale_window_end  DATE,
    sell_order_id         UUID REFERENCES orders (id),
    buy_order_id          UUID REFERENCES orders (id),
    created_date          TIMESTAMPTZ NOT NULL DEFAULT now(),
    executed_at           TIMESTAMPTZ,
    CHECK (status <> 'executed' OR executed_at IS NOT NULL)
);
CREATE INDEX idx_tax_harvests_user_status ON tax_harvests (user_id, status);
CREATE INDEX idx_tax_harvests_portfolio_symbol ON tax_harvests (portfolio_id, symbol);
-- Open wash-sale windows are checked before every buy.
CREATE INDEX idx_tax_harvests_window ON tax_harvests (portfolio_id, wash_sale_window_end)
    WHERE status = 'executed';

-- Substantially identical securities: a sale of one member and a buy of any member of the same
-- group within 30 days is a wash sale. A symbol in no group is identical only to itself.
CREATE TABLE wash_sale_groups (
    group_name   TEXT NOT NULL CHECK (char_length(group_name) BETWEEN 1 AND 100),
    symbol       TEXT NOT NULL CHECK (char_length(symbol) BETWEEN 1 AND 16 AND symbol = upper(symbol)),
    created_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, symbol)
);
CREATE INDEX idx_wash_sale_groups_symbol ON wash_sale_groups (symbol);

-- Accounts at other institutions. Only a masked number is ever stored: no run of 5+ digits.
CREATE TABLE external_accounts (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               UUID NOT NULL REFERENCES users (id),
    provider              TEXT NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 100),
    account_number_masked TEXT NOT NULL CHECK (account_number_masked !~ '[0-9]{5,}'),
    account_type          TEXT,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'active', 'error', 'disconnected')),
    last_synced_at        TIMESTAMPTZ,
    created_date          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_date          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_external_accounts_user ON external_accounts (user_id);

CREATE TABLE educational_videos (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title            TEXT NOT NULL,
    url              TEXT NOT NULL,
    topic            TEXT NOT NULL,
    duration_seconds INT NOT NULL CHECK (duration_seconds > 0),
    level            TEXT NOT NULL DEFAULT 'beginner' CHECK (level IN ('beginner', 'intermediate', 'advanced')),
    created_date     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT educational_videos_url_key UNIQUE (url)
);
CREATE INDEX idx_educational_videos_topic ON educational_videos (topic, level);

INSERT INTO educational_videos (title, url, topic, duration_seconds, level) VALUES
    ('Diversification: why one stock is not a portfolio',
     'https://learn.wealthalloc.dev/videos/diversification-basics', 'diversification', 420, 'beginner'),
    ('Asset allocation and rebalancing bands',
     'https://learn.wealthalloc.dev/videos/allocation-and-rebalancing', 'allocation', 540, 'beginner'),
    ('Tax lots, cost basis and FIFO versus HIFO',
     'https://learn.wealthalloc.dev/videos/tax-lots-and-cost-basis', 'tax', 600, 'intermediate'),
    ('Tax-loss harvesting and the wash-sale rule',
     'https://learn.wealthalloc.dev/videos/tax-loss-harvesting', 'tax', 720, 'intermediate'),
    ('Reading risk: volatility, drawdown, VaR and beta',
     'https://learn.wealthalloc.dev/videos/reading-risk-metrics', 'risk', 660, 'advanced'),
    ('Taxable, traditional IRA or Roth IRA: where to hold what',
     'https://learn.wealthalloc.dev/videos/account-types-and-asset-location', 'accounts', 480, 'beginner')
ON CONFLICT (url) DO NOTHING;
