"""Signing webhook bodies and verifying signed ones: HMAC-SHA256 over a timestamp and the body.

The header carries both: ``WealthAlloc-Signature: t=<unix seconds>,v1=<hex>``.
The MAC covers ``"<t>." + body``, so a captured request cannot be replayed with
a new timestamp, and a receiver refuses one whose timestamp is further than
``tolerance_s`` from its own clock, so it cannot be replayed later either
(within the window, receivers deduplicate on the message id in the body).

During a secret rotation the sender puts one ``v1=`` per live secret in the
same header and the receiver accepts the request when any of them matches one
of its secrets. Schemes other than ``v1`` are ignored, so a later scheme can be
added next to ``v1`` without breaking receivers. Every comparison is
constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SIGNATURE_HEADER = "WealthAlloc-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
# A header longer than this is not a signature but an attempt to make the receiver hash a lot.
MAX_HEADER_LENGTH = 4096
MAX_SIGNATURES = 8

Secret = str | bytes


class SignatureError(Exception):
    """A signed request that must be refused; the subclass says why."""


class MalformedSignature(SignatureError):
    """The header is missing, unparsable or has no ``v1`` signature."""


class SignatureMismatch(SignatureError):
    """No ``v1`` signature of the header matches the body under any of the secrets."""


class SignatureTooOld(SignatureError):
    """The signature is valid but older than the tolerance: a replay or a very late retry."""


class SignatureFromFuture(SignatureError):
    """The signature is valid but dated ahead of the receiver's clock by more than the tolerance."""


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def _key(secret: Secret) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def compute(secret: Secret, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    message = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: Secret, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return sign_many([secret], body, timestamp)


def sign_many(secrets: Iterable[Secret], body: bytes, timestamp: int) -> str:
    """One header with a ``v1`` signature per secret: what a sender emits while rotating secrets."""
    parts = [f"t={int(timestamp)}"]
    parts.extend(f"{SCHEME}={compute(secret, body, timestamp)}" for secret in secrets)
    if len(parts) == 1:
        raise ValueError("at least one secret is needed to sign")
    return ",".join(parts)


def parse(header: str | None) -> ParsedSignature:
    """The timestamp and the ``v1`` signatures of a header; :class:`MalformedSignature` if it has none."""
    if not header:
        raise MalformedSignature("the signature header is missing")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignature("the signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise MalformedSignature(f"the signature header has a malformed element {part.strip()[:20]!r}")
        if key == "t":
            if timestamp is not None:
                raise MalformedSignature("the signature header has more than one timestamp")
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise MalformedSignature("the signature timestamp is not a unix time in seconds")
            timestamp = int(value)
        elif key == SCHEME:
            if len(value) != 64 or not _is_hex(value):
                raise MalformedSignature("a v1 signature is not 64 hexadecimal digits")
            signatures.append(value.lower())
    if timestamp is None:
        raise MalformedSignature("the signature header has no timestamp")
    if not signatures:
        raise MalformedSignature("the signature header has no v1 signature")
    if len(signatures) > MAX_SIGNATURES:
        raise MalformedSignature("the signature header has too many signatures")
    return ParsedSignature(timestamp=timestamp, signatures=tuple(signatures))


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in value)


def verify(
    secret: Secret | Sequence[Secret],
    header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check that ``header`` signs ``body`` under ``secret`` (or one of several), recently; its timestamp.

    The MAC is checked before the time, so a forger learns nothing from which error comes back.
    Raises a :class:`SignatureError` subclass: malformed, mismatch, too old, or from the future.
    """
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets:
        raise ValueError("at least one secret is needed to verify")
    parsed = parse(header)
    matched = False
    for key in secrets:
        expected = compute(key, body, parsed.timestamp)
        for candidate in parsed.signatures:
            # No early exit: the time taken does not depend on which pair matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureMismatch("the signature does not match the body")
    age = now - parsed.timestamp
    if age > tolerance_s:
        raise SignatureTooOld(f"the signature is {int(age)} s old, more than the {tolerance_s} s allowed")
    if -age > tolerance_s:
        raise SignatureFromFuture(
            f"the signature is dated {int(-age)} s ahead, more than the {tolerance_s} s allowed"
        )
    return parsed.timestamp
