"""Access tokens, key rotation, and the opaque secrets behind refresh tokens and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.security.tokens import (
    API_KEY_PREFIX,
    REFRESH_TOKEN_PREFIX,
    InvalidToken,
    KeyRing,
    api_key_prefix,
    decode_access_token,
    digest,
    issue_access_token,
    key_id,
    new_api_key,
    new_refresh_token,
    same_digest,
)

NOW = datetime(2026, 3, 2, 14, 30, 15, 123456, tzinfo=UTC)
TTL = timedelta(minutes=15)
SECRET = "s" * 33 + "-the-active-signing-secret-0001"
OLD_SECRET = "o" * 32 + "-the-retired-signing-secret-0001"
OTHER_SECRET = "x" * 32 + "-somebody-elses-signing-secret-1"
USER_ID = uuid.UUID("7b0c6a52-4a8f-4d0e-9a55-0c1f9c3b2d11")
SESSION_ID = uuid.UUID("5d0e1c2b-3a49-4f5e-8d7c-6b5a49382716")
SIGNED_IN = NOW - timedelta(hours=2)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.from_secrets(SECRET)


def _issue(ring: KeyRing, *, now: datetime = NOW, ttl: timedelta = TTL) -> str:
    return issue_access_token(
        ring,
        user_id=USER_ID,
        email="alice@example.com",
        role="investor",
        now=now,
        ttl=ttl,
        session_id=SESSION_ID,
        authenticated_at=min(now, SIGNED_IN),
    ).token


def _claims(now: datetime = NOW, **overrides: Any) -> dict[str, Any]:
    issued = int(now.timestamp())
    payload: dict[str, Any] = {
        "sub": str(USER_ID),
        "email": "alice@example.com",
        "role": "investor",
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + int(TTL.total_seconds()),
    }
    payload.update(overrides)
    return payload


def _sign(payload: dict[str, Any], secret: str, *, kid: str, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret.encode(), algorithm=algorithm, headers={"kid": kid})


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _reason(ring: KeyRing, token: str, *, now: datetime = NOW) -> str:
    with pytest.raises(InvalidToken) as caught:
        decode_access_token(ring, token, now=now)
    return caught.value.reason


# Issuing and reading back -------------------------------------------------------------------------


def test_an_issued_token_decodes_to_the_claims_it_was_issued_with(ring: KeyRing) -> None:
    issued = issue_access_token(
        ring,
        user_id=USER_ID,
        email="alice@example.com",
        role="advisor",
        now=NOW,
        ttl=TTL,
        session_id=SESSION_ID,
        authenticated_at=SIGNED_IN,
    )

    claims = decode_access_token(ring, issued.token, now=NOW)

    assert claims == issued.claims
    assert claims.user_id == USER_ID
    assert claims.email == "alice@example.com"
    assert claims.role == "advisor"
    assert claims.expires_at - claims.issued_at == TTL
    assert claims.session_id == SESSION_ID
    assert claims.authenticated_at == SIGNED_IN.replace(microsecond=0)


def test_a_refreshed_token_keeps_the_sign_in_time_of_its_login_not_its_own_issue_time(
    ring: KeyRing,
) -> None:
    later = NOW + timedelta(hours=5)
    token = _issue(ring, now=later)

    claims = decode_access_token(ring, token, now=later)

    assert claims.issued_at == later.replace(microsecond=0)
    assert claims.authenticated_at == SIGNED_IN.replace(microsecond=0)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sid"] == str(SESSION_ID)


def test_a_token_from_before_sessions_decodes_without_a_session(ring: KeyRing) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS256", headers={"kid": ring.active_kid})

    claims = decode_access_token(ring, token, now=NOW)

    assert claims.session_id is None and claims.authenticated_at is None


@pytest.mark.parametrize(
    "overrides",
    [{"sid": "not-a-uuid"}, {"auth_time": "yesterday"}, {"auth_time": int(NOW.timestamp()) + 3600}],
)
def test_a_malformed_session_or_a_sign_in_after_the_token_is_refused(
    ring: KeyRing, overrides: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(**overrides), SECRET, algorithm="HS256", headers={"kid": ring.active_kid})

    with pytest.raises(InvalidToken) as raised:
        decode_access_token(ring, token, now=NOW)
    assert raised.value.reason == "malformed"


def test_the_issue_time_is_whole_seconds_because_jwt_times_are(ring: KeyRing) -> None:
    issued = issue_access_token(
        ring,
        user_id=USER_ID,
        email="alice@example.com",
        role="investor",
        now=NOW,
        ttl=TTL,
        session_id=SESSION_ID,
        authenticated_at=SIGNED_IN,
    )

    assert issued.claims.issued_at == NOW.replace(microsecond=0)
    assert issued.claims.expires_at == NOW.replace(microsecond=0) + TTL


def test_a_token_names_its_signing_key_and_algorithm_in_its_header(ring: KeyRing) -> None:
    header = jwt.get_unverified_header(_issue(ring))

    assert header["alg"] == "HS256"
    assert header["kid"] == ring.active_kid == key_id(SECRET)


def test_every_token_gets_its_own_token_id(ring: KeyRing) -> None:
    ids = {decode_access_token(ring, _issue(ring), now=NOW).token_id for _ in range(20)}

    assert len(ids) == 20


def test_the_token_carries_no_signing_secret(ring: KeyRing) -> None:
    token = _issue(ring)

    assert SECRET not in token
    assert SECRET not in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()


# Forgeries ---------------------------------------------------------------------------------------


def test_a_token_signed_with_another_secret_under_our_key_id_is_refused(ring: KeyRing) -> None:
    forged = _sign(_claims(role="admin"), OTHER_SECRET, kid=ring.active_kid)

    assert _reason(ring, forged) == "signature"


def test_a_token_whose_payload_was_edited_after_signing_is_refused(ring: KeyRing) -> None:
    header, _, signature = _issue(ring).split(".")
    edited_payload = _b64(_claims(role="admin"))

    assert _reason(ring, f"{header}.{edited_payload}.{signature}") == "signature"


def test_a_token_with_its_signature_removed_is_refused(ring: KeyRing) -> None:
    header, payload, _ = _issue(ring).split(".")

    assert _reason(ring, f"{header}.{payload}.") == "signature"


def test_a_token_signed_with_alg_none_is_refused(ring: KeyRing) -> None:
    header = _b64({"alg": "none", "typ": "JWT", "kid": ring.active_kid})
    unsigned = f"{header}.{_b64(_claims(role='admin'))}."

    assert _reason(ring, unsigned) == "algorithm"


@pytest.mark.parametrize("alg", ["None", "NONE", "hs256", ""])
def test_a_token_with_a_disguised_or_missing_algorithm_is_refused(ring: KeyRing, alg: str) -> None:
    payload = _claims()
    header = _b64({"alg": alg, "typ": "JWT", "kid": ring.active_kid})
    body = _b64(payload)
    signature = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    assert _reason(ring, token) == "algorithm"


def test_a_token_without_an_alg_header_is_refused(ring: KeyRing) -> None:
    token = f"{_b64({'typ': 'JWT', 'kid': ring.active_kid})}.{_b64(_claims())}."

    assert _reason(ring, token) == "algorithm"


def test_an_hs512_token_signed_with_our_own_secret_is_refused(ring: KeyRing) -> None:
    token = _sign(_claims(), SECRET, kid=ring.active_kid, algorithm="HS512")

    assert _reason(ring, token) == "algorithm"


def test_an_rs256_labelled_token_is_refused_before_any_key_confusion(ring: KeyRing) -> None:
    header = _b64({"alg": "RS256", "typ": "JWT", "kid": ring.active_kid})
    body = _b64(_claims(role="admin"))
    # The classic confusion attack: an HMAC over the token keyed with what the verifier holds.
    signature = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    assert _reason(ring, token) == "algorithm"


def test_a_token_naming_an_unknown_key_is_refused(ring: KeyRing) -> None:
    other = KeyRing.from_secrets(OTHER_SECRET)

    assert _reason(ring, _issue(other)) == "unknown_key"


def test_a_token_without_a_key_id_is_refused(ring: KeyRing) -> None:
    token = jwt.encode(_claims(), SECRET.encode(), algorithm="HS256")

    assert _reason(ring, token) == "unknown_key"


def test_a_token_with_a_made_up_key_id_is_refused(ring: KeyRing) -> None:
    assert _reason(ring, _sign(_claims(), SECRET, kid="0123456789ab")) == "unknown_key"


# Time -------------------------------------------------------------------------------------------


def test_a_token_is_valid_until_the_second_before_it_expires(ring: KeyRing) -> None:
    token = _issue(ring)
    expires_at = NOW.replace(microsecond=0) + TTL

    assert decode_access_token(ring, token, now=expires_at - timedelta(seconds=1)).user_id == USER_ID
    assert _reason(ring, token, now=expires_at) == "expired"


def test_an_expired_token_is_refused(ring: KeyRing) -> None:
    token = _issue(ring)

    assert _reason(ring, token, now=NOW + timedelta(days=1)) == "expired"


def test_expiry_is_judged_by_the_injected_clock_not_the_wall_clock(ring: KeyRing) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    token = _issue(ring, now=long_ago)

    assert decode_access_token(ring, token, now=long_ago + timedelta(minutes=1)).user_id == USER_ID
    assert _reason(ring, token, now=NOW) == "expired"


def test_a_token_issued_far_in_the_future_is_refused(ring: KeyRing) -> None:
    future = int((NOW + timedelta(days=365)).timestamp())
    token = _sign(_claims(iat=future, exp=future + 900), SECRET, kid=ring.active_kid)

    assert _reason(ring, token) == "not_yet_valid"


def test_a_minute_of_clock_skew_between_replicas_is_tolerated(ring: KeyRing) -> None:
    at_limit = int(NOW.timestamp()) + 60
    tolerated = _sign(_claims(iat=at_limit, exp=at_limit + 900), SECRET, kid=ring.active_kid)
    beyond = _sign(_claims(iat=at_limit + 1, exp=at_limit + 900), SECRET, kid=ring.active_kid)

    assert decode_access_token(ring, tolerated, now=NOW.replace(microsecond=0)).user_id == USER_ID
    assert _reason(ring, beyond, now=NOW.replace(microsecond=0)) == "not_yet_valid"


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_a_signed_token_with_an_out_of_range_time_is_refused_as_malformed(ring: KeyRing, claim: str) -> None:
    payload = _claims()
    payload[claim] = 10**18
    token = _sign(payload, SECRET, kid=ring.active_kid)

    assert _reason(ring, token) == "malformed"


# Malformed tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["sub", "email", "role", "exp", "iat", "jti"])
def test_a_correctly_signed_token_missing_a_required_claim_is_refused(ring: KeyRing, missing: str) -> None:
    payload = _claims()
    del payload[missing]

    assert _reason(ring, _sign(payload, SECRET, kid=ring.active_kid)) == "malformed"


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": "not-a-uuid"},
        {"sub": ""},
        {"exp": "tomorrow"},
        {"iat": "yesterday"},
        {"exp": 10**30},
        {"exp": None},
    ],
    ids=["sub-not-uuid", "sub-empty", "exp-text", "iat-text", "exp-huge", "exp-null"],
)
def test_a_correctly_signed_token_with_nonsense_claims_is_refused(
    ring: KeyRing, overrides: dict[str, Any]
) -> None:
    assert _reason(ring, _sign(_claims(**overrides), SECRET, kid=ring.active_kid)) == "malformed"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "Bearer",
        "not a token",
        "a.b.c",
        "..",
        "a.b",
        "a.b.c.d",
        "é.é.é",
        "eyJhbGciOiJIUzI1NiJ9",
        f"{_b64({'alg': 'HS256'})[:-3]}!!.e30.",
        "W10.e30.",  # a header that is a JSON array, not an object
    ],
)
def test_garbage_is_refused_as_malformed(ring: KeyRing, garbage: str) -> None:
    assert _reason(ring, garbage) == "malformed"


def test_a_token_with_an_undecodable_payload_is_refused(ring: KeyRing) -> None:
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": ring.active_kid})

    assert _reason(ring, f"{header}.%%%.") == "malformed"


@given(st.text(max_size=300))
def test_decoding_arbitrary_text_only_ever_fails_with_invalid_token(text: str) -> None:
    ring = KeyRing.from_secrets(SECRET)

    with pytest.raises(InvalidToken) as caught:
        decode_access_token(ring, text, now=NOW)

    assert caught.value.reason in {"malformed", "algorithm", "unknown_key", "signature"}


# Key rotation -----------------------------------------------------------------------------------


def test_a_signing_secret_shorter_than_32_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        KeyRing.from_secrets("x" * 31)

    assert KeyRing.from_secrets("x" * 32).active_kid == key_id("x" * 32)


def test_a_key_id_is_a_stable_short_name_that_does_not_reveal_the_secret() -> None:
    kid = key_id(SECRET)

    assert kid == key_id(SECRET)
    assert kid != key_id(OLD_SECRET)
    assert len(kid) == 12
    assert all(ch in "0123456789abcdef" for ch in kid)
    assert kid not in SECRET


def test_after_rotation_a_token_signed_by_the_retired_key_still_verifies() -> None:
    old_ring = KeyRing.from_secrets(OLD_SECRET)
    token = _issue(old_ring)
    rotated = KeyRing.from_secrets(SECRET, previous={key_id(OLD_SECRET): OLD_SECRET})

    assert decode_access_token(rotated, token, now=NOW).user_id == USER_ID


def test_after_rotation_new_tokens_are_signed_with_the_new_key() -> None:
    rotated = KeyRing.from_secrets(SECRET, previous={key_id(OLD_SECRET): OLD_SECRET})
    token = _issue(rotated)

    assert jwt.get_unverified_header(token)["kid"] == key_id(SECRET)
    assert decode_access_token(KeyRing.from_secrets(SECRET), token, now=NOW).user_id == USER_ID
    assert _reason(KeyRing.from_secrets(OLD_SECRET), token) == "unknown_key"


def test_once_the_retired_key_is_removed_its_tokens_are_refused() -> None:
    token = _issue(KeyRing.from_secrets(OLD_SECRET))

    assert _reason(KeyRing.from_secrets(SECRET), token) == "unknown_key"


def test_a_retired_key_listed_under_the_wrong_id_verifies_nothing() -> None:
    token = _issue(KeyRing.from_secrets(OLD_SECRET))
    misfiled = KeyRing.from_secrets(SECRET, previous={"0123456789ab": OLD_SECRET})

    assert _reason(misfiled, token) == "unknown_key"


def test_a_retired_key_id_pointing_at_another_secret_does_not_verify_forged_tokens() -> None:
    token = _sign(_claims(role="admin"), OTHER_SECRET, kid=key_id(OLD_SECRET))
    rotated = KeyRing.from_secrets(SECRET, previous={key_id(OLD_SECRET): OLD_SECRET})

    assert _reason(rotated, token) == "signature"


# Refresh tokens, API keys and their stored digests ----------------------------------------------


def test_the_stored_digest_is_the_sha256_hex_of_the_secret() -> None:
    secret = new_refresh_token()

    assert digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert len(digest(secret)) == 64
    assert digest(secret) != digest(secret + "x")
    assert secret not in digest(secret)


def test_digests_compare_equal_only_when_identical() -> None:
    value = digest("wart_something")

    assert same_digest(value, digest("wart_something"))
    assert not same_digest(value, digest("wart_somethinG"))
    assert not same_digest(value, value[:-1])


def test_a_refresh_token_is_prefixed_random_text_with_256_bits() -> None:
    tokens = {new_refresh_token() for _ in range(50)}

    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith(REFRESH_TOKEN_PREFIX)
        body = token[len(REFRESH_TOKEN_PREFIX) :]
        assert len(body) == 43  # 32 random bytes in unpadded base64url
        assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_new_api_key_starts_with_the_prefix_that_identifies_it() -> None:
    new = new_api_key()

    assert new.key.startswith(new.prefix + "_")
    assert new.prefix.startswith(API_KEY_PREFIX)
    assert len(new.prefix) == len(API_KEY_PREFIX) + 8
    assert all(ch in "0123456789abcdef" for ch in new.prefix[len(API_KEY_PREFIX) :])
    assert api_key_prefix(new.key) == new.prefix


def test_api_keys_and_their_prefixes_are_unique() -> None:
    keys = [new_api_key() for _ in range(50)]

    assert len({k.key for k in keys}) == 50
    assert len({k.prefix for k in keys}) == 50


def test_the_prefix_of_a_key_reveals_too_little_to_use_it() -> None:
    new = new_api_key()

    assert len(new.key) - len(new.prefix) > 40


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "wak_",
        "wak_abcdef12",
        "wak_abcdef12_",
        "wak_abcdef1_secret",
        "wak_abcdef123_secret",
        "WAK_abcdef12_secret",
        "xwak_abcdef12_secret",
        "wart_abcdef12_secret",
        "Bearer wak_abcdef12_secret",
    ],
)
def test_text_that_does_not_look_like_an_api_key_has_no_prefix(presented: str) -> None:
    assert api_key_prefix(presented) is None


def test_the_prefix_of_a_well_formed_key_is_found_without_the_secret_part() -> None:
    assert api_key_prefix("wak_abcdef12_the_secret-part") == "wak_abcdef12"


@given(st.text(max_size=80))
def test_a_found_prefix_is_always_the_start_of_the_presented_key(text: str) -> None:
    prefix = api_key_prefix(text)

    if prefix is not None:
        assert text.startswith(prefix + "_")
        assert len(prefix) == len(API_KEY_PREFIX) + 8
