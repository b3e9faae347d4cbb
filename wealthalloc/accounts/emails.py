"""Email addresses as accounts see them: validated, normalised, and free of invisible characters.

Unicode lets two addresses look the same and differ (a zero-width joiner, a
right-to-left override, a fullwidth letter). Addresses are normalised (NFKC,
the domain in its canonical form) and any control or format character is
refused, so one address on screen is one account.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 320


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw.strip())
    if not text or len(text) > MAX_LENGTH:
        raise InvalidEmail("must be between 1 and 320 characters")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"} for ch in text):
        raise InvalidEmail("must not contain control or invisible characters")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return str(result.normalized)
