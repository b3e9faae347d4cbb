"""Password hashing with bcrypt, for passwords of any length.

bcrypt only ever looks at the first 72 bytes of its input. Older releases of the
``bcrypt`` package silently truncated longer passwords (so two long passphrases
sharing a 72-byte prefix were the same password); bcrypt 5 refuses them with a
``ValueError`` instead. Neither is acceptable for a passphrase or a password
manager's output, so the password is first reduced with SHA-256 and encoded as
base64 (44 ASCII bytes, no NUL bytes, which bcrypt would also stop at) and that
is what bcrypt hashes. Every byte of the password counts and bcrypt's work
factor still protects the result.

The stored string is bcrypt's own ``$2b$<rounds>$...`` format, so the cost can
be read back from a hash (``needs_rehash``) when the configured rounds go up.
"""

from __future__ import annotations

import base64
import hashlib

import bcrypt

DEFAULT_ROUNDS = 12
MIN_ROUNDS = 4
MAX_ROUNDS = 31


def _prehash(password: str) -> bytes:
    """SHA-256 of the UTF-8 password, base64-encoded: fixed 44 bytes whatever the length."""
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of ``password`` with a fresh salt, as text to store.

    ``rounds`` is bcrypt's log2 cost: 12 in production (DESIGN.md), 4 in tests.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}, not {rounds}")
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``; False (never an exception) for a malformed hash.

    The comparison is bcrypt's, constant-time. A hash that is not a bcrypt string (an
    empty column, a placeholder for a disabled account) simply does not match.
    """
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def needs_rehash(hashed: str, *, rounds: int = DEFAULT_ROUNDS) -> bool:
    """Whether ``hashed`` was made with a cost other than ``rounds`` (rehash it at the next login)."""
    parts = hashed.split("$")
    if len(parts) < 4 or not parts[2].isdigit():
        return True
    return int(parts[2]) != rounds
