-- 0017 notifications: what a person is told in the app and by e-mail, their choices per kind, and
-- where each login came from (to tell a sign-in from a new device or address).

-- One row per notification. source_event_id is the event it came from (or, for something announced
-- by several events, a stable id of that thing): unique per user, so a consumer that reads an event
-- again inserts nothing. in_app = false keeps the row only to carry its e-mail (the person turned
-- the kind off in the app); lists and counts read in_app rows only.
--
-- E-mail: email_next_at is when the mailer may next try (NULL: nothing to send, because it was not
-- wanted, was sent, or was given up). The mailer claims a row by moving email_next_at past its
-- sending time and counting the attempt, sends, then sets emailed_at; email_error keeps the last
-- failure.
CREATE TABLE notifications (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('trade_fill', 'order_rejected', 'price_alert',
                        'harvest_opportunity', 'recommendation', 'cash_movement', 'security')),
    title           TEXT NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    body            TEXT NOT NULL CHECK (char_length(body) <= 2000),
    link            TEXT CHECK (char_length(link) <= 500),
    data            JSONB NOT NULL DEFAULT '{}',
    source_event_id UUID NOT NULL,
    in_app          BOOLEAN NOT NULL DEFAULT true,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at         TIMESTAMPTZ,
    email_wanted    BOOLEAN NOT NULL DEFAULT false,
    email_next_at   TIMESTAMPTZ,
    emailed_at      TIMESTAMPTZ,
    email_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (email_attempts >= 0),
    email_error     TEXT CHECK (char_length(email_error) <= 500),
    CONSTRAINT notifications_one_per_source UNIQUE (user_id, source_event_id),
    CHECK (email_next_at IS NULL OR (email_wanted AND emailed_at IS NULL))
);
-- The list, newest first, and the cursor that pages it: (created_at, id) descending.
CREATE INDEX idx_notifications_list ON notifications (user_id, created_at DESC, id DESC) WHERE in_app;
-- The bell's count and the unread filter.
CREATE INDEX idx_notifications_unread ON notifications (user_id, created_at DESC) WHERE in_app AND read_at IS NULL;
-- The mailer's question: which e-mails are due?
CREATE INDEX idx_notifications_mail_due ON notifications (email_next_at) WHERE email_next_at IS NOT NULL;

-- What a person changed from the defaults, per kind: {"trade_fill": {"email": false}}. The defaults
-- live in the code (wealthalloc/notifications/preferences.py), so a changed default reaches
-- everyone who kept it.
CREATE TABLE notification_preferences (
    user_id    UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kinds      JSONB NOT NULL DEFAULT '{}',
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Where a login came from. Logins made before this migration have neither, and a sign-in is
-- "new" only against logins that have them (see wealthalloc/storage/notifications.py).
ALTER TABLE sessions
    ADD COLUMN ip     TEXT CHECK (char_length(ip) <= 100),
    ADD COLUMN device TEXT CHECK (char_length(device) <= 300);
CREATE INDEX idx_sessions_user_created ON sessions (user_id, created_at DESC);
