"""Who may join whom in a joint-filing household."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wealthalloc.domain.household import HouseholdRefusal, Invitation, check_acceptance, check_invite

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
PENDING = Invitation(invitee_email="Bob@Example.com", status="pending", expires_at=NOW + timedelta(days=1))


def refusal(call: object, **kwargs: object) -> str:
    with pytest.raises(HouseholdRefusal) as caught:
        call(**kwargs)  # type: ignore[operator]
    return caught.value.code


def test_an_invitation_goes_to_someone_else_from_someone_not_yet_linked() -> None:
    check_invite(inviter_email="a@example.com", invitee_email="b@example.com", inviter_in_household=False)
    assert (
        refusal(
            check_invite,
            inviter_email="a@example.com",
            invitee_email=" A@Example.com",
            inviter_in_household=False,
        )
        == "CANNOT_INVITE_YOURSELF"
    )
    assert (
        refusal(
            check_invite,
            inviter_email="a@example.com",
            invitee_email="b@example.com",
            inviter_in_household=True,
        )
        == "ALREADY_IN_HOUSEHOLD"
    )


def test_the_invited_address_accepts_a_pending_invitation_whatever_its_case() -> None:
    check_acceptance(
        PENDING,
        acceptor_email="bob@example.com",
        acceptor_in_household=False,
        inviter_in_household=False,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("invitation", "email", "acceptor_linked", "inviter_linked", "code"),
    [
        (PENDING, "mallory@example.com", False, False, "NOT_FOUND"),  # someone else's: as if absent
        (PENDING, "mallory@example.com", True, True, "NOT_FOUND"),  # and it says nothing more
        (
            Invitation("bob@example.com", "accepted", NOW + timedelta(days=1)),
            "bob@example.com",
            False,
            False,
            "INVITATION_CLOSED",
        ),
        (
            Invitation("bob@example.com", "pending", NOW),
            "bob@example.com",
            False,
            False,
            "INVITATION_EXPIRED",
        ),
        (PENDING, "bob@example.com", True, False, "ALREADY_IN_HOUSEHOLD"),
        (PENDING, "bob@example.com", False, True, "INVITER_IN_HOUSEHOLD"),
    ],
)
def test_an_acceptance_is_refused(
    invitation: Invitation, email: str, acceptor_linked: bool, inviter_linked: bool, code: str
) -> None:
    got = refusal(
        check_acceptance,
        invitation=invitation,
        acceptor_email=email,
        acceptor_in_household=acceptor_linked,
        inviter_in_household=inviter_linked,
        now=NOW,
    )
    assert got == code
