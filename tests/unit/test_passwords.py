"""Passwords: bcrypt hashes that accept any length and never truncate (wealthalloc.security.passwords)."""

from __future__ import annotations

import pytest

from wealthalloc.security.passwords import hash_password, needs_rehash, verify_password

FAST = 4  # bcrypt's minimum cost: the tests check behaviour, not strength


def test_a_hash_verifies_its_password_and_no_other() -> None:
    hashed = hash_password("correct horse battery staple", rounds=FAST)

    assert verify_password("correct horse battery staple", hashed)
    assert not verify_password("correct horse battery stapler", hashed)
    assert not verify_password("", hashed)


def test_the_hash_is_bcrypt_text_with_the_requested_cost_and_not_the_password() -> None:
    hashed = hash_password("Demo-Investor-2026", rounds=FAST)

    assert hashed.startswith("$2b$04$")
    assert len(hashed) == 60
    assert "Demo-Investor-2026" not in hashed


def test_each_hash_has_its_own_salt() -> None:
    first = hash_password("same password", rounds=FAST)
    second = hash_password("same password", rounds=FAST)

    assert first != second
    assert verify_password("same password", first)
    assert verify_password("same password", second)


def test_passwords_longer_than_bcrypts_72_bytes_are_accepted() -> None:
    passphrase = "a long passphrase from a password manager " * 5  # 210 bytes
    hashed = hash_password(passphrase, rounds=FAST)

    assert verify_password(passphrase, hashed)


def test_bytes_past_72_still_count() -> None:
    # Plain bcrypt looks only at the first 72 bytes: these two would be the same password.
    prefix = "x" * 72
    hashed = hash_password(prefix + "tail-one", rounds=FAST)

    assert verify_password(prefix + "tail-one", hashed)
    assert not verify_password(prefix + "tail-two", hashed)
    assert not verify_password(prefix, hashed)


def test_non_ascii_passwords_round_trip() -> None:
    password = "pässwörd-密码-🔐" * 6  # multi-byte characters, well past 72 bytes
    hashed = hash_password(password, rounds=FAST)

    assert verify_password(password, hashed)
    assert not verify_password(password.upper(), hashed)


def test_a_nul_byte_does_not_end_the_password() -> None:
    hashed = hash_password("before\x00after", rounds=FAST)

    assert verify_password("before\x00after", hashed)
    assert not verify_password("before\x00other", hashed)


@pytest.mark.parametrize("stored", ["", "not a hash", "$2b$04$short", "$argon2id$v=19$m=65536,t=3,p=4$abc"])
def test_a_malformed_stored_hash_is_a_mismatch_not_an_error(stored: str) -> None:
    assert verify_password("anything", stored) is False


@pytest.mark.parametrize("rounds", [3, 32])
def test_a_cost_outside_bcrypts_range_is_refused(rounds: int) -> None:
    with pytest.raises(ValueError, match="rounds"):
        hash_password("whatever", rounds=rounds)


def test_needs_rehash_when_the_configured_cost_changes() -> None:
    hashed = hash_password("whatever", rounds=FAST)

    assert not needs_rehash(hashed, rounds=FAST)
    assert needs_rehash(hashed, rounds=12)
    assert needs_rehash("garbage", rounds=FAST)
