"""Access tokens (JWT HS256) and the opaque secrets behind refresh tokens and API keys.

Access tokens are short-lived and checked without a database round trip for
their signature; each carries a key id (``kid``) so the signing secret can be
rotated: the new key signs, retired keys still verify until the tokens they
signed have expired. Only HS256 is accepted, whatever a token's header claims,
so ``alg: none`` and algorithm-confusion tokens fail like forged ones.

Every access token names the login it belongs to (``sid``, the refresh-token
family, kept as a row of ``sessions``) and when the person last proved who they
are with a password (``auth_time``, as in OpenID Connect; carried unchanged
through refreshes). The session lets a sign-out end the access tokens of that
login at once; ``auth_time`` lets MFA and API-key changes ask for a recent
sign-in. Tokens from before these claims decode with both as ``None``, and the
account service refuses them.

Refresh tokens and API keys are random strings with 256 bits of entropy. They
are stored as SHA-256 digests: a slow hash (bcrypt) protects guessable human
passwords, but a digest of an unguessable token is already irreversible, and a
fast one keeps the lookup a single indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
REFRESH_TOKEN_PREFIX = "wart_"
API_KEY_PREFIX = "wak_"
_API_KEY_ID_CHARS = 8
_REQUIRED_CLAIMS = ("sub", "email", "role", "exp", "iat", "jti")


class InvalidToken(Exception):
    """The token is not one this platform issued, or it has expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class KeyRing:
    """The active signing key and the retired ones that still verify."""

    active_kid: str
    keys: Mapping[str, bytes]

    @classmethod
    def from_secrets(cls, active_secret: str, previous: Mapping[str, str] | None = None) -> KeyRing:
        if len(active_secret) < 32:
            raise ValueError("the signing secret must be at least 32 characters")
        active_kid = key_id(active_secret)
        keys = {kid: value.encode() for kid, value in (previous or {}).items()}
        keys[active_kid] = active_secret.encode()
        return cls(active_kid=active_kid, keys=keys)


def key_id(secret: str) -> str:
    """A stable, non-reversible name for a secret, so rotating keys needs no extra setting."""
    return hashlib.sha256(b"wealthalloc-kid:" + secret.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    email: str
    role: str
    token_id: str
    issued_at: datetime
    expires_at: datetime
    session_id: uuid.UUID | None = None
    authenticated_at: datetime | None = None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: AccessClaims


def issue_access_token(
    ring: KeyRing,
    *,
    user_id: uuid.UUID,
    email: str,
    role: str,
    now: datetime,
    ttl: timedelta,
    session_id: uuid.UUID,
    authenticated_at: datetime,
) -> IssuedToken:
    issued = now.replace(microsecond=0)
    claims = AccessClaims(
        user_id=user_id,
        email=email,
        role=role,
        token_id=uuid.uuid4().hex,
        issued_at=issued,
        expires_at=issued + ttl,
        session_id=session_id,
        authenticated_at=authenticated_at.replace(microsecond=0),
    )
    payload = {
        "sub": str(user_id),
        "email": email,
        "role": role,
        "jti": claims.token_id,
        "iat": int(issued.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "sid": str(session_id),
        "auth_time": int(authenticated_at.timestamp()),
    }
    token = jwt.encode(
        payload, ring.keys[ring.active_kid], algorithm=ALGORITHM, headers={"kid": ring.active_kid}
    )
    return IssuedToken(token=token, claims=claims)


def decode_access_token(ring: KeyRing, token: str, *, now: datetime) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm")
    key = ring.keys.get(str(header.get("kid", "")))
    if key is None:
        raise InvalidToken("unknown_key")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": list(_REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise InvalidToken("signature") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed") from exc
    try:
        expires_at = datetime.fromtimestamp(int(payload["exp"]), UTC)
        issued_at = datetime.fromtimestamp(int(payload["iat"]), UTC)
        user_id = uuid.UUID(str(payload["sub"]))
        session_id = uuid.UUID(str(payload["sid"])) if "sid" in payload else None
        authenticated_at = (
            datetime.fromtimestamp(int(payload["auth_time"]), UTC) if "auth_time" in payload else None
        )
    except (TypeError, ValueError, OverflowError, OSError) as exc:  # OSError: a time past year 9999
        raise InvalidToken("malformed") from exc
    if authenticated_at is not None and authenticated_at > issued_at:
        raise InvalidToken("malformed")  # a sign-in cannot come after the token it produced
    # Checked against the injected clock, not the wall clock, so tests and replays are deterministic.
    if expires_at <= now:
        raise InvalidToken("expired")
    if issued_at > now + timedelta(seconds=60):
        raise InvalidToken("not_yet_valid")
    return AccessClaims(
        user_id=user_id,
        email=str(payload["email"]),
        role=str(payload["role"]),
        token_id=str(payload["jti"]),
        issued_at=issued_at,
        expires_at=expires_at,
        session_id=session_id,
        authenticated_at=authenticated_at,
    )


def digest(secret: str) -> str:
    """The stored form of a refresh token or API key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str


def new_api_key() -> NewApiKey:
    """A key whose first characters (the prefix) identify it in lists without revealing it."""
    key_id_part = secrets.token_hex(_API_KEY_ID_CHARS // 2)
    key = f"{API_KEY_PREFIX}{key_id_part}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=f"{API_KEY_PREFIX}{key_id_part}")


def api_key_prefix(key: str) -> str | None:
    """The prefix of a presented key, or None when it does not look like one of ours."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    part, sep, rest = key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(part) != _API_KEY_ID_CHARS or not rest:
        return None
    return f"{API_KEY_PREFIX}{part}"
