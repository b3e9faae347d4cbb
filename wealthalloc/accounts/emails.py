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
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# Unicode's default-ignorable code points outside those categories: they render as nothing.
_INVISIBLE = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
    | set(range(0x180B, 0x1810))
    | set(range(0xFE00, 0xFE10))
    | set(range(0xE0100, 0xE01F0))
)


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw.strip())
    if not text or len(text) > MAX_LENGTH:
        raise InvalidEmail("must be between 1 and 320 characters")
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES or ord(ch) in _INVISIBLE for ch in text):
        raise InvalidEmail("must not contain control or invisible characters")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return str(result.normalized)
