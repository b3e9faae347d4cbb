"""Time-based one-time passwords with drift and replay protection (wealthalloc.security.totp)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wealthalloc.security.totp import STEP_SECONDS, accepted_step, code_at, new_setup

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# 10 seconds into a 30-second step, so "the same step" and "the next step" are unambiguous.
NOW = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)
STEP = int(NOW.timestamp()) // STEP_SECONDS

# RFC 6238 appendix B (SHA-1), with the 8-digit values cut to the last six digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "287082"),
    (1111111109, "081804"),
    (1111111111, "050471"),
    (1234567890, "005924"),
    (2000000000, "279037"),
]


def _code(steps_from_now: int) -> str:
    return code_at(SECRET, NOW + timedelta(seconds=STEP_SECONDS * steps_from_now))


def _at(step: int) -> datetime:
    return datetime.fromtimestamp(step * STEP_SECONDS, UTC)


def test_the_fixed_secret_shows_a_different_code_in_each_step_around_now() -> None:
    # The drift tests below rely on no two steps within reach sharing a code.
    codes = [_code(k) for k in range(-3, 4)]

    assert len(set(codes)) == len(codes)


# Setting up ---------------------------------------------------------------------------------------


def test_a_setup_has_a_base32_secret_of_at_least_160_bits() -> None:
    setup = new_setup(email="alice@example.com", issuer="WealthAlloc")

    assert re.fullmatch(r"[A-Z2-7]+", setup.secret)
    assert len(base64.b32decode(setup.secret)) >= 20


def test_every_setup_gets_a_new_secret() -> None:
    secrets = {new_setup(email="alice@example.com", issuer="WealthAlloc").secret for _ in range(20)}

    assert len(secrets) == 20


def test_the_otpauth_uri_names_the_account_the_issuer_and_the_secret() -> None:
    setup = new_setup(email="alice@example.com", issuer="WealthAlloc")
    uri = urlparse(setup.otpauth_uri)
    query = parse_qs(uri.query)

    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert unquote(uri.path) == "/WealthAlloc:alice@example.com"
    assert query["secret"] == [setup.secret]
    assert query["issuer"] == ["WealthAlloc"]
    assert query.get("period", ["30"]) == ["30"]
    assert query.get("digits", ["6"]) == ["6"]


def test_the_code_of_a_new_setup_is_accepted() -> None:
    setup = new_setup(email="alice@example.com", issuer="WealthAlloc")

    assert accepted_step(setup.secret, code_at(setup.secret, NOW), now=NOW, last_step=None) == STEP


# Codes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("unix_time", "expected"), RFC_VECTORS)
def test_codes_match_the_rfc_6238_test_vectors(unix_time: int, expected: str) -> None:
    assert code_at(RFC_SECRET, datetime.fromtimestamp(unix_time, UTC)) == expected


def test_a_code_is_six_digits_and_keeps_its_leading_zeros() -> None:
    assert code_at(RFC_SECRET, datetime.fromtimestamp(1234567890, UTC)) == "005924"
    assert re.fullmatch(r"\d{6}", _code(0))


def test_a_code_stays_the_same_for_its_whole_30_second_step() -> None:
    start = datetime.fromtimestamp(STEP * STEP_SECONDS, UTC)

    assert code_at(SECRET, start) == code_at(SECRET, start + timedelta(seconds=29.999)) == _code(0)
    assert code_at(SECRET, start + timedelta(seconds=30)) == _code(1)


# Accepting ----------------------------------------------------------------------------------------


def test_the_current_code_is_accepted_and_its_step_returned() -> None:
    assert accepted_step(SECRET, _code(0), now=NOW, last_step=None) == STEP


def test_surrounding_whitespace_is_ignored() -> None:
    assert accepted_step(SECRET, f"  {_code(0)}\n", now=NOW, last_step=None) == STEP


def test_a_code_of_the_previous_step_is_accepted_for_clock_drift() -> None:
    assert accepted_step(SECRET, _code(-1), now=NOW, last_step=None) == STEP - 1


def test_a_code_of_the_next_step_is_accepted_for_clock_drift() -> None:
    assert accepted_step(SECRET, _code(1), now=NOW, last_step=None) == STEP + 1


@pytest.mark.parametrize("steps_away", [-3, -2, 2, 3])
def test_a_code_two_or_more_steps_away_is_refused(steps_away: int) -> None:
    assert accepted_step(SECRET, _code(steps_away), now=NOW, last_step=None) is None


def test_a_code_of_another_secret_is_refused() -> None:
    other = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"
    code = code_at(other, NOW)
    assert code not in {_code(-1), _code(0), _code(1)}

    assert accepted_step(SECRET, code, now=NOW, last_step=None) is None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        " ",
        "12345",
        "1234567",
        "abcdef",
        "12345a",
        "12 345",
        "123-456",
        "+12345",
        "-12345",
        "1e5000",
        "000000\x00",
    ],
)
def test_input_that_is_not_six_digits_is_refused(presented: str) -> None:
    assert accepted_step(SECRET, presented, now=NOW, last_step=None) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: code[:5],
        lambda code: code + "0",
        lambda code: "0" + code,
        lambda code: code[:3] + " " + code[3:],
        lambda code: code[:5] + "x",
    ],
    ids=["truncated", "extra-digit-after", "extra-digit-before", "space-inside", "letter"],
)
def test_the_right_code_in_the_wrong_shape_is_refused(mangle: Callable[[str], str]) -> None:
    assert accepted_step(SECRET, mangle(_code(0)), now=NOW, last_step=None) is None


# Replay protection ------------------------------------------------------------------------------


def test_a_code_accepted_once_cannot_be_accepted_again() -> None:
    first = accepted_step(SECRET, _code(0), now=NOW, last_step=None)

    assert first == STEP
    assert accepted_step(SECRET, _code(0), now=NOW, last_step=first) is None
    assert accepted_step(SECRET, _code(0), now=NOW + timedelta(seconds=15), last_step=first) is None


def test_after_a_code_is_used_an_older_code_still_in_the_window_is_refused() -> None:
    assert accepted_step(SECRET, _code(-1), now=NOW, last_step=STEP) is None


def test_after_a_code_is_used_the_next_steps_code_is_accepted() -> None:
    assert accepted_step(SECRET, _code(1), now=NOW, last_step=STEP) == STEP + 1


def test_after_a_next_step_code_is_used_the_current_code_is_refused() -> None:
    used = accepted_step(SECRET, _code(1), now=NOW, last_step=None)

    assert used == STEP + 1
    assert accepted_step(SECRET, _code(0), now=NOW, last_step=used) is None
    assert accepted_step(SECRET, _code(1), now=NOW + timedelta(seconds=30), last_step=used) is None


def test_a_code_from_a_later_step_than_the_last_used_is_accepted_in_the_next_window() -> None:
    later = NOW + timedelta(seconds=STEP_SECONDS)

    assert accepted_step(SECRET, _code(1), now=later, last_step=STEP) == STEP + 1


@given(st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_any_accepted_code_belongs_to_a_step_within_drift_and_newer_than_the_last(code: str) -> None:
    step = accepted_step(SECRET, code, now=NOW, last_step=STEP - 1)

    assert step is None or (step in {STEP, STEP + 1} and code_at(SECRET, _at(step)) == code)
    assert accepted_step(SECRET, code, now=NOW, last_step=STEP + 1) is None


@given(st.text(max_size=20))
def test_arbitrary_input_never_crashes_and_is_accepted_only_as_the_code_of_a_nearby_step(text: str) -> None:
    step = accepted_step(SECRET, text, now=NOW, last_step=None)

    assert step is None or step in {STEP - 1, STEP, STEP + 1}
