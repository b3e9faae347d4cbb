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
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


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

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and Scope.ADMIN in self.scopes


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
