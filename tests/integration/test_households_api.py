"""Joint-filing households through the API: invite, accept, leave, and the refusals around them.

Real PostgreSQL, Redis and Ray. What the wash-sale rule does across a household is in
test_household_wash_sales.py.
"""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.integration.people import Investor, data, error, new_person, signed_in_long_ago

pytestmark = pytest.mark.integration

PATH = "/api/v1/me/household"


@pytest.fixture
def alice(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


@pytest.fixture
def bob(http: httpx.Client, database_url: str) -> Investor:
    return Investor(http, database_url)


def invite(inviter: Investor, email: str) -> dict[str, object]:
    return data(inviter.post(f"{PATH}/invitations", {"email": email}), 201)  # type: ignore[no-any-return]


def accept(invitee: Investor, invitation_id: object) -> httpx.Response:
    return invitee.post(f"{PATH}/invitations/{invitation_id}/accept")


def link(a: Investor, b: Investor) -> dict[str, object]:
    """A household of ``a`` and ``b``, as ``b`` sees it after accepting."""
    return data(accept(b, invite(a, b.email)["id"]))  # type: ignore[no-any-return]


def filing_status(database_url: str, user_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT filing_status FROM users WHERE id = %s", (user_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_an_accepted_invitation_links_both_people_who_then_file_jointly(
    alice: Investor, bob: Investor, database_url: str
) -> None:
    assert data(alice.get(PATH)) == {"household": None, "invitations": []}
    sent = invite(alice, bob.email.upper())
    assert sent["status"] == "pending" and sent["direction"] == "sent"
    assert invite(alice, bob.email)["id"] == sent["id"]  # inviting again while it waits: the same one
    [received] = data(bob.get(PATH))["invitations"]
    assert received["id"] == sent["id"] and received["direction"] == "received"
    assert received["inviter_email"] == alice.email

    joined = data(accept(bob, sent["id"]))["household"]
    assert sorted(m["user_id"] for m in joined["members"]) == sorted([alice.id, bob.id])
    assert joined["filing_status"] == "married_joint"
    assert data(alice.get(PATH))["household"]["id"] == joined["id"]
    assert filing_status(database_url, alice.id) == filing_status(database_url, bob.id) == "married_joint"
    refused = alice.http.patch("/api/v1/me", json={"filing_status": "single"}, headers=alice.headers)
    error(refused, 409, "HOUSEHOLD_FILES_JOINTLY")
    error(accept(bob, sent["id"]), 409, "INVITATION_CLOSED")  # accepted once only

    with psycopg.connect(database_url) as conn:
        events = conn.execute(
            """SELECT event_type FROM events WHERE aggregate_id = ANY(%s) ORDER BY sequence""",
            ([sent["id"], joined["id"]],),
        ).fetchall()
        audited = conn.execute(
            "SELECT action FROM audit_log WHERE actor_id = ANY(%s) AND action LIKE 'household.%%'",
            ([alice.id, bob.id],),
        ).fetchall()
    assert [e[0] for e in events] == ["household.invitation_sent", "household.joined"]
    assert sorted(a[0] for a in audited) == ["household.accept", "household.invite"]


def test_either_member_leaves_and_the_household_ends_for_both(
    alice: Investor, bob: Investor, database_url: str
) -> None:
    household = link(alice, bob)["household"]
    assert alice.delete(PATH).status_code == 204
    assert data(alice.get(PATH))["household"] is None and data(bob.get(PATH))["household"] is None
    error(bob.delete(PATH), 404, "NOT_FOUND")
    # Free to change the filing status again, and to link again.
    changed = alice.http.patch(
        "/api/v1/me", json={"filing_status": "married_separate"}, headers=alice.headers
    )
    assert changed.status_code == 200, changed.text
    assert link(bob, alice)["household"]["id"] != household["id"]
    with psycopg.connect(database_url) as conn:
        [(kind,)] = conn.execute(
            "SELECT event_type FROM events WHERE aggregate_id = %s AND event_type = 'household.left'",
            (household["id"],),
        ).fetchall()
    assert kind == "household.left"


def test_an_unknown_address_gets_the_same_answer_as_a_known_one(alice: Investor, bob: Investor) -> None:
    known = invite(alice, bob.email)
    unknown = invite(alice, f"nobody-{uuid.uuid4().hex[:10]}@example.com")
    assert set(known) == set(unknown)
    assert (known["status"], known["direction"]) == (unknown["status"], unknown["direction"])
    assert set(known["links"]) == set(unknown["links"])  # type: ignore[arg-type]


def test_inviting_yourself_is_refused(alice: Investor) -> None:
    error(alice.post(f"{PATH}/invitations", {"email": alice.email.upper()}), 400, "CANNOT_INVITE_YOURSELF")


def test_someone_in_a_household_can_neither_invite_nor_be_taken_into_another(
    http: httpx.Client, database_url: str, alice: Investor, bob: Investor
) -> None:
    carol = Investor(http, database_url)
    link(alice, bob)
    error(alice.post(f"{PATH}/invitations", {"email": carol.email}), 409, "ALREADY_IN_HOUSEHOLD")
    to_bob = invite(carol, bob.email)  # answered as any invitation: it does not say Bob is linked
    error(accept(bob, to_bob["id"]), 409, "ALREADY_IN_HOUSEHOLD")
    to_carol = invite(carol, f"x-{uuid.uuid4().hex[:8]}@example.com")
    error(accept(alice, to_carol["id"]), 404, "NOT_FOUND")


def test_only_the_invited_address_may_accept_and_ids_do_not_leak(
    http: httpx.Client, database_url: str, alice: Investor, bob: Investor
) -> None:
    mallory = Investor(http, database_url)
    sent = invite(alice, bob.email)
    error(accept(mallory, sent["id"]), 404, "NOT_FOUND")
    error(accept(mallory, uuid.uuid4()), 404, "NOT_FOUND")
    error(accept(alice, sent["id"]), 404, "NOT_FOUND")  # the inviter cannot accept for the invitee
    assert data(mallory.get(PATH))["invitations"] == []
    assert bob.delete(f"{PATH}/invitations/{sent['id']}").status_code == 204  # declined
    error(accept(bob, sent["id"]), 409, "INVITATION_CLOSED")


def test_an_api_key_can_neither_see_nor_change_a_household(alice: Investor, bob: Investor) -> None:
    key = data(alice.post("/api/v1/api-keys", {"name": "bot", "scopes": ["read", "trade"]}), 201)["key"]
    headers = {"X-API-Key": key, "X-Forwarded-For": alice.ip}
    sent = invite(bob, alice.email)
    http = alice.http
    error(http.get(PATH, headers=headers), 403, "FORBIDDEN")
    error(http.post(f"{PATH}/invitations", json={"email": bob.email}, headers=headers), 403, "FORBIDDEN")
    error(http.post(f"{PATH}/invitations/{sent['id']}/accept", headers=headers), 403, "FORBIDDEN")
    error(http.delete(PATH, headers=headers), 403, "FORBIDDEN")


def test_inviting_and_accepting_need_a_recent_sign_in_leaving_does_not(
    http: httpx.Client, database_url: str, alice: Investor
) -> None:
    bob = new_person(http, database_url, prefix="spouse")
    stale = signed_in_long_ago(bob, bob.login(), database_url)
    sent = invite(alice, bob.email)
    refused = http.post(f"{PATH}/invitations/{sent['id']}/accept", headers=stale.headers)
    error(refused, 401, "REAUTHENTICATION_REQUIRED")
    refused = http.post(f"{PATH}/invitations", json={"email": alice.email}, headers=stale.headers)
    error(refused, 401, "REAUTHENTICATION_REQUIRED")

    fresh = bob.login()
    data(http.post(f"{PATH}/invitations/{sent['id']}/accept", headers=fresh.headers))
    stale = signed_in_long_ago(bob, fresh, database_url)
    assert http.delete(PATH, headers=stale.headers).status_code == 204
