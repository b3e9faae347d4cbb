"""Account numbers at rest: sealed under the newest key, opened by any key of the ring, bound to
their owner, found again by a blind index that reveals nothing."""

from __future__ import annotations

import uuid

import pytest

from wealthalloc.security.encryption import (
    EncryptionUnavailable,
    KeyRing,
    Sealed,
    UndecryptableError,
    decode_key,
    new_key,
)

OWNER = uuid.uuid4()
INDEX_KEY = new_key()


def ring(**keys: str) -> KeyRing:
    return KeyRing(keys, INDEX_KEY)


def test_a_number_round_trips_and_the_stored_form_holds_no_plaintext() -> None:
    keys = ring(k1=new_key())
    sealed = keys.encrypt("U1234567", owner=OWNER)

    assert sealed.key_id == "k1"
    assert b"1234567" not in sealed.blob and b"U123" not in sealed.blob
    assert keys.decrypt(sealed, owner=OWNER) == "U1234567"


def test_every_encryption_uses_a_fresh_nonce() -> None:
    keys = ring(k1=new_key())
    assert keys.encrypt("U1234567", owner=OWNER).blob != keys.encrypt("U1234567", owner=OWNER).blob


def test_a_ciphertext_copied_to_another_users_row_does_not_open() -> None:
    keys = ring(k1=new_key())
    sealed = keys.encrypt("U1234567", owner=OWNER)

    with pytest.raises(UndecryptableError):
        keys.decrypt(sealed, owner=uuid.uuid4())


def test_a_tampered_ciphertext_does_not_open() -> None:
    keys = ring(k1=new_key())
    sealed = keys.encrypt("U1234567", owner=OWNER)
    flipped = bytes([sealed.blob[-1] ^ 1])

    with pytest.raises(UndecryptableError):
        keys.decrypt(Sealed("k1", sealed.blob[:-1] + flipped), owner=OWNER)


def test_the_newest_key_encrypts_and_older_keys_still_decrypt() -> None:
    old, new = new_key(), new_key()
    before = ring(k1=old).encrypt("DU7654321", owner=OWNER)
    rotated = ring(k1=old, k2=new)

    assert rotated.newest == "k2"
    assert rotated.encrypt("DU7654321", owner=OWNER).key_id == "k2"
    assert rotated.decrypt(before, owner=OWNER) == "DU7654321"


def test_resealing_moves_a_number_to_the_newest_key_and_leaves_current_ones_alone() -> None:
    old, new = new_key(), new_key()
    before = ring(k1=old).encrypt("DU7654321", owner=OWNER)
    rotated = ring(k1=old, k2=new)

    moved = rotated.reseal(before, owner=OWNER)
    assert moved is not None and moved.key_id == "k2"
    assert ring(k2=new).decrypt(moved, owner=OWNER) == "DU7654321"
    assert rotated.reseal(moved, owner=OWNER) is None


def test_a_key_dropped_from_the_ring_no_longer_opens_its_rows() -> None:
    sealed = ring(k1=new_key()).encrypt("U1234567", owner=OWNER)
    with pytest.raises(UndecryptableError, match="not in the key ring"):
        ring(k2=new_key()).decrypt(sealed, owner=OWNER)


def test_the_blind_index_is_stable_across_rotations_and_keyed() -> None:
    first = ring(k1=new_key()).blind_index("U1234567", provider="ibkr")

    assert ring(k2=new_key()).blind_index("U1234567", provider="ibkr") == first
    assert ring(k1=new_key()).blind_index("U1234568", provider="ibkr") != first
    assert ring(k1=new_key()).blind_index("U1234567", provider="csv") != first
    assert KeyRing({"k1": new_key()}, new_key()).blind_index("U1234567", provider="ibkr") != first


def test_keys_must_be_32_bytes_of_base64_and_the_ring_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="not base64"):
        decode_key("k1", "not base64!")
    with pytest.raises(ValueError, match="16 bytes"):
        decode_key("k1", "AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(EncryptionUnavailable):
        KeyRing({}, INDEX_KEY)
    with pytest.raises(EncryptionUnavailable):
        KeyRing({"k1": new_key()}, "")
