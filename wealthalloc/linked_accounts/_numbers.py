"""Account numbers by provider: which are valid, and the only form they are ever shown in."""

from __future__ import annotations

import re

PROVIDERS = ("ibkr", "csv")

# IBKR: an individual account is U + 7-8 digits, a paper one DU..., advisors' F/DF/I...; other
# brokers' numbers (a CSV statement's) are 4-20 letters and digits, dashes allowed between them.
_PATTERNS = {
    "ibkr": re.compile(r"^(?:U|DU|F|DF|I|DI)\d{5,9}$"),
    "csv": re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{2,18})[A-Z0-9]$"),
}
_SHOWN = 4


class InvalidAccountNumber(ValueError):
    """Says what a valid number of the provider looks like, never the number given."""


def normalize(provider: str, account_number: str) -> str:
    """The number as stored (upper case, no surrounding or inner spaces), if the provider accepts it."""
    pattern = _PATTERNS.get(provider)
    if pattern is None:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    value = re.sub(r"\s+", "", account_number).upper()
    if not pattern.match(value):
        if provider == "ibkr":
            raise InvalidAccountNumber("an IBKR account number is U, DU, F, DF, I or DI and 5-9 digits")
        raise InvalidAccountNumber("an account number is 4-20 letters and digits (dashes between them)")
    return value


def mask(account_number: str) -> str:
    """``****4567``: the last four characters only, so a person recognizes the account and nobody
    can use it."""
    return "****" + account_number[-_SHOWN:]
