"""What a new password must be: long enough, not the email, not a well-known leaked one, not guessable.

Following NIST SP 800-63B: a minimum length, a blocklist and a strength
estimate rather than composition rules (which lead to ``Password1!``). The
blocklist ships with the package and the estimate is zxcvbn's (dictionaries,
keyboard walks, repeats, sequences, dates, l33t), so the check needs no
network. The estimate runs once the plain rules pass, so a password gets the
precise reasons first (too short, the email, breached) and zxcvbn's feedback
after ("Repeats like ... are only slightly harder to guess"). It judges the
first ``STRENGTH_CHECKED_LENGTH`` characters: zxcvbn's matching grows faster
than linearly with length (over a second for 128 random characters), and a
strong prefix makes a strong password.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_STRENGTH_SCORE = 3  # zxcvbn's 0..4; 3 is "safely unguessable: moderate protection from offline attacks"
STRENGTH_CHECKED_LENGTH = 72
TOO_GUESSABLE = "is too easy to guess"
_TRAILING_NOISE = re.compile(r"[\d\W_]+$")
_WORDS = re.compile(r"[\W_]+")
# zxcvbn keeps the user inputs of a call in a module-level dictionary: one call at a time.
_ZXCVBN_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problems(password: str, *, email: str, user_inputs: Iterable[str] = ()) -> list[str]:
    """Every reason ``password`` is refused for the account ``email`` (empty when it is acceptable).

    ``user_inputs`` are other things an attacker would try first (the person's name): the
    strength estimate counts them, like the email, as words of a tiny dictionary.
    """
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
    if not problems:
        weakness = _guessability(password, [address, local_part, *user_inputs])
        if weakness is not None:
            problems.append(weakness)
    return problems


def _guessability(password: str, user_inputs: list[str]) -> str | None:
    """zxcvbn's feedback when it scores ``password`` below MIN_STRENGTH_SCORE, else None."""
    # Each input whole and word by word: "Ada Lovelace" should also catch "lovelace1815".
    words = [word for text in user_inputs for word in _WORDS.split(text) if len(word) >= 3]
    inputs = [text.strip() for text in user_inputs if text.strip()] + words + ["wealthalloc"]
    with _ZXCVBN_LOCK:
        result = zxcvbn(
            password[:STRENGTH_CHECKED_LENGTH], user_inputs=inputs, max_length=STRENGTH_CHECKED_LENGTH
        )
    if int(result["score"]) >= MIN_STRENGTH_SCORE:
        return None
    feedback = result["feedback"]
    advice = [str(feedback.get("warning") or ""), *(str(s) for s in feedback.get("suggestions") or [])]
    said = " ".join(text for text in advice if text) or "Add another word or two. Uncommon words are better."
    return f"{TOO_GUESSABLE}: {said}"
