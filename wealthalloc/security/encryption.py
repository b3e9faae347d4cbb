"""Account numbers at rest: AES-GCM under a key ring, bound to the row's owner.

A linked brokerage account number is the one secret of a linked account that
someone could use elsewhere (with a name and a statement it identifies a real
account), so the database never holds it in the clear:

- **AES-256-GCM** (``cryptography``), a fresh 96-bit nonce per encryption; the
  stored value is ``nonce || ciphertext+tag`` beside the id of the key that
  made it.
- **Associated data** is the owner's user id: a ciphertext copied onto another
  user's row does not decrypt there (the tag check fails), so a database edit
  cannot move an account to someone else.
- **A key ring** (``key id -> 32-byte key``, base64 in settings): the newest id
  encrypts, every listed id decrypts, so keys rotate without downtime; the
  ``wealthalloc linked-accounts reencrypt`` command then moves rows to the
  newest key, after which an old id can be dropped.
- **A blind index** (HMAC-SHA256 under a key of its own that never rotates with
  the ring) lets "one user cannot link the same account twice" be a unique
  index without the plaintext or a deterministic ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from wealthalloc.config import Settings

KEY_BYTES = 32
NONCE_BYTES = 12
_CONTEXT = b"wealthalloc/linked-account-number/v1:"


class EncryptionUnavailable(RuntimeError):
    """No key ring is configured: account numbers cannot be stored or read."""


class UndecryptableError(ValueError):
    """A ciphertext that no listed key opens for this owner (unknown key id, wrong owner, tampered)."""


@dataclass(frozen=True)
class Sealed:
    """An encrypted account number as stored: which key sealed it and ``nonce || ciphertext``."""

    key_id: str
    blob: bytes


def decode_key(key_id: str, encoded: str) -> bytes:
    """A base64 key of exactly 32 bytes; anything else is a configuration error naming the key id."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"key {key_id!r} is not base64") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"key {key_id!r} is {len(raw)} bytes; AES-256 needs {KEY_BYTES}")
    return raw


def new_key() -> str:
    """A fresh key, base64, for the key ring (what an operator puts in settings)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class KeyRing:
    """Keys by id, in the order given: the last one is the newest and encrypts.

    Parameters
    ----------
    keys : Mapping[str, str]
        Key id to base64 key, oldest first (a JSON object in settings keeps its order).
    index_key : str
        Base64 key of the blind index; never rotated with the ring (rows are found by it).
    """

    def __init__(self, keys: Mapping[str, str], index_key: str) -> None:
        if not keys:
            raise EncryptionUnavailable("no linked-account encryption keys are configured")
        if not index_key:
            raise EncryptionUnavailable("no linked-account index key is configured")
        self._keys = {key_id: decode_key(key_id, encoded) for key_id, encoded in keys.items()}
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.items()}
        self._index_key = decode_key("index", index_key)
        self.newest = next(reversed(self._keys))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def encrypt(self, plaintext: str, *, owner: uuid.UUID) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._ciphers[self.newest].encrypt(nonce, plaintext.encode(), _aad(owner))
        return Sealed(self.newest, blob)

    def decrypt(self, sealed: Sealed, *, owner: uuid.UUID) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise UndecryptableError(f"key {sealed.key_id!r} is not in the key ring")
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, body, _aad(owner)).decode()
        except InvalidTag as exc:
            raise UndecryptableError("the ciphertext does not open for this owner") from exc

    def reseal(self, sealed: Sealed, *, owner: uuid.UUID) -> Sealed | None:
        """The same number under the newest key, or ``None`` when it is under it already."""
        if sealed.key_id == self.newest:
            return None
        return self.encrypt(self.decrypt(sealed, owner=owner), owner=owner)

    def blind_index(self, value: str, *, provider: str) -> bytes:
        """A keyed digest of ``provider:value``: equal for equal numbers, useless without the key."""
        return hmac.new(self._index_key, f"{provider}:{value}".encode(), hashlib.sha256).digest()


def key_ring(settings: Settings) -> KeyRing:
    """The account-number key ring of ``settings``; :class:`EncryptionUnavailable` when unset."""
    return KeyRing(
        {key_id: key.get_secret_value() for key_id, key in settings.linked_account_keys.items()},
        settings.linked_account_index_key.get_secret_value(),
    )


def _aad(owner: uuid.UUID) -> bytes:
    return _CONTEXT + owner.bytes
