"""Who may read or change whose portfolios, and what an API key narrows (wealthalloc.security.access)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.security.access import (
    ALL_SCOPES,
    Access,
    Principal,
    Role,
    Scope,
    access_to_user_data,
    may_manage_users,
    needs_person,
    scopes_grantable,
    signed_in_recently,
)

CALLER = uuid.UUID("00000000-0000-4000-8000-000000000001")
SOMEONE_ELSE = uuid.UUID("00000000-0000-4000-8000-000000000002")
KEY_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
RANK = {Access.NONE: 0, Access.READ: 1, Access.WRITE: 2}


def _person(role: Role) -> Principal:
    return Principal(user_id=CALLER, email="caller@example.com", role=role, tier="standard")


def _key(role: Role, *scopes: Scope) -> Principal:
    return Principal(
        user_id=CALLER,
        email="caller@example.com",
        role=role,
        tier="standard",
        api_key_id=KEY_ID,
        scopes=frozenset(scopes),
    )


def _access(principal: Principal, relation: str) -> Access:
    owner = CALLER if relation == "own" else SOMEONE_ELSE
    return access_to_user_data(principal, owner, linked_advisor=relation == "linked")


# The seed's matrix, for a person signed in with a bearer token ----------------------------------


@pytest.mark.parametrize(
    ("role", "relation", "expected"),
    [
        (Role.INVESTOR, "own", Access.WRITE),
        (Role.INVESTOR, "linked", Access.NONE),
        (Role.INVESTOR, "other", Access.NONE),
        (Role.ADVISOR, "own", Access.READ),
        (Role.ADVISOR, "linked", Access.READ),
        (Role.ADVISOR, "other", Access.NONE),
        (Role.ADMIN, "own", Access.WRITE),
        (Role.ADMIN, "linked", Access.WRITE),
        (Role.ADMIN, "other", Access.WRITE),
    ],
)
def test_a_person_gets_the_access_the_matrix_gives_their_role(
    role: Role, relation: str, expected: Access
) -> None:
    assert _access(_person(role), relation) is expected


def test_an_investor_cannot_see_another_investors_data() -> None:
    assert access_to_user_data(_person(Role.INVESTOR), SOMEONE_ELSE, linked_advisor=False) is Access.NONE


def test_an_advisor_only_reads_the_investors_linked_to_them() -> None:
    advisor = _person(Role.ADVISOR)

    assert access_to_user_data(advisor, SOMEONE_ELSE, linked_advisor=True) is Access.READ
    assert access_to_user_data(advisor, SOMEONE_ELSE, linked_advisor=False) is Access.NONE


def test_a_link_flag_means_nothing_for_an_investor() -> None:
    assert access_to_user_data(_person(Role.INVESTOR), SOMEONE_ELSE, linked_advisor=True) is Access.NONE


def test_a_person_has_every_scope_by_default() -> None:
    person = _person(Role.INVESTOR)

    assert person.scopes == ALL_SCOPES == frozenset({Scope.READ, Scope.TRADE, Scope.ADMIN})
    assert person.api_key_id is None


# API keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "relation", "scopes", "expected"),
    [
        (Role.INVESTOR, "own", {Scope.READ}, Access.READ),
        (Role.INVESTOR, "own", {Scope.TRADE}, Access.WRITE),
        (Role.INVESTOR, "own", {Scope.READ, Scope.TRADE}, Access.WRITE),
        (Role.INVESTOR, "own", set(), Access.NONE),
        (Role.INVESTOR, "own", {Scope.ADMIN}, Access.NONE),
        (Role.INVESTOR, "other", {Scope.READ, Scope.TRADE, Scope.ADMIN}, Access.NONE),
        (Role.ADVISOR, "own", {Scope.READ}, Access.READ),
        (Role.ADVISOR, "linked", {Scope.READ}, Access.READ),
        (Role.ADVISOR, "linked", {Scope.TRADE}, Access.READ),
        (Role.ADVISOR, "linked", set(), Access.NONE),
        (Role.ADVISOR, "other", {Scope.READ, Scope.TRADE}, Access.NONE),
        (Role.ADMIN, "other", {Scope.READ}, Access.READ),
        (Role.ADMIN, "other", {Scope.TRADE}, Access.WRITE),
        (Role.ADMIN, "other", {Scope.ADMIN}, Access.NONE),
        (Role.ADMIN, "other", {Scope.READ, Scope.ADMIN}, Access.READ),
        (Role.ADMIN, "other", set(ALL_SCOPES), Access.WRITE),
    ],
)
def test_an_api_key_gets_its_owners_access_narrowed_by_its_scopes(
    role: Role, relation: str, scopes: set[Scope], expected: Access
) -> None:
    assert _access(_key(role, *scopes), relation) is expected


def test_a_read_only_key_cannot_trade_on_its_owners_portfolio() -> None:
    assert _access(_key(Role.INVESTOR, Scope.READ), "own") is Access.READ


def test_a_trade_scope_never_lets_an_advisor_write() -> None:
    assert _access(_key(Role.ADVISOR, Scope.READ, Scope.TRADE), "linked") is Access.READ
    assert _access(_key(Role.ADVISOR, Scope.READ, Scope.TRADE), "own") is Access.READ


_roles = st.sampled_from(list(Role))
_relations = st.sampled_from(["own", "linked", "other"])
_scope_sets = st.frozensets(st.sampled_from(list(Scope)))


@given(role=_roles, relation=_relations, wider=_scope_sets, dropped=_scope_sets)
def test_taking_scopes_away_never_widens_access(
    role: Role, relation: str, wider: frozenset[Scope], dropped: frozenset[Scope]
) -> None:
    narrower = wider - dropped

    assert RANK[_access(_key(role, *narrower), relation)] <= RANK[_access(_key(role, *wider), relation)]


@given(role=_roles, relation=_relations, scopes=_scope_sets)
def test_a_key_never_has_more_access_than_its_owner(
    role: Role, relation: str, scopes: frozenset[Scope]
) -> None:
    assert RANK[_access(_key(role, *scopes), relation)] <= RANK[_access(_person(role), relation)]


@given(role=_roles, relation=_relations)
def test_a_key_with_every_grantable_scope_has_exactly_its_owners_access(role: Role, relation: str) -> None:
    key = _key(role, *scopes_grantable(role))

    assert _access(key, relation) is _access(_person(role), relation)


# Which scopes may be granted --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "grantable"),
    [
        (Role.INVESTOR, {Scope.READ, Scope.TRADE}),
        (Role.ADVISOR, {Scope.READ}),
        (Role.ADMIN, {Scope.READ, Scope.TRADE, Scope.ADMIN}),
    ],
)
def test_each_role_may_grant_only_the_scopes_it_can_use(role: Role, grantable: set[Scope]) -> None:
    assert scopes_grantable(role) == grantable


def test_only_an_admin_can_grant_the_admin_scope() -> None:
    assert [role for role in Role if Scope.ADMIN in scopes_grantable(role)] == [Role.ADMIN]


# Managing users ---------------------------------------------------------------------------------


def test_only_an_admin_with_the_admin_scope_manages_users() -> None:
    assert may_manage_users(_person(Role.ADMIN))
    assert may_manage_users(_key(Role.ADMIN, Scope.ADMIN))
    assert not may_manage_users(_key(Role.ADMIN, Scope.READ, Scope.TRADE))
    assert not may_manage_users(_person(Role.ADVISOR))
    assert not may_manage_users(_person(Role.INVESTOR))


def test_an_admin_scope_on_a_non_admin_does_not_make_them_an_admin() -> None:
    assert not _key(Role.INVESTOR, *ALL_SCOPES).is_admin
    assert not _key(Role.ADVISOR, *ALL_SCOPES).is_admin


def test_roles_and_scopes_have_their_wire_names() -> None:
    assert [r.value for r in Role] == ["investor", "advisor", "admin"]
    assert [s.value for s in Scope] == ["read", "trade", "admin"]
    assert Role("advisor") is Role.ADVISOR


# People and programs: what only a person may do, and what needs a recent sign-in -----------------

NOW = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
FRESH = timedelta(minutes=10)


@pytest.mark.parametrize("role", list(Role))
def test_a_bearer_token_is_a_person_and_no_api_key_is_whatever_its_scopes(role: Role) -> None:
    assert not needs_person(_person(role))
    for scopes in ([Scope.READ], [Scope.TRADE], [Scope.READ, Scope.TRADE], list(ALL_SCOPES)):
        assert needs_person(_key(role, *scopes))


def test_a_sign_in_within_the_window_is_recent_and_one_before_it_is_not() -> None:
    person = _person(Role.INVESTOR)

    assert signed_in_recently(replace(person, authenticated_at=NOW - FRESH), now=NOW, within=FRESH)
    assert not signed_in_recently(
        replace(person, authenticated_at=NOW - FRESH - timedelta(seconds=1)), now=NOW, within=FRESH
    )


def test_a_token_without_a_sign_in_time_or_an_api_key_is_never_recent() -> None:
    assert not signed_in_recently(_person(Role.INVESTOR), now=NOW, within=FRESH)
    assert not signed_in_recently(
        replace(_key(Role.ADMIN, *ALL_SCOPES), authenticated_at=NOW), now=NOW, within=FRESH
    )
