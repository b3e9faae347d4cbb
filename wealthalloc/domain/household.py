"""Who may join whom in a joint-filing household: the rules, without storage.

Spouses who file one joint return are one taxpayer for the wash-sale rule (IRS Publication 550,
"Wash Sales": a sale at a loss by one and a purchase of substantially identical stock by the
other is a wash sale). A household links exactly two people, both consenting: one invites the
other by address, the other accepts. While linked, both tax profiles say ``married_joint``: the
deduction limit and the harvesting estimates then match the return they file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

JOINT_FILING_STATUS = "married_joint"
INVITATION_LIFETIME = timedelta(days=14)


class HouseholdRefusal(Exception):
    """A household change the rules do not allow, with the code the API answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Invitation:
    """What the acceptance rule needs of a stored invitation."""

    invitee_email: str
    status: str
    expires_at: datetime


def check_invite(*, inviter_email: str, invitee_email: str, inviter_in_household: bool) -> None:
    """An invitation may be sent by someone not yet in a household, to an address not their own.

    Whether the invitee exists or is in a household is not checked here: the answer to the
    inviter must not tell (acceptance checks it)."""
    if invitee_email.strip().lower() == inviter_email.strip().lower():
        raise HouseholdRefusal(
            400, "CANNOT_INVITE_YOURSELF", "A household is two people: invite someone else."
        )
    if inviter_in_household:
        raise HouseholdRefusal(
            409, "ALREADY_IN_HOUSEHOLD", "You are in a household already: leave it before inviting someone."
        )


def check_acceptance(
    invitation: Invitation,
    *,
    acceptor_email: str,
    acceptor_in_household: bool,
    inviter_in_household: bool,
    now: datetime,
) -> None:
    """Only the invited address accepts, once, before it expires, and neither person may be in a
    household already. Someone else's invitation is "not found": ids do not leak."""
    if invitation.invitee_email.strip().lower() != acceptor_email.strip().lower():
        raise HouseholdRefusal(404, "NOT_FOUND", "No such invitation.")
    if invitation.status != "pending":
        raise HouseholdRefusal(409, "INVITATION_CLOSED", f"This invitation is {invitation.status} already.")
    if invitation.expires_at <= now:
        raise HouseholdRefusal(409, "INVITATION_EXPIRED", "This invitation has expired: ask for a new one.")
    if acceptor_in_household:
        raise HouseholdRefusal(
            409, "ALREADY_IN_HOUSEHOLD", "You are in a household already: leave it before joining another."
        )
    if inviter_in_household:
        raise HouseholdRefusal(
            409, "INVITER_IN_HOUSEHOLD", "The person who invited you has joined another household since."
        )
