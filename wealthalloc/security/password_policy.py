"""What a new password must be: long enough, not the email, not a well-known leaked one.

Following NIST SP 800-63B: a minimum length and a blocklist rather than
composition rules (which lead to ``Password1!``). The blocklist ships with the
package so the check needs no network.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

MIN_LENGTH = 10
MAX_LENGTH = 128
_TRAILING_NOISE = re.compile(r"[\d\W_]+$")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problems(password: str, *, email: str) -> list[str]:
    """Every reason ``password`` is refused for the account ``email`` (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    address = email.strip().lower()
    local_part = address.partition("@")[0]
    if lowered == address or (len(local_part) >= 4 and local_part in lowered):
        problems.append("must not contain the email address")
    leaked = common_passwords()
    # Only within the length limit: the trailing-noise pattern is quadratic on megabytes of input.
    if len(password) <= MAX_LENGTH and (lowered in leaked or _TRAILING_NOISE.sub("", lowered) in leaked):
        problems.append("is a well-known password that appears in breach lists")
    if password and len(set(password)) < 4:
        problems.append("must use more than three different characters")
    return problems
