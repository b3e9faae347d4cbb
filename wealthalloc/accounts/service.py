"""Sign-up, sign-in, tokens, MFA, API keys and advisor links: the account rules of the platform.

The service decides; PostgreSQL (users, tokens, keys, the audit chain) and
Redis (attempt counters and rate-limit buckets) remember. It is used by the API
replicas, so everything here is async and safe to run concurrently.

Failed logins and lockout
    Each login attempt on an account is counted in Redis *before* its password
    is checked, and counting is atomic, so a burst of concurrent guesses gets
    at most ``lockout_threshold`` password checks however it races. The
    attempt that reaches the threshold locks the account (``locked_until`` in
    PostgreSQL, so the lock survives a Redis flush); a correct password resets
    the count. A separate, much larger budget per client address stops
    password spraying across many accounts without one person's typos locking
    out everyone behind the same address.

Sessions
    Each login is a session (a row of ``sessions``, whose id is the refresh
    tokens' family and the access tokens' ``sid``). A sign-out, a password
    change, an MFA change, a role change, a suspension (an admin's disable)
    or a deletion revokes sessions in PostgreSQL and bumps the user's
    generation in Redis, so every replica drops its cached view and re-checks
    the session on the next request: the access tokens of a revoked session
    stop at once, not when they expire. A disabled user's API keys are refused
    (not revoked) until an admin enables the account again.

Step-up
    Changing MFA or API keys needs a person (never an API key) whose sign-in
    is recent (``fresh_login_minutes``; refreshes do not count) and, when MFA
    is on, the current TOTP code. Changing the password or turning MFA off
    needs the current password too. Wrong passwords and codes there count
    towards the same lockout as at login, so a stolen token cannot be used to
    guess them.

When Redis is down
    Logins and registrations answer 503: without the shared counters neither
    the lockout nor the per-address limit could be enforced, and failing open
    would hand an attacker unlimited guesses during an outage. Requests with a
    valid token go on (see ``serve_apps.api.deps``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.exceptions

from wealthalloc.accounts.emails import InvalidEmail, normalise_email
from wealthalloc.accounts.errors import (
    AccountError,
    invalid_credentials,
    invalid_mfa_code,
    limiter_unavailable,
    mfa_required,
    person_required,
    reauthentication_required,
    unauthenticated,
)
from wealthalloc.config import Settings
from wealthalloc.logging import get_logger
from wealthalloc.ops import metrics as ops_metrics
from wealthalloc.security import totp
from wealthalloc.security.access import Principal, Role, Scope, scopes_grantable, signed_in_recently
from wealthalloc.security.password_policy import password_problems
from wealthalloc.security.passwords import hash_password, needs_rehash, verify_password
from wealthalloc.security.rate_limits import login_ip_limit, user_generation_key
from wealthalloc.security.tokens import (
    AccessClaims,
    InvalidToken,
    KeyRing,
    api_key_prefix,
    decode_access_token,
    digest,
    issue_access_token,
    new_api_key,
    new_refresh_token,
)
from wealthalloc.storage import accounts as store
from wealthalloc.storage import notifications as notification_store
from wealthalloc.storage.audit import append_audit, new_entry
from wealthalloc.storage.outbox import add_event
from wealthalloc.storage.postgres import AsyncPool
from wealthalloc.storage.rate_limiter import RateLimiter

log = get_logger(__name__)

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
# Notices for people about their own account; read by the mailer (a later issue), not by webhooks.
ACCOUNT_NOTICES_TOPIC = "accounts.notices"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: dict[str, Any]

    def as_response(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True)
class CreatedApiKey:
    key: str
    record: dict[str, Any]


def public_user(row: dict[str, Any]) -> dict[str, Any]:
    """The user as the API shows it: never the password hash, the MFA secret or lockout internals."""
    return {
        "id": row["id"],
        "email": row["email"],
        "full_name": row["full_name"],
        "role": row["role"],
        "tier": row["tier"],
        "risk_profile": {
            "risk_tolerance": row["risk_tolerance"],
            "investment_experience": row["investment_experience"],
        },
        "tax_profile": {
            "filing_status": row["filing_status"],
            "federal_rate": row["federal_rate"],
            "state_rate": row["state_rate"],
            "short_term_rate": row["short_term_rate"],
            "long_term_rate": row["long_term_rate"],
        },
        "mfa_enabled": row["mfa_enabled"],
        "created_date": row["created_date"],
    }


def admin_user(row: dict[str, Any]) -> dict[str, Any]:
    """The user as operators see it: also whether, since when and why the account is disabled.

    The reason is the operator's note (it may name an investigation), so the person never sees
    it: while disabled they cannot read their own account, and enabling clears it.
    """
    return {**public_user(row), "disabled_at": row["disabled_at"], "disabled_reason": row["disabled_reason"]}


def _failure_key(user_id: uuid.UUID) -> str:
    return f"login-fail:{{{user_id}}}"


class AccountService:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: AsyncPool,
        limiter: RateLimiter,
        keys: KeyRing,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._limiter = limiter
        self._keys = keys
        self._now = now
        # A hash to check a password against when the address is unknown, so an unknown address
        # takes as long to refuse as a wrong password and response times do not reveal accounts.
        self._decoy_hash = hash_password(uuid.uuid4().hex, rounds=settings.bcrypt_rounds)

    # Registration and sign-in --------------------------------------------------------------------

    async def register(
        self, *, email: str, password: str, full_name: str | None, risk_tolerance: str, ip: str
    ) -> dict[str, Any]:
        """A new investor account; a taken address is answered exactly the same way.

        Saying "this address has an account" would let anyone find out who uses the platform, so
        a taken address goes through the same work (policy, bcrypt, one insert) and gets a 201
        with a stand-in user whose id matches nothing, and nothing is created. The owner is told
        instead: an outbox event for the mailer and an audit entry.
        """
        address = _valid_email(email)
        await self._check_new_password(password, email=address, full_name=full_name)
        await self._check_ip_budget(ip)
        password_hash = await asyncio.to_thread(hash_password, password, rounds=self._settings.bcrypt_rounds)
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.insert_user(
                conn,
                email=address,
                password_hash=password_hash,
                full_name=full_name,
                risk_tolerance=risk_tolerance,
            )
            if row is None:
                await _tell_the_owner_of(conn, address, ip=ip)
                row = await store.stand_in_user(
                    conn,
                    email=address,
                    password_hash=password_hash,
                    full_name=full_name,
                    risk_tolerance=risk_tolerance,
                )
            else:
                await append_audit(
                    conn, new_entry("auth.register", actor_id=row["id"], subject=f"user:{row['id']}", ip=ip)
                )
                ops_metrics.REGISTRATIONS.inc()
        return public_user(row)

    async def login(
        self, *, email: str, password: str, totp_code: str | None, ip: str, user_agent: str | None = None
    ) -> TokenPair:
        await self._check_ip_budget(ip)
        try:
            address = normalise_email(email)
        except InvalidEmail:
            address = email.strip()
        async with self._pool.connection() as conn:
            user = await store.user_by_email(conn, address)
        if user is None:
            await asyncio.to_thread(verify_password, password, self._decoy_hash)
            await self._audit(
                "auth.login_failed", None, ip, {"email": address[:320], "reason": "unknown_email"}
            )
            raise invalid_credentials()
        user_id: uuid.UUID = user["id"]
        now = self._now()
        if user["locked_until"] is not None and user["locked_until"] > now:
            raise _locked(user["locked_until"], now)

        attempts = await self._count_attempt(user_id)
        if attempts > self._settings.lockout_threshold:
            # Concurrent guesses past the threshold: refused without a password check.
            until = await self._lock(user_id, attempts, ip)
            raise _locked(until, now)

        if not await asyncio.to_thread(verify_password, password, user["password_hash"]):
            await self._audit("auth.login_failed", user_id, ip, {"reason": "password", "attempt": attempts})
            await self._lock_when_due(user_id, attempts, ip, now)
            raise invalid_credentials()

        if user["mfa_enabled"]:
            if not totp_code:
                raise mfa_required()
            step = totp.accepted_step(
                user["mfa_secret"], totp_code, now=now, last_step=user["mfa_last_counter"]
            )
            claimed = False
            if step is not None:
                async with self._pool.connection() as conn, conn.transaction():
                    claimed = await store.claim_mfa_step(conn, user_id, step)
            if not claimed:
                await self._audit("auth.mfa_failed", user_id, ip, {"attempt": attempts})
                await self._lock_when_due(user_id, attempts, ip, now)
                raise invalid_mfa_code()

        # Only now, with the password (and code) proved, is a suspension said: telling a guesser
        # would reveal the account and its status, so a wrong password got the usual 401 above.
        await self._reset_attempts(user_id)
        if user["disabled_at"] is not None:
            await self._audit("auth.login_refused", user_id, ip, {"reason": "account_disabled"})
            raise _disabled()
        async with self._pool.connection() as conn, conn.transaction():
            # Under the row's lock, which a suspension takes too: a login racing a suspension
            # either sees it or made its session before the suspension ended every session.
            current = await store.user_by_id(conn, user_id, for_update=True)
            if current is None:
                raise invalid_credentials()
            if current["disabled_at"] is not None:
                raise _disabled()
            await store.record_login_success(conn, user_id)
            if needs_rehash(user["password_hash"], rounds=self._settings.bcrypt_rounds):
                new_hash = await asyncio.to_thread(
                    hash_password, password, rounds=self._settings.bcrypt_rounds
                )
                await store.update_password_hash(conn, user_id, new_hash)
            session_id = uuid.uuid4()
            await store.insert_session(conn, session_id=session_id, user_id=user_id, authenticated_at=now)
            await self._tell_of_a_new_sign_in(conn, user_id, session_id, ip=ip, device=user_agent)
            pair = await self._issue_pair(conn, user, session_id=session_id, authenticated_at=now)
            await append_audit(
                conn, new_entry("auth.login", actor_id=user_id, subject=f"user:{user_id}", ip=ip)
            )
        return pair

    async def refresh(self, *, refresh_token: str, ip: str) -> TokenPair:
        token_hash = digest(refresh_token)
        now = self._now()
        reused_family: uuid.UUID | None = None
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.refresh_token_for_update(conn, token_hash)
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                raise AccountError(
                    401, "INVALID_REFRESH_TOKEN", "The refresh token is not valid; sign in again."
                )
            if row["rotated_at"] is not None:
                # A rotated token presented again: someone else holds a copy. End the whole login.
                reused_family = row["family_id"]
                revoked = await store.revoke_family(conn, row["family_id"])
                await append_audit(
                    conn,
                    new_entry(
                        "auth.refresh_token_reused",
                        actor_id=row["user_id"],
                        subject=f"user:{row['user_id']}",
                        details={"family_id": str(row["family_id"]), "revoked": revoked},
                        ip=ip,
                    ),
                )
            else:
                user = await store.user_by_id(conn, row["user_id"])
                session = await store.session(conn, row["family_id"])
                if (
                    user is None
                    or user["disabled_at"] is not None
                    or session is None
                    or session["revoked_at"] is not None
                ):
                    raise AccountError(
                        401, "INVALID_REFRESH_TOKEN", "The refresh token is not valid; sign in again."
                    )
                # The new access token keeps the login's sign-in time: a refresh is not a sign-in.
                pair = await self._issue_pair(
                    conn,
                    user,
                    session_id=row["family_id"],
                    authenticated_at=session["authenticated_at"],
                    replaces=row["id"],
                )
        if reused_family is not None:
            log.warning("refresh_token_reused", family_id=str(reused_family))
            await self._bump_generation(row["user_id"])
            raise AccountError(
                401,
                "REFRESH_TOKEN_REUSED",
                "This refresh token was already used; every session of this login has been signed out.",
            )
        return pair

    async def logout(self, *, refresh_token: str, ip: str) -> None:
        """End the login the refresh token belongs to, its access tokens included (at once)."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await store.refresh_token_for_update(conn, digest(refresh_token))
            if row is None or row["revoked_at"] is not None:
                return  # logging out twice is not an error
            await store.revoke_family(conn, row["family_id"])
            await append_audit(
                conn,
                new_entry("auth.logout", actor_id=row["user_id"], subject=f"user:{row['user_id']}", ip=ip),
            )
        await self._bump_generation(row["user_id"])

    # Authenticating requests ---------------------------------------------------------------------

    def verify_bearer(self, token: str) -> AccessClaims:
        """The token's claims when it is ours and unexpired; no database involved."""
        try:
            return decode_access_token(self._keys, token, now=self._now())
        except InvalidToken as exc:
            raise unauthenticated(f"token_{exc.reason}") from exc

    async def authenticate_bearer(self, token: str, claims: AccessClaims | None = None) -> Principal:
        """The person behind a bearer token, checked against PostgreSQL: the user exists and the
        login (session) the token belongs to has not ended."""
        claims = claims or self.verify_bearer(token)
        if claims.session_id is None:
            # Issued before tokens named their session; such a token cannot be revoked, so it is not
            # accepted (it would have expired within access_token_minutes anyway).
            raise unauthenticated("token_without_session")
        async with self._pool.connection() as conn:
            user = await store.user_in_live_session(conn, claims.user_id, claims.session_id)
        if user is None:
            raise unauthenticated("session_ended")
        # The role and tier come from the database, not the token: a demotion takes effect at once.
        return Principal(
            user_id=user["id"],
            email=user["email"],
            role=Role(user["role"]),
            tier=user["tier"],
            token_id=claims.token_id,
            session_id=claims.session_id,
            authenticated_at=claims.authenticated_at,
        )

    async def authenticate_api_key(self, key: str) -> Principal:
        if api_key_prefix(key) is None:
            raise unauthenticated("api_key_malformed")
        now = self._now()
        async with self._pool.connection() as conn:
            row = await store.api_key_by_hash(conn, digest(key))
            if row is None or row["deleted_at"] is not None:
                raise unauthenticated("api_key_unknown")
            if row["revoked_at"] is not None:
                raise unauthenticated("api_key_revoked")
            if row["expires_at"] is not None and row["expires_at"] <= now:
                raise unauthenticated("api_key_expired")
            # Refused, not revoked: the key works again once an admin enables the account.
            if row["disabled_at"] is not None:
                raise unauthenticated("account_disabled")
            if row["last_used_at"] is None or now - row["last_used_at"] > API_KEY_TOUCH_INTERVAL:
                await store.touch_api_key(conn, row["key_id"])
                await conn.commit()
        return Principal(
            user_id=row["id"],
            email=row["email"],
            role=Role(row["role"]),
            tier=row["tier"],
            api_key_id=row["key_id"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
        )

    # Profile -------------------------------------------------------------------------------------

    async def me(self, principal: Principal) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            user = await store.user_by_id(conn, principal.user_id)
        if user is None:
            raise unauthenticated("user_not_found")
        return public_user(user)

    async def update_me(self, principal: Principal, changes: dict[str, Any], *, ip: str) -> dict[str, Any]:
        async with self._pool.connection() as conn, conn.transaction():
            user = await store.update_profile(conn, principal.user_id, changes)
            if user is None:
                raise unauthenticated("user_not_found")
            await append_audit(
                conn,
                new_entry(
                    "user.profile_updated",
                    actor_id=principal.user_id,
                    subject=f"user:{principal.user_id}",
                    details={"fields": sorted(changes)},
                    ip=ip,
                ),
            )
        return public_user(user)

    # MFA -----------------------------------------------------------------------------------------

    async def mfa_setup(self, principal: Principal, *, ip: str) -> totp.MfaSetup:
        self._require_recent_sign_in(principal)
        setup = totp.new_setup(email=principal.email, issuer=self._settings.mfa_issuer)
        async with self._pool.connection() as conn, conn.transaction():
            user = await store.user_by_id(conn, principal.user_id, for_update=True)
            if user is None:
                raise unauthenticated("user_not_found")
            if user["mfa_enabled"]:
                raise AccountError(409, "MFA_ALREADY_ENABLED", "Two-factor authentication is already on.")
            await store.set_mfa_secret(conn, principal.user_id, setup.secret)
            await append_audit(
                conn,
                new_entry(
                    "auth.mfa_setup", actor_id=principal.user_id, subject=f"user:{principal.user_id}", ip=ip
                ),
            )
        return setup

    async def mfa_enable(self, principal: Principal, code: str, *, ip: str) -> None:
        """Turn TOTP on; the person's other logins end, since they were made without it."""
        self._require_recent_sign_in(principal)
        async with self._pool.connection() as conn, conn.transaction():
            user = await store.user_by_id(conn, principal.user_id, for_update=True)
            if user is None:
                raise unauthenticated("user_not_found")
            if user["mfa_enabled"]:
                raise AccountError(409, "MFA_ALREADY_ENABLED", "Two-factor authentication is already on.")
            if user["mfa_secret"] is None:
                raise AccountError(400, "MFA_NOT_SET_UP", "Call POST /api/v1/auth/mfa/setup first.")
            step = totp.accepted_step(
                user["mfa_secret"], code, now=self._now(), last_step=user["mfa_last_counter"]
            )
            if step is None or not await store.claim_mfa_step(conn, principal.user_id, step, enable=True):
                raise AccountError(
                    400, "INVALID_MFA_CODE", "The two-factor code is not valid or was already used."
                )
            await self._end_other_logins(conn, principal, action="auth.mfa_enabled", ip=ip)
        await self._bump_generation(principal.user_id)

    async def mfa_disable(self, principal: Principal, *, password: str, code: str, ip: str) -> None:
        """Turn TOTP off: a recent sign-in, the password and a current code. Other logins end."""
        self._require_recent_sign_in(principal)
        user = await self._user_of(principal)
        if not user["mfa_enabled"]:
            raise AccountError(409, "MFA_NOT_ENABLED", "Two-factor authentication is not on.")
        await self._prove_it_is_them(user, password=password, totp_code=code, ip=ip, action="mfa_disable")
        async with self._pool.connection() as conn, conn.transaction():
            await store.disable_mfa(conn, principal.user_id)
            await self._end_other_logins(conn, principal, action="auth.mfa_disabled", ip=ip)
        await self._bump_generation(principal.user_id)

    # Password ------------------------------------------------------------------------------------

    async def change_password(
        self,
        principal: Principal,
        *,
        current_password: str,
        new_password: str,
        totp_code: str | None,
        ip: str,
    ) -> None:
        """A new password, proved by the current one (and a code when MFA is on).

        Every other login of the person ends (whoever else knew the old password is signed out);
        the login making the change goes on, since it has just proved both factors. API keys stay:
        they are revoked one by one, on purpose.
        """
        if not principal.is_person:
            raise person_required()
        user = await self._user_of(principal)
        await self._check_new_password(new_password, email=user["email"], full_name=user["full_name"])
        await self._prove_it_is_them(
            user, password=current_password, totp_code=totp_code, ip=ip, action="password_change"
        )
        new_hash = await asyncio.to_thread(hash_password, new_password, rounds=self._settings.bcrypt_rounds)
        async with self._pool.connection() as conn, conn.transaction():
            await store.update_password_hash(conn, principal.user_id, new_hash)
            await self._end_other_logins(conn, principal, action="auth.password_changed", ip=ip)
        await self._bump_generation(principal.user_id)

    # API keys ------------------------------------------------------------------------------------

    async def create_api_key(
        self,
        principal: Principal,
        *,
        name: str,
        scopes: Iterable[Scope],
        totp_code: str | None = None,
        ip: str,
    ) -> CreatedApiKey:
        """A key for a program: only a person with a recent sign-in (and their code when MFA is on)."""
        self._require_recent_sign_in(principal)
        wanted = frozenset(scopes)
        refused = sorted(wanted - scopes_grantable(principal.role))
        if refused:
            raise AccountError(
                403,
                "SCOPE_NOT_ALLOWED",
                f"Your role cannot grant: {', '.join(refused)}.",
                {"scopes": refused},
            )
        await self._prove_it_is_them(
            await self._user_of(principal), totp_code=totp_code, ip=ip, action="api_key_create"
        )
        new = new_api_key()
        expires_at = self._now() + timedelta(days=self._settings.api_key_days)
        async with self._pool.connection() as conn, conn.transaction():
            record = await store.insert_api_key(
                conn,
                user_id=principal.user_id,
                name=name,
                prefix=new.prefix,
                key_hash=digest(new.key),
                scopes=sorted(wanted),
                expires_at=expires_at,
            )
            await append_audit(
                conn,
                new_entry(
                    "auth.api_key_created",
                    actor_id=principal.user_id,
                    subject=f"api_key:{record['id']}",
                    details={"name": name, "scopes": sorted(wanted), "prefix": new.prefix},
                    ip=ip,
                ),
            )
            await add_event(
                conn,
                topic=ACCOUNT_NOTICES_TOPIC,
                event_type="auth.api_key_created",
                user_id=principal.user_id,
                aggregate_id=record["id"],
                payload={
                    "api_key_id": record["id"],
                    "name": name,
                    "scopes": [scope.value for scope in sorted(wanted)],
                    "ip": ip[:100],
                },
            )
        return CreatedApiKey(key=new.key, record=record)

    async def list_api_keys(self, principal: Principal) -> list[dict[str, Any]]:
        if not principal.is_person:
            raise person_required()
        async with self._pool.connection() as conn:
            return await store.api_keys_of(conn, principal.user_id)

    async def revoke_api_key(
        self, principal: Principal, key_id: uuid.UUID, *, totp_code: str | None = None, ip: str
    ) -> dict[str, Any]:
        self._require_recent_sign_in(principal)
        await self._prove_it_is_them(
            await self._user_of(principal), totp_code=totp_code, ip=ip, action="api_key_revoke"
        )
        async with self._pool.connection() as conn, conn.transaction():
            record = await store.revoke_api_key(conn, principal.user_id, key_id)
            if record is None:
                raise AccountError(404, "NOT_FOUND", "No such API key.")
            await append_audit(
                conn,
                new_entry(
                    "auth.api_key_revoked", actor_id=principal.user_id, subject=f"api_key:{key_id}", ip=ip
                ),
            )
        return record

    # Advisors ------------------------------------------------------------------------------------

    async def link_advisor(
        self, principal: Principal, *, advisor_email: str, client_email: str | None, ip: str
    ) -> dict[str, Any]:
        """An admin links any advisor to any investor; an investor consents to an advisor for themself."""
        if principal.api_key_id is not None:
            raise AccountError(
                403, "FORBIDDEN", "Advisor links are made by a signed-in person, not an API key."
            )
        async with self._pool.connection() as conn, conn.transaction():
            advisor = await store.user_by_email(conn, _lookup_email(advisor_email))
            if advisor is None or advisor["role"] != Role.ADVISOR:
                raise AccountError(404, "ADVISOR_NOT_FOUND", "No advisor has this email.")
            if principal.role is Role.ADMIN:
                if client_email is None:
                    raise AccountError(400, "VALIDATION_ERROR", "client_email is required for an admin.")
                client = await store.user_by_email(conn, _lookup_email(client_email))
                source = "admin"
            elif principal.role is Role.INVESTOR:
                if (
                    client_email is not None
                    and _lookup_email(client_email).lower() != principal.email.lower()
                ):
                    raise AccountError(
                        403, "FORBIDDEN", "An investor can consent only for their own account."
                    )
                client = await store.user_by_id(conn, principal.user_id)
                source = "client_consent"
            else:
                raise AccountError(403, "FORBIDDEN", "Only an admin or the investor can link an advisor.")
            if client is None or client["role"] != Role.INVESTOR:
                raise AccountError(404, "CLIENT_NOT_FOUND", "No investor has this email.")
            link = await store.link_advisor(
                conn,
                advisor_id=advisor["id"],
                client_id=client["id"],
                granted_by=principal.user_id,
                source=source,
            )
            await append_audit(
                conn,
                new_entry(
                    "advisor.client_linked",
                    actor_id=principal.user_id,
                    subject=f"user:{client['id']}",
                    details={"advisor_id": str(advisor["id"]), "source": source},
                    ip=ip,
                ),
            )
        return {**link, "advisor_email": advisor["email"], "client_email": client["email"]}

    async def unlink_advisor(
        self, principal: Principal, *, advisor_id: uuid.UUID, client_id: uuid.UUID, ip: str
    ) -> None:
        allowed = principal.is_admin or (principal.api_key_id is None and principal.user_id == client_id)
        if not allowed:
            raise AccountError(404, "NOT_FOUND", "No such advisor link.")
        async with self._pool.connection() as conn, conn.transaction():
            if not await store.unlink_advisor(conn, advisor_id=advisor_id, client_id=client_id):
                raise AccountError(404, "NOT_FOUND", "No such advisor link.")
            await append_audit(
                conn,
                new_entry(
                    "advisor.client_unlinked",
                    actor_id=principal.user_id,
                    subject=f"user:{client_id}",
                    details={"advisor_id": str(advisor_id)},
                    ip=ip,
                ),
            )

    async def advisor_links(self, principal: Principal) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await store.links_of(conn, principal.user_id)

    async def may_read_for_client(self, advisor_id: uuid.UUID, client_id: uuid.UUID) -> bool:
        async with self._pool.connection() as conn:
            return await store.is_linked(conn, advisor_id=advisor_id, client_id=client_id)

    # User management (admins) -------------------------------------------------------------------

    async def users(self, *, after_email: str | None, limit: int) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return [
                admin_user(row) for row in await store.users_page(conn, after_email=after_email, limit=limit)
            ]

    async def set_role_and_tier(
        self, admin: Principal, user_id: uuid.UUID, *, role: Role | None, tier: str | None, ip: str
    ) -> dict[str, Any]:
        if admin.user_id == user_id and role is not None and role is not Role.ADMIN:
            raise AccountError(409, "CONFLICT", "An admin cannot take the admin role from themself.")
        async with self._pool.connection() as conn, conn.transaction():
            before = await store.user_by_id(conn, user_id, for_update=True)
            row = await store.set_role_and_tier(conn, user_id, role=role.value if role else None, tier=tier)
            if before is None or row is None:
                raise AccountError(404, "NOT_FOUND", "No such user.")
            # A new role is a new set of powers: the person signs in again to use them, and no token
            # or cached view from before goes on acting under the old ones.
            ended = 0
            if row["role"] != before["role"]:
                ended = await store.revoke_sessions_of(conn, user_id)
            await append_audit(
                conn,
                new_entry(
                    "admin.user_updated",
                    actor_id=admin.user_id,
                    subject=f"user:{user_id}",
                    details={"role": role.value if role else None, "tier": tier, "sessions_ended": ended},
                    ip=ip,
                ),
            )
        await self._bump_generation(user_id)
        return admin_user(row)

    async def disable_user(
        self, admin: Principal, user_id: uuid.UUID, *, reason: str, ip: str
    ) -> dict[str, Any]:
        """Suspend an account (suspected compromise, compliance hold) so that it can be reinstated.

        Every login of the user ends at once (sessions and refresh tokens in PostgreSQL, then the
        generation in Redis so every replica drops its cached view); their API keys are refused
        while it lasts but not revoked; sign-ins get 403 ACCOUNT_DISABLED once the password is
        right. Portfolios, orders and data are untouched: open orders stay at the venue. Disabling
        a disabled account changes nothing and is not audited again (the proxy may retry a POST).
        """
        if admin.user_id == user_id:
            raise AccountError(409, "CONFLICT", "An admin cannot disable their own account.")
        async with self._pool.connection() as conn, conn.transaction():
            before = await store.user_by_id(conn, user_id, for_update=True)
            if before is None:
                raise AccountError(404, "NOT_FOUND", "No such user.")
            if before["disabled_at"] is not None:
                return admin_user(before)
            row = await store.disable_user(conn, user_id, reason=reason)
            assert row is not None  # the row is locked and was there
            ended = await store.revoke_sessions_of(conn, user_id)
            await append_audit(
                conn,
                new_entry(
                    "admin.user_disabled",
                    actor_id=admin.user_id,
                    subject=f"user:{user_id}",
                    details={"reason": reason, "sessions_ended": ended},
                    ip=ip,
                ),
            )
        await self._bump_generation(user_id)
        return admin_user(row)

    async def enable_user(
        self, admin: Principal, user_id: uuid.UUID, *, reason: str | None, ip: str
    ) -> dict[str, Any]:
        """Lift a suspension: the person signs in again (the logins it ended stay ended) and their
        keys work again unless revoked or expired. Enabling an enabled account changes nothing."""
        async with self._pool.connection() as conn, conn.transaction():
            before = await store.user_by_id(conn, user_id, for_update=True)
            if before is None:
                raise AccountError(404, "NOT_FOUND", "No such user.")
            if before["disabled_at"] is None:
                return admin_user(before)
            row = await store.enable_user(conn, user_id)
            assert row is not None  # the row is locked and was there
            await append_audit(
                conn,
                new_entry(
                    "admin.user_enabled",
                    actor_id=admin.user_id,
                    subject=f"user:{user_id}",
                    details={
                        "reason": reason,
                        "disabled_at": before["disabled_at"].isoformat(),
                        "disabled_reason": before["disabled_reason"],
                    },
                    ip=ip,
                ),
            )
        return admin_user(row)

    async def delete_user(self, admin: Principal, user_id: uuid.UUID, *, ip: str) -> None:
        """Soft delete: the address stays reserved; tokens and keys of the user stop working at once."""
        if admin.user_id == user_id:
            raise AccountError(409, "CONFLICT", "An admin cannot delete their own account.")
        async with self._pool.connection() as conn, conn.transaction():
            if not await store.soft_delete_user(conn, user_id):
                raise AccountError(404, "NOT_FOUND", "No such user.")
            await append_audit(
                conn,
                new_entry("admin.user_deleted", actor_id=admin.user_id, subject=f"user:{user_id}", ip=ip),
            )
        await self._bump_generation(user_id)

    async def _end_other_logins(
        self, conn: store.Conn, principal: Principal, *, action: str, ip: str
    ) -> None:
        """A change to how a person proves who they are ends every login but the one making it
        (whoever else held the old factor is out), audited as ``action`` in the change's transaction."""
        ended = await store.revoke_sessions_of(conn, principal.user_id, except_session=principal.session_id)
        await append_audit(
            conn,
            new_entry(
                action,
                actor_id=principal.user_id,
                subject=f"user:{principal.user_id}",
                details={"sessions_ended": ended},
                ip=ip,
            ),
        )
        # The person is told (a security notification), in the change's transaction.
        await add_event(
            conn,
            topic=ACCOUNT_NOTICES_TOPIC,
            event_type=action,
            user_id=principal.user_id,
            aggregate_id=principal.user_id,
            payload={"sessions_ended": ended, "ip": ip[:100]},
        )

    async def _tell_of_a_new_sign_in(
        self, conn: store.Conn, user_id: uuid.UUID, session_id: uuid.UUID, *, ip: str, device: str | None
    ) -> None:
        """Record where a login came from; a new address and device is a security notice to the person."""
        if await notification_store.record_sign_in(
            conn,
            user_id=user_id,
            session_id=session_id,
            ip=ip,
            device=device,
            recent_days=self._settings.notification_sign_in_days,
        ):
            await add_event(
                conn,
                topic=ACCOUNT_NOTICES_TOPIC,
                event_type="auth.new_sign_in",
                user_id=user_id,
                aggregate_id=session_id,
                payload={"session_id": session_id, "ip": ip[:100], "device": (device or "")[:300] or None},
            )

    async def _bump_generation(self, user_id: uuid.UUID) -> None:
        """Tell every replica its cached view of this user is stale (see serve_apps.api.deps)."""
        try:
            await self._limiter.bump(user_generation_key(user_id))
        except REDIS_DOWN as exc:
            # Replicas re-read users at least every PRINCIPAL_CACHE_SECONDS; say that it will be that long.
            log.error("user_generation_bump_failed", user_id=str(user_id), error=str(exc))

    # Internals -----------------------------------------------------------------------------------

    async def _issue_pair(
        self,
        conn: store.Conn,
        user: dict[str, Any],
        *,
        session_id: uuid.UUID,
        authenticated_at: datetime,
        replaces: uuid.UUID | None = None,
    ) -> TokenPair:
        now = self._now()
        ttl = timedelta(minutes=self._settings.access_token_minutes)
        access = issue_access_token(
            self._keys,
            user_id=user["id"],
            email=user["email"],
            role=user["role"],
            now=now,
            ttl=ttl,
            session_id=session_id,
            authenticated_at=authenticated_at,
        )
        refresh = new_refresh_token()
        new_id = await store.insert_refresh_token(
            conn,
            user_id=user["id"],
            family_id=session_id,
            token_hash=digest(refresh),
            expires_at=now + timedelta(days=self._settings.refresh_token_days),
        )
        if replaces is not None:
            await store.mark_rotated(conn, replaces, new_id)
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh,
            expires_in=int(ttl.total_seconds()),
            user=public_user(user),
        )

    def _require_recent_sign_in(self, principal: Principal) -> None:
        if not principal.is_person:
            raise person_required()
        window = timedelta(minutes=self._settings.fresh_login_minutes)
        if not signed_in_recently(principal, now=self._now(), within=window):
            raise reauthentication_required(int(window.total_seconds()))

    async def _user_of(self, principal: Principal) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            user = await store.user_by_id(conn, principal.user_id)
        if user is None:
            raise unauthenticated("user_not_found")
        return user

    async def _check_new_password(self, password: str, *, email: str, full_name: str | None) -> None:
        # In a thread: the strength estimate takes milliseconds of CPU, too long for the event loop.
        problems = await asyncio.to_thread(
            password_problems, password, email=email, user_inputs=[full_name or ""]
        )
        if problems:
            raise AccountError(
                400,
                "WEAK_PASSWORD",
                "The password does not meet the policy.",
                [{"field": "password", "message": p} for p in problems],
            )

    async def _prove_it_is_them(
        self,
        user: dict[str, Any],
        *,
        password: str | None = None,
        totp_code: str | None = None,
        ip: str,
        action: str,
    ) -> None:
        """Check the password (when asked for) and, when MFA is on, a current code, for a change a
        signed-in person makes. Failures count towards the login lockout, so a stolen access token
        gives no more guesses than the login form does."""
        needs_code = bool(user["mfa_enabled"])
        if password is None and not needs_code:
            return
        if needs_code and not totp_code:
            raise mfa_required()
        user_id: uuid.UUID = user["id"]
        now = self._now()
        if user["locked_until"] is not None and user["locked_until"] > now:
            raise _locked(user["locked_until"], now)
        attempts = await self._count_attempt(user_id)
        if attempts > self._settings.lockout_threshold:
            raise _locked(await self._lock(user_id, attempts, ip), now)
        if password is not None and not await asyncio.to_thread(
            verify_password, password, user["password_hash"]
        ):
            await self._audit(
                "auth.reauthentication_failed", user_id, ip, {"reason": "password", "during": action}
            )
            await self._lock_when_due(user_id, attempts, ip, now)
            raise AccountError(401, "INVALID_CREDENTIALS", "The current password is not correct.")
        if needs_code:
            assert totp_code is not None
            step = totp.accepted_step(
                user["mfa_secret"], totp_code, now=now, last_step=user["mfa_last_counter"]
            )
            claimed = False
            if step is not None:
                async with self._pool.connection() as conn, conn.transaction():
                    claimed = await store.claim_mfa_step(conn, user_id, step)
            if not claimed:
                await self._audit("auth.mfa_failed", user_id, ip, {"attempt": attempts, "during": action})
                await self._lock_when_due(user_id, attempts, ip, now)
                raise invalid_mfa_code()
        await self._reset_attempts(user_id)

    async def _check_ip_budget(self, ip: str) -> None:
        try:
            decision = await self._limiter.take(login_ip_limit(ip, self._settings))
        except REDIS_DOWN as exc:
            log.error("login_limiter_unavailable", error=str(exc))
            raise limiter_unavailable() from exc
        if not decision.allowed:
            raise AccountError(
                429,
                "RATE_LIMITED",
                "Too many sign-in attempts from this address; slow down.",
                {"retry_after_seconds": decision.retry_after_s},
                headers={"Retry-After": str(decision.retry_after_s), **decision.headers()},
            )

    async def _count_attempt(self, user_id: uuid.UUID) -> int:
        try:
            count, _ = await self._limiter.count_attempt(
                _failure_key(user_id), window_s=self._settings.lockout_minutes * 60
            )
        except REDIS_DOWN as exc:
            raise limiter_unavailable() from exc
        return count

    async def _reset_attempts(self, user_id: uuid.UUID) -> None:
        try:
            await self._limiter.reset(_failure_key(user_id))
        except REDIS_DOWN as exc:
            raise limiter_unavailable() from exc

    async def _lock_when_due(self, user_id: uuid.UUID, attempts: int, ip: str, now: datetime) -> None:
        if attempts >= self._settings.lockout_threshold:
            until = await self._lock(user_id, attempts, ip)
            raise _locked(until, now)

    async def _lock(self, user_id: uuid.UUID, attempts: int, ip: str) -> datetime:
        """Lock the account (once: concurrent callers find it locked and keep the first deadline)."""
        now = self._now()
        async with self._pool.connection() as conn, conn.transaction():
            user = await store.user_by_id(conn, user_id, for_update=True)
            if user is not None and user["locked_until"] is not None and user["locked_until"] > now:
                return user["locked_until"]  # type: ignore[no-any-return]
            until = now + timedelta(minutes=self._settings.lockout_minutes)
            await store.lock_user(conn, user_id, until=until, failures=attempts)
            await append_audit(
                conn,
                new_entry(
                    "auth.account_locked",
                    actor_id=user_id,
                    subject=f"user:{user_id}",
                    details={"failed_attempts": attempts, "locked_until": until.isoformat()},
                    ip=ip,
                ),
            )
        # A fresh count once the lock ends, not before: attempts already in flight must still
        # find the count past the threshold (a reset here would give each of them a new guess).
        try:
            await self._limiter.expire_in(_failure_key(user_id), (until - now).total_seconds() - 1)
        except REDIS_DOWN as exc:
            raise limiter_unavailable() from exc
        return until

    async def _audit(self, action: str, user_id: uuid.UUID | None, ip: str, details: dict[str, Any]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            subject = f"user:{user_id}" if user_id else None
            await append_audit(
                conn, new_entry(action, actor_id=user_id, subject=subject, details=details, ip=ip)
            )


async def _tell_the_owner_of(conn: store.Conn, address: str, *, ip: str) -> None:
    """Someone registered a taken address: a notice for the owner (outbox, for the mailer) and the
    audit trail. A deleted account keeps its address reserved and gets the audit entry only."""
    owner = await store.user_by_email(conn, address)
    if owner is not None:
        await add_event(
            conn,
            topic=ACCOUNT_NOTICES_TOPIC,
            event_type="auth.registration_existing_account",
            user_id=owner["id"],
            aggregate_id=owner["id"],
            payload={"email": owner["email"], "ip": ip[:100]},
        )
    await append_audit(
        conn,
        new_entry(
            "auth.registration_existing_account",
            actor_id=None,
            subject=f"user:{owner['id']}" if owner is not None else None,
            details={"account": _account_state(owner)},
            ip=ip,
        ),
    )


def _account_state(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "deleted"
    return "disabled" if owner["disabled_at"] is not None else "active"


def _disabled() -> AccountError:
    # No reason and no date: the operator's note is not the account holder's to read.
    return AccountError(
        403, "ACCOUNT_DISABLED", "This account is disabled; contact support to have it enabled again."
    )


def _valid_email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except InvalidEmail as exc:
        raise AccountError(
            400,
            "VALIDATION_ERROR",
            "The request is not valid.",
            [{"field": "body.email", "message": str(exc)}],
        ) from exc


def _lookup_email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return raw.strip()


def _locked(until: datetime, now: datetime) -> AccountError:
    retry_after = max(1, int((until - now).total_seconds()) + 1)
    return AccountError(
        423,
        "ACCOUNT_LOCKED",
        f"Too many failed sign-ins: the account is locked until {until.isoformat(timespec='seconds')}.",
        {"locked_until": until},
        headers={"Retry-After": str(retry_after)},
    )
