-- 0018 linked accounts: a person's accounts at other brokers, synced into one of their portfolios,
-- and transfers-in that wait for proof (docs/linked-accounts.md).
--
-- external_accounts (0002) becomes the linked account. The account number is never stored in the
-- clear: account_number_sealed is nonce || AES-256-GCM ciphertext under the key account_number_key_id
-- of the key ring, with the owner's user id as associated data (a ciphertext moved to another row
-- does not decrypt); account_number_index is an HMAC of it (its own key) so one person cannot link
-- the same account twice while it is linked; account_number_masked is what every answer shows.
ALTER TABLE external_accounts DROP CONSTRAINT IF EXISTS external_accounts_status_check;
ALTER TABLE external_accounts ADD CONSTRAINT external_accounts_status_check
    CHECK (status IN ('pending', 'active', 'error', 'disconnected', 'unlinked'));
ALTER TABLE external_accounts DROP CONSTRAINT IF EXISTS external_accounts_provider_check;
ALTER TABLE external_accounts ADD CONSTRAINT external_accounts_provider_check
    CHECK (provider IN ('ibkr', 'csv'));
ALTER TABLE external_accounts
    ADD COLUMN name                  TEXT CHECK (char_length(name) BETWEEN 1 AND 200),
    ADD COLUMN portfolio_id          UUID REFERENCES portfolios (id),
    ADD COLUMN account_number_sealed BYTEA,
    ADD COLUMN account_number_key_id TEXT CHECK (char_length(account_number_key_id) BETWEEN 1 AND 64),
    ADD COLUMN account_number_index  BYTEA,
    ADD COLUMN last_sync_error       TEXT CHECK (char_length(last_sync_error) <= 500),
    ADD COLUMN broker_cash            NUMERIC(20,4),
    ADD COLUMN unlinked_at           TIMESTAMPTZ;
-- A row written from now on carries the sealed number with the key that sealed it.
ALTER TABLE external_accounts ADD CONSTRAINT external_accounts_sealed_check
    CHECK ((account_number_sealed IS NULL) = (account_number_key_id IS NULL));
CREATE UNIQUE INDEX external_accounts_one_link
    ON external_accounts (user_id, provider, account_number_index) WHERE unlinked_at IS NULL;
-- A portfolio mirrors one account: two accounts synced into it would each see the other's shares as
-- differences.
CREATE UNIQUE INDEX external_accounts_one_per_portfolio
    ON external_accounts (portfolio_id) WHERE unlinked_at IS NULL;
-- The re-encryption command walks rows by key id.
CREATE INDEX external_accounts_key ON external_accounts (account_number_key_id);

-- Where a linked account and the portfolio it syncs into disagree. A later sync updates the open item
-- of the same kind and symbol (or resolves it when the difference is gone); nothing is overwritten.
CREATE TABLE reconciliation_items (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    linked_account_id  UUID NOT NULL REFERENCES external_accounts (id),
    portfolio_id       UUID NOT NULL REFERENCES portfolios (id),
    user_id            UUID NOT NULL REFERENCES users (id),
    kind               TEXT NOT NULL
                       CHECK (kind IN ('missing_here', 'missing_at_broker', 'quantity_mismatch', 'cash_mismatch')),
    symbol             TEXT CHECK (symbol IS NULL OR char_length(symbol) BETWEEN 1 AND 16),
    broker_quantity    NUMERIC(20,6),
    platform_quantity  NUMERIC(20,6),
    broker_cash        NUMERIC(20,4),
    platform_cash      NUMERIC(20,4),
    -- The pending transfer-in lots a position missing here arrived as.
    lot_ids            UUID[] NOT NULL DEFAULT '{}',
    status             TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    first_seen_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at        TIMESTAMPTZ,
    CHECK ((kind = 'cash_mismatch') = (symbol IS NULL))
);
CREATE UNIQUE INDEX reconciliation_items_open
    ON reconciliation_items (linked_account_id, kind, coalesce(symbol, '')) WHERE status = 'open';
CREATE INDEX reconciliation_items_account ON reconciliation_items (linked_account_id, first_seen_at DESC);

-- Transfers-in wait for proof before they can be sold: transfer_status 'pending' until a sync of a
-- broker account vouches for the shares or an advisor or admin confirms them with a reason. NULL for
-- every lot that did not come in as a transfer (bought here, gifts, inheritances).
ALTER TABLE lots
    ADD COLUMN transfer_status      TEXT CHECK (transfer_status IN ('pending', 'confirmed')),
    ADD COLUMN transfer_confirmed_at TIMESTAMPTZ,
    ADD COLUMN transfer_confirmed_by UUID REFERENCES users (id),
    ADD COLUMN transfer_confirmation TEXT CHECK (char_length(transfer_confirmation) BETWEEN 1 AND 500),
    ADD COLUMN linked_account_id    UUID REFERENCES external_accounts (id);
ALTER TABLE lots ADD CONSTRAINT lots_transfer_only_check
    CHECK (transfer_status IS NULL OR source = 'transfer_in');
CREATE INDEX lots_pending ON lots (portfolio_id, symbol) WHERE transfer_status = 'pending';
