"""Joint-filing households: invite, accept, decline or withdraw, leave; each change audited, with its event.

Why it exists: a married couple filing jointly is one taxpayer for the wash-sale rule, so once
both say so, one spouse's purchases can defer the other's loss (see docs/tax-households.md).
Linking two people's tax books is a person's decision: only a signed-in person (never an API key)
invites or accepts, both with a recent sign-in; either may leave at any time.

Invariants, each kept in one transaction with the audit entry and the outbox event:

- a person is in at most one household (``household_members``' primary key is the user; the
  users' rows are locked in id order before checking);
- while linked, both tax profiles' ``filing_status`` is ``married_joint`` (set on acceptance,
  PATCH /me refuses another); after leaving, each keeps ``married_joint`` until they change it,
  since what they file next is theirs to say;
- an invitation answers the same for an address that has an account and one that has not.

Leaving locks the household's row, the same row a fill matching across the household locks
(:func:`wealthalloc.storage.households.wash_sale_circle`): a household never ends in the middle of
a fill that counts the other member's lots.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from wealthalloc.accounts.errors import person_required, reauthentication_required
from wealthalloc.domain.household import (
    INVITATION_LIFETIME,
    JOINT_FILING_STATUS,
    HouseholdRefusal,
    Invitation,
    check_acceptance,
    check_invite,
)
from wealthalloc.errors import ServiceError
from wealthalloc.security.access import Principal, signed_in_recently
from wealthalloc.storage import households as store
from wealthalloc.storage.audit import append_audit, new_entry
from wealthalloc.storage.books import Conn, Row
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool

TOPIC = "accounts.notices"


class Households:
    """The household resource of the signed-in person."""

    def __init__(
        self,
        pool: AsyncPool,
        *,
        fresh_login: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._fresh_login = fresh_login
        self._now = now

    def _require_person(self, principal: Principal, *, fresh: bool) -> None:
        if not principal.is_person:
            raise person_required()
        if fresh and not signed_in_recently(principal, now=self._now(), within=self._fresh_login):
            raise reauthentication_required(int(self._fresh_login.total_seconds()))

    async def show(self, principal: Principal) -> dict[str, Any]:
        """The caller's household (or ``None``) and the pending invitations they sent or received."""
        self._require_person(principal, fresh=False)
        async with self._pool.connection() as conn:
            return await _view(conn, principal)

    async def invite(self, principal: Principal, email: str, *, ip: str) -> dict[str, Any]:
        """Invite an address; the same address again while pending is the same invitation."""
        self._require_person(principal, fresh=True)
        email = email.strip()
        async with self._pool.connection() as conn, conn.transaction():
            await store.lock_users(conn, [principal.user_id])
            mine = await store.household_of(conn, principal.user_id)
            _refused(
                lambda: check_invite(
                    inviter_email=principal.email, invitee_email=email, inviter_in_household=mine is not None
                )
            )
            row = await store.pending_invitation(conn, principal.user_id, email)
            if row is None or row["expires_at"] <= self._now():
                if row is not None:
                    await store.close_invitation(conn, row["id"], "withdrawn")
                row = await store.insert_invitation(
                    conn,
                    inviter_id=principal.user_id,
                    email=email,
                    expires_at=self._now() + INVITATION_LIFETIME,
                )
                await add_event(
                    conn,
                    topic=TOPIC,
                    event_type="household.invitation_sent",
                    user_id=principal.user_id,
                    aggregate_id=row["id"],
                    payload={
                        "invitation_id": row["id"],
                        "inviter_id": principal.user_id,
                        "invitee_email": email,
                        "expires_at": row["expires_at"].isoformat(),
                    },
                )
                await _audit(conn, "household.invite", principal, ip, {"invitation_id": str(row["id"])})
        return _invitation(row, principal, inviter_email=principal.email)

    async def accept(self, principal: Principal, invitation_id: uuid.UUID, *, ip: str) -> dict[str, Any]:
        """Join the inviter's household: both profiles file jointly from now on."""
        self._require_person(principal, fresh=True)
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.invitation(conn, invitation_id)
            if row is None:
                raise ServiceError(404, "NOT_FOUND", "No such invitation.")
            people = {
                r["id"]: r for r in await store.lock_users(conn, [principal.user_id, row["inviter_id"]])
            }
            row = await store.invitation(conn, invitation_id, for_update=True)
            me = people.get(principal.user_id)
            if row is None or me is None or row["inviter_id"] not in people:
                raise ServiceError(404, "NOT_FOUND", "No such invitation.")
            mine = await store.household_of(conn, principal.user_id)
            theirs = await store.household_of(conn, row["inviter_id"])
            stored = Invitation(
                invitee_email=row["invitee_email"], status=row["status"], expires_at=row["expires_at"]
            )
            _refused(
                lambda: check_acceptance(
                    stored,
                    acceptor_email=me["email"],
                    acceptor_in_household=mine is not None,
                    inviter_in_household=theirs is not None,
                    now=self._now(),
                )
            )
            members = sorted([principal.user_id, row["inviter_id"]])
            household_id = await store.create_household(conn, members)
            await store.close_invitation(conn, invitation_id, "accepted", household_id)
            await store.set_filing_status(conn, members, JOINT_FILING_STATUS)
            await add_event(
                conn,
                topic=TOPIC,
                event_type="household.joined",
                user_id=principal.user_id,
                aggregate_id=household_id,
                payload={"household_id": household_id, "invitation_id": invitation_id, "members": members},
            )
            await _audit(
                conn,
                "household.accept",
                principal,
                ip,
                {
                    "household_id": str(household_id),
                    "invitation_id": str(invitation_id),
                    "members": [str(m) for m in members],
                    "filing_status_was": {str(k): v["filing_status"] for k, v in people.items()},
                },
            )
            return await _view(conn, principal)

    async def close(self, principal: Principal, invitation_id: uuid.UUID, *, ip: str) -> None:
        """The inviter withdraws, or the invitee declines, a pending invitation."""
        self._require_person(principal, fresh=False)
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.invitation(conn, invitation_id, for_update=True)
            mine = row is not None and row["inviter_id"] == principal.user_id
            to_me = (
                row is not None and row["invitee_email"].strip().lower() == principal.email.strip().lower()
            )
            if row is None or not (mine or to_me):
                raise ServiceError(404, "NOT_FOUND", "No such invitation.")
            if row["status"] != "pending":
                raise ServiceError(409, "INVITATION_CLOSED", f"This invitation is {row['status']} already.")
            status = "withdrawn" if mine else "declined"
            await store.close_invitation(conn, invitation_id, status)
            await _audit(
                conn, f"household.invitation_{status}", principal, ip, {"invitation_id": str(invitation_id)}
            )

    async def leave(self, principal: Principal, *, ip: str) -> None:
        """End the caller's household (for both members): from now on each one's wash sales are their own."""
        self._require_person(principal, fresh=False)
        async with self._pool.connection() as conn, conn.transaction():
            household = await store.household_of(conn, principal.user_id, for_update=True)
            if household is None:
                raise ServiceError(404, "NOT_FOUND", "You are not in a household.")
            members = await store.dissolve(conn, household["id"])
            await add_event(
                conn,
                topic=TOPIC,
                event_type="household.left",
                user_id=principal.user_id,
                aggregate_id=household["id"],
                payload={"household_id": household["id"], "left_by": principal.user_id, "members": members},
            )
            await _audit(
                conn,
                "household.leave",
                principal,
                ip,
                {"household_id": str(household["id"]), "members": [str(m) for m in members]},
            )


async def files_jointly(conn: Conn, user_id: uuid.UUID) -> bool:
    """Whether the user is in a household (and so must keep filing ``married_joint``)."""
    return await store.household_of(conn, user_id) is not None


def _refused(check: Callable[[], None]) -> None:
    try:
        check()
    except HouseholdRefusal as exc:
        raise ServiceError(exc.status, exc.code, exc.message) from exc


async def _audit(conn: Conn, action: str, principal: Principal, ip: str, details: Mapping[str, Any]) -> None:
    await append_audit(
        conn,
        new_entry(
            action, actor_id=principal.user_id, subject=f"user:{principal.user_id}", details=details, ip=ip
        ),
    )


async def _view(conn: Conn, principal: Principal) -> dict[str, Any]:
    household = await store.household_of(conn, principal.user_id)
    shown: dict[str, Any] | None = None
    if household is not None:
        shown = {
            "id": household["id"],
            "created_at": household["created_at"],
            "filing_status": JOINT_FILING_STATUS,
            "members": [
                {
                    "user_id": m["user_id"],
                    "email": m["email"],
                    "full_name": m["full_name"],
                    "joined_at": m["joined_at"],
                    "you": m["user_id"] == principal.user_id,
                }
                for m in await store.members(conn, household["id"])
            ],
        }
    rows = await store.invitations_of(conn, principal.user_id, principal.email)
    return {
        "household": shown,
        "invitations": [_invitation(r, principal, inviter_email=r["inviter_email"]) for r in rows],
    }


def _invitation(row: Row, principal: Principal, *, inviter_email: str) -> dict[str, Any]:
    sent = row["inviter_id"] == principal.user_id
    base = f"/api/v1/me/household/invitations/{row['id']}"
    return {
        "id": row["id"],
        "direction": "sent" if sent else "received",
        "inviter_email": inviter_email,
        "invitee_email": row["invitee_email"],
        "status": row["status"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "links": {"self": base} if sent else {"accept": f"{base}/accept", "decline": base},
    }
