-- 0013 user disable: an admin suspends an account (suspected compromise, compliance hold) and
-- reinstates it later without losing anything. While disabled_at is set, the session check and
-- the API-key lookup refuse the user (in the queries they already run, so no request pays an extra
-- one), refresh tokens and sign-ins are refused; portfolios, orders and data stay as they are.
-- disabled_reason is the operator's note (1-500 characters), shown to admins only.
-- One statement, so CockroachDB applies the columns and their check as one schema change.
ALTER TABLE users
    ADD COLUMN disabled_at TIMESTAMPTZ,
    ADD COLUMN disabled_reason TEXT,
    ADD CONSTRAINT users_disabled_check CHECK (
        (disabled_at IS NULL AND disabled_reason IS NULL)
        OR (disabled_at IS NOT NULL AND length(disabled_reason) BETWEEN 1 AND 500)
    );
