-- 0011 sessions: one row per login (a refresh-token family), so access tokens can end with it.
-- Access tokens name their session (claim "sid" = id); the API checks the session is not revoked
-- before it trusts a token, so a sign-out, a password or MFA change, or an admin's deletion ends
-- the login's access tokens at once instead of when they expire. authenticated_at is when the
-- password (and TOTP) was checked; refreshes keep it, and MFA and API-key changes need it recent.
CREATE TABLE sessions (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    authenticated_at TIMESTAMPTZ NOT NULL,
    revoked_at       TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;

-- Logins made before this migration keep going (their refresh tokens stay valid), dated by their
-- first refresh token; one whose every token is revoked is a revoked session.
INSERT INTO sessions (id, user_id, authenticated_at, revoked_at, created_at)
SELECT family_id,
       (array_agg(user_id))[1],
       min(created_at),
       CASE WHEN bool_or(revoked_at IS NULL) THEN NULL ELSE max(revoked_at) END,
       min(created_at)
FROM refresh_tokens
GROUP BY family_id;
