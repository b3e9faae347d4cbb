-- 0016 joint-filing households: two people who file one joint return, so a wash sale by one of them
-- counts the other's purchases too (IRS Publication 550, "Wash Sales": "If you sell stock and your
-- spouse ... buys substantially identical stock, you also have a wash sale").
--
-- A household is made when an invited person accepts; it always has exactly its two members while it
-- stands, and it ends (dissolved_at) when either leaves. household_members' primary key is the user:
-- a person is in at most one household at a time. The household row is also the lock that serializes
-- the members' fills (wealthalloc/storage/households.py, wash_sale_circle).
CREATE TABLE households (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    dissolved_at  TIMESTAMPTZ
);

CREATE TABLE household_members (
    user_id       UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    household_id  UUID NOT NULL REFERENCES households (id) ON DELETE CASCADE,
    joined_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX household_members_household ON household_members (household_id);

-- An invitation names the invitee by address only: inviting an address nobody has registered looks
-- exactly like inviting one that exists, and whoever registers it later may accept.
CREATE TABLE household_invitations (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    inviter_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    invitee_email  TEXT NOT NULL CHECK (char_length(invitee_email) BETWEEN 3 AND 320),
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'accepted', 'declined', 'withdrawn')),
    household_id   UUID REFERENCES households (id) ON DELETE SET NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    responded_at   TIMESTAMPTZ
);
-- Inviting the same address again while the first invitation waits returns that invitation.
CREATE UNIQUE INDEX household_invitations_one_pending
    ON household_invitations (inviter_id, lower(invitee_email)) WHERE status = 'pending';
CREATE INDEX household_invitations_invitee ON household_invitations (lower(invitee_email));
