"""What a new password must be (wealthalloc.security.password_policy)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.security.password_policy import (
    MAX_LENGTH,
    MIN_LENGTH,
    TOO_GUESSABLE,
    common_passwords,
    password_problems,
)

EMAIL = "alice.martin@example.com"
TOO_SHORT = f"must be at least {MIN_LENGTH} characters"
TOO_LONG = f"must be at most {MAX_LENGTH} characters"
CONTAINS_EMAIL = "must not contain the email address"
LEAKED = "is a well-known password that appears in breach lists"
TOO_FEW_CHARACTERS = "must use more than three different characters"
ALL_PROBLEMS = {TOO_SHORT, TOO_LONG, CONTAINS_EMAIL, LEAKED, TOO_FEW_CHARACTERS}


def test_a_long_uncommon_passphrase_has_no_problems() -> None:
    assert password_problems("correct horse battery staple", email=EMAIL) == []


# Length -----------------------------------------------------------------------------------------


def test_a_password_one_character_short_of_the_minimum_is_refused() -> None:
    assert password_problems("Zq8#vL2!m", email=EMAIL) == [TOO_SHORT]


def test_a_password_of_exactly_the_minimum_length_is_accepted() -> None:
    assert password_problems("Zq8#vL2!mW", email=EMAIL) == []


def test_a_password_of_exactly_the_maximum_length_is_accepted() -> None:
    password = ("Zq8#vL2!mW" * 13)[:MAX_LENGTH]

    assert password_problems(password, email=EMAIL) == []


def test_a_password_one_character_over_the_maximum_is_refused() -> None:
    password = ("Zq8#vL2!mW" * 13)[: MAX_LENGTH + 1]

    assert password_problems(password, email=EMAIL) == [TOO_LONG]


def test_the_empty_password_is_refused_for_its_length() -> None:
    assert password_problems("", email=EMAIL) == [TOO_SHORT]


def test_length_counts_characters_not_bytes() -> None:
    assert password_problems("ünïcødé-pässwörd", email=EMAIL) == []
    assert password_problems("日本語のパスワード", email=EMAIL) == [TOO_SHORT]


def test_no_composition_rules_are_imposed() -> None:
    assert password_problems("all lowercase words only", email=EMAIL) == []
    assert password_problems("8472019365", email=EMAIL) == []


# The email address ------------------------------------------------------------------------------


def test_the_email_address_itself_is_refused_whatever_its_case() -> None:
    assert CONTAINS_EMAIL in password_problems("Alice.Martin@Example.com", email=EMAIL)


def test_a_password_containing_the_local_part_of_the_email_is_refused() -> None:
    assert password_problems("my-ALICE.MARTIN-secret", email=EMAIL) == [CONTAINS_EMAIL]


def test_the_email_is_compared_without_surrounding_whitespace_or_case() -> None:
    assert password_problems("xx alice.martin yy", email="  Alice.Martin@Example.com ") == [CONTAINS_EMAIL]


def test_a_local_part_shorter_than_four_characters_does_not_rule_out_passwords_containing_it() -> None:
    assert password_problems("bobsled racing team", email="bob@example.com") == []
    assert CONTAINS_EMAIL in password_problems("bob@example.com", email="bob@example.com")


def test_the_domain_alone_is_not_refused() -> None:
    assert password_problems("example.com is my bank", email=EMAIL) == []


# Breach lists -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["qwertyuiop", "QwertyUIOP", "1234567890", "mypassword", "wealthalloc", "WealthAlloc"],
)
def test_a_password_from_the_blocklist_is_refused_whatever_its_case(password: str) -> None:
    assert LEAKED in password_problems(password, email=EMAIL)


@pytest.mark.parametrize(
    "password",
    ["Password123!", "password2024", "qwerty!!!!!!", "WealthAlloc2026!", "letmein_123456", "Iloveyou 1990"],
)
def test_a_blocklisted_word_with_digits_or_symbols_appended_is_refused(password: str) -> None:
    assert LEAKED in password_problems(password, email=EMAIL)


def test_a_blocklisted_word_inside_a_longer_phrase_is_not_refused() -> None:
    assert password_problems("my password is long enough", email=EMAIL) == []


def test_the_blocklist_ships_with_the_package_and_has_no_comments_or_blanks() -> None:
    leaked = common_passwords()

    assert isinstance(leaked, frozenset)
    assert len(leaked) > 100
    assert {"password", "123456", "qwerty", "wealthalloc"} <= leaked
    assert not any(entry.startswith("#") or not entry or entry != entry.strip() for entry in leaked)


def test_every_blocklist_entry_is_lowercase_so_that_it_can_match() -> None:
    # Passwords are compared lowercased: an entry with a capital letter could never match.
    assert [entry for entry in common_passwords() if entry != entry.lower()] == []


def test_the_blocklist_is_read_once() -> None:
    assert common_passwords() is common_passwords()


# Variety ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["zzzzzzzzzzzz", "zyzyzyzyzyzy", "xyzxyzxyzxyz"])
def test_a_password_of_three_or_fewer_different_characters_is_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL) == [TOO_FEW_CHARACTERS]


def test_four_different_characters_pass_the_variety_rule() -> None:
    # The strength estimate still sees the repeat (tests/security/test_password_strength.py).
    assert TOO_FEW_CHARACTERS not in password_problems("wxyzwxyzwxyz", email=EMAIL)
    assert password_problems("Wxyz-qtvb-9481-lmno", email=EMAIL) == []


# Several problems ------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    assert password_problems("aaaa", email=EMAIL) == [TOO_SHORT, TOO_FEW_CHARACTERS]
    assert password_problems("alice.martin", email=EMAIL) == [CONTAINS_EMAIL]
    assert password_problems("1111", email=EMAIL) == [TOO_SHORT, LEAKED, TOO_FEW_CHARACTERS]


@given(password=st.text(max_size=200), email=st.text(max_size=60))
def test_any_text_gets_a_list_of_known_problems_and_never_an_error(password: str, email: str) -> None:
    problems = password_problems(password, email=email)

    assert {p for p in problems if not p.startswith(TOO_GUESSABLE)} <= ALL_PROBLEMS
    assert len(problems) == len(set(problems))
    # The strength estimate speaks only once the plain rules pass.
    assert not any(p.startswith(TOO_GUESSABLE) for p in problems) or len(problems) == 1
    assert (TOO_SHORT in problems) == (len(password) < MIN_LENGTH)
    assert (TOO_LONG in problems) == (len(password) > MAX_LENGTH)


def _random_case(word: str, flips: list[bool]) -> str:
    return "".join(ch.upper() if flip else ch for ch, flip in zip(word, flips, strict=False))


@given(word=st.sampled_from(sorted(common_passwords())), flips=st.lists(st.booleans(), min_size=40))
def test_any_blocklisted_password_in_any_case_is_refused(word: str, flips: list[bool]) -> None:
    assert LEAKED in password_problems(_random_case(word, flips), email=EMAIL)


@given(
    word=st.sampled_from(sorted(w for w in common_passwords() if w[-1].isalpha())),
    flips=st.lists(st.booleans(), min_size=40),
    suffix=st.text(alphabet="0123456789!?._-# ", max_size=6),
)
def test_any_blocklisted_word_with_trailing_digits_or_symbols_is_refused(
    word: str, flips: list[bool], suffix: str
) -> None:
    assert LEAKED in password_problems(_random_case(word, flips) + suffix, email=EMAIL)
