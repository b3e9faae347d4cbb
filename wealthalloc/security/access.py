"""Who may do what: the roles, the API-key scopes and the seed's permission matrix, in one place.

=================  ========  =======  =====
Resource           Investor  Advisor  Admin
=================  ========  =======  =====
Own portfolio      RW        R        RW
Other portfolios   -         R*       RW
System settings    -         -        RW
User management    -         -        RW
=================  ========  =======  =====

\\* an advisor reads only the portfolios of investors linked to them.

A caller asking for something it may not even read is told it does not exist
(404), so ids of other people's portfolios, orders and lots do not leak; a
caller that may read but not write (an advisor) is told 403.

An API key acts for its owner within its scopes: ``read`` reads, ``trade``
also writes the owner's portfolios (orders and cancels). Whatever can take
money out or hand the account to someone else needs the person themself,
with a bearer token: cash movements, API keys, webhooks, MFA, the password,
the profile, advisor links (:func:`needs_person`). Changing MFA or
API keys also needs a recent sign-in (:func:`signed_in_recently`), so a
stolen access token cannot entrench itself. ``docs/security.md`` has the
whole matrix, route by route.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class Role(enum.StrEnum):
    INVESTOR = "investor"
    ADVISOR = "advisor"
    ADMIN = "admin"


class Scope(enum.StrEnum):
    """What an API key may do; a bearer token of a person has every scope of their role."""

    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


class Access(enum.Enum):
    NONE = "none"
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: uuid.UUID
    email: str
    role: Role
    tier: str
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[Scope] = field(default_factory=lambda: ALL_SCOPES)
    token_id: str | None = None
    # The login (refresh-token family) a bearer token belongs to, and when its password was checked.
    session_id: uuid.UUID | None = None
    authenticated_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and Scope.ADMIN in self.scopes

    @property
    def is_person(self) -> bool:
        """A person signed in with a bearer token, not a program holding one of their API keys."""
        return self.api_key_id is None


def needs_person(principal: Principal) -> bool:
    """Whether ``principal`` is refused an action reserved to people (keys, MFA, withdrawals ...)."""
    return not principal.is_person


def signed_in_recently(principal: Principal, *, now: datetime, within: timedelta) -> bool:
    """Whether the person proved who they are (password, and TOTP when on) within ``within`` of ``now``.

    The time is the login's, not the token's: refreshing keeps a session going but does not make
    it fresh, so a stolen refresh token cannot be turned into the right to change MFA or keys.
    """
    if not principal.is_person or principal.authenticated_at is None:
        return False
    return now - principal.authenticated_at <= within


def access_to_user_data(principal: Principal, owner_id: uuid.UUID, *, linked_advisor: bool) -> Access:
    """What ``principal`` may do with the portfolios, orders and lots of ``owner_id``."""
    if principal.role is Role.ADMIN:
        level = Access.WRITE
    elif principal.user_id == owner_id:
        level = Access.READ if principal.role is Role.ADVISOR else Access.WRITE
    elif principal.role is Role.ADVISOR and linked_advisor:
        level = Access.READ
    else:
        level = Access.NONE
    # An API key narrows what its owner may do, never widens it.
    if level is Access.WRITE and Scope.TRADE not in principal.scopes:
        level = Access.READ
    if (
        level is not Access.NONE
        and Scope.READ not in principal.scopes
        and Scope.TRADE not in principal.scopes
    ):
        level = Access.NONE
    return level


def may_manage_users(principal: Principal) -> bool:
    return principal.is_admin


def scopes_grantable(role: Role) -> frozenset[Scope]:
    """The scopes a person of ``role`` may put on an API key: never more than they have themselves."""
    if role is Role.ADMIN:
        return ALL_SCOPES
    if role is Role.ADVISOR:
        return frozenset({Scope.READ})
    return frozenset({Scope.READ, Scope.TRADE})
